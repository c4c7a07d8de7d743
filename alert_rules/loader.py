"""Load rule and routing YAML strictly; an error names the file, the line and the field.

pydantic validates the data; ``yaml.compose`` keeps the node tree with its marks, so the
location pydantic reports (``rules.2.thresholds.red_low``) is mapped back to a line number.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from alert_rules.errors import RuleFileError
from alert_rules.model import AnyRule, PlannedDefault, RuleFile

ROUTING_FILE = "routing.yaml"
M = TypeVar("M", bound=BaseModel)


def default_dir() -> Path:
    return Path(str(resources.files("alert_rules")))


def _is_tag(node: yaml.Node | None, part: int | str) -> bool:
    """pydantic puts a discriminated union's tag ("absolute") in the location: not a field."""
    if not isinstance(node, yaml.MappingNode) or isinstance(part, int):
        return False
    return any(isinstance(k, yaml.ScalarNode) and k.value == "kind" and getattr(v, "value", None) == part
               for k, v in node.value)


def _line_of(root: yaml.Node | None, loc: Sequence[int | str]) -> int | None:
    """The 1-based line of the deepest YAML node on the path ``loc``."""
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if _is_tag(node, part):
            continue
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == str(part):
                    nxt = v
                    line = k.start_mark.line + 1
                    break
            if nxt is None:
                break
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            # Discriminated unions add the tag ("absolute") to the location: skip it.
            continue
    return line


def _field_path(loc: Sequence[int | str], root: yaml.Node | None) -> str:
    out: list[str] = []
    node = root
    for part in loc:
        if _is_tag(node, part):
            continue
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(part)), None)
            if match is None:
                out.append(str(part))
                node = None
                continue
            out.append(str(part))
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            out.append(f"[{part}]")
            node = node.value[part] if 0 <= part < len(node.value) else None
        elif node is None:
            out.append(f"[{part}]" if isinstance(part, int) else str(part))
        # else: a union tag, not a real field
    return ".".join(out).replace(".[", "[")


def load_model(path: Path | str, model: type[M], *, text: str | None = None) -> M:
    """Parse and validate one YAML file as ``model``; raise :class:`RuleFileError` on any fault."""
    path = Path(path)
    name = str(path)
    if text is None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RuleFileError(f"cannot read: {exc}", file=name) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise RuleFileError(
            f"not valid YAML: {exc.problem}", file=name, line=mark.line + 1 if mark else None
        ) from None
    except yaml.YAMLError as exc:
        raise RuleFileError(f"not valid YAML: {exc}", file=name) from None
    if not isinstance(data, dict):
        raise RuleFileError("the file must hold a mapping at the top", file=name, line=1)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = tuple(err["loc"])
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc = (*loc, "kind")  # point at the bad tag, not at the list item
        raise RuleFileError(
            str(err["msg"]), file=name, line=_line_of(root, loc), field=_field_path(loc, root) or None
        ) from None


@dataclass(frozen=True)
class Ruleset:
    """All rule files of one directory, by programme. ``programme == "all"`` files apply to all."""

    files: Mapping[str, RuleFile]
    by_id: Mapping[str, AnyRule] = field(default_factory=dict)
    rule_file: Mapping[str, str] = field(default_factory=dict)

    def rules_for(self, programme: str) -> tuple[AnyRule, ...]:
        out: list[AnyRule] = []
        for f in self.files.values():
            if f.programme in (programme, "all"):
                out.extend(f.rules)
        return tuple(out)

    def rule(self, rule_id: str) -> AnyRule:
        return self.by_id[rule_id]

    def programme_of(self, rule_id: str) -> str:
        return self.files[self.rule_file[rule_id]].programme

    def default_plan(self, programme: str) -> tuple[PlannedDefault, ...]:
        for f in self.files.values():
            if f.programme == programme and f.monitoring_plan:
                return f.monitoring_plan
        return ()

    def __iter__(self) -> Iterable[AnyRule]:
        return iter(self.by_id.values())


def rule_paths(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.yaml") if p.name != ROUTING_FILE)


def load_ruleset(directory: Path | str | None = None, *, paths: Sequence[Path] | None = None) -> Ruleset:
    directory = Path(directory) if directory is not None else default_dir()
    files: dict[str, RuleFile] = {}
    by_id: dict[str, AnyRule] = {}
    where: dict[str, str] = {}
    chosen = list(paths) if paths is not None else rule_paths(directory)
    if not chosen:
        raise RuleFileError("no rule files (*.yaml) found", file=str(directory))
    for path in chosen:
        rf = load_model(path, RuleFile)
        for i, rule in enumerate(rf.rules):
            if rule.id in by_id:
                root = yaml.compose(Path(path).read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
                raise RuleFileError(
                    f"rule id {rule.id!r} is already defined in {where[rule.id]}",
                    file=str(path), line=_line_of(root, ("rules", i, "id")), field=f"rules[{i}].id",
                )
            by_id[rule.id] = rule
            where[rule.id] = path.name
        files[path.name] = rf
    return Ruleset(files=files, by_id=by_id, rule_file=where)


def as_data(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json")
