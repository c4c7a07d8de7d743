"""No import cycle in the Python packages, and the layering DESIGN.md draws.

The graph is read from the source with ``ast``; nothing is imported. A node is a module of
``vitals``, ``edge_agent``, ``backend`` or ``alert_rules`` (a package is its ``__init__``).
``import a.b`` is an edge to ``a.b``; ``from a import b`` is an edge to ``a.b`` when that is a
module, else to ``a`` (``b`` is then a name ``a`` defines). Relative imports are resolved against
the importing module. A package's ``__init__`` is not an edge of its submodules' imports: Python
runs it first for any import of a submodule, and a submodule import succeeds inside a half-run
``__init__``, so counting it would report every re-exporting package as a cycle.

Which imports count: every one that may run, in the module body, in class bodies and
``if``/``try``/``with`` blocks, and also the ones deferred into a function body; only the ``if
TYPE_CHECKING:`` branch is left out. A cycle of import-time imports can fail at import, depending
on which module is imported first. A deferred import hides a cycle from the interpreter but not
from the design: the two modules still need each other and cannot be understood, tested or
deployed apart (issue 10's ``ingest.service <-> services`` is closed by an import inside
``services.factories()``). A failure says which hops are deferred.

The nodes are modules, not packages: a router module of ``backend.alerting`` may use
``backend.api.deps`` while ``backend.api.v1`` mounts that router. Rules between packages are
stated one by one below (the layering of DESIGN.md, the read audit below the accounts).

Every elementary cycle is named as its nodes in import order from the alphabetically first, with
the file and line of each hop, so a failure says which import lines to look at.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("vitals", "edge_agent", "backend", "alert_rules")

@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_modules() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "__pycache__" not in path.parts:
                modules[module_name(path)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(body: Iterable[ast.stmt], *, deferred: bool) -> Iterator[ast.stmt]:
    """Every statement that may run, without ``if TYPE_CHECKING:`` branches, and without function
    bodies unless ``deferred``."""
    for node in body:
        yield node
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not deferred:
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _statements(node.orelse, deferred=deferred)
            continue
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            for child in getattr(node, field, None) or ():
                if isinstance(child, ast.ExceptHandler | ast.match_case):
                    yield from _statements(child.body, deferred=deferred)
                elif isinstance(child, ast.stmt):
                    yield from _statements([child], deferred=deferred)


def _resolve_relative(importer: str, is_package: bool, level: int, module: str | None) -> str:
    parts = importer.split(".")
    base = parts if is_package else parts[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, *([module] if module else [])])


def module_imports(name: str, path: Path, modules: dict[str, Path], *, deferred: bool) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: list[Import] = []
    for node in _statements(tree.body, deferred=deferred):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            base = _resolve_relative(name, is_package, node.level, node.module) if node.level else str(node.module)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        found += [Import(name, t, node.lineno) for t in dict.fromkeys(targets) if t in modules and t != name]
    return found


def all_imports(*, deferred: bool) -> list[Import]:
    modules = source_modules()
    return [imp for name, path in modules.items() for imp in module_imports(name, path, modules, deferred=deferred)]


def graph_of(edges: Iterable[tuple[str, str]], nodes: Iterable[str] = ()) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {node: set() for node in nodes}
    for a, b in edges:
        graph.setdefault(a, set())
        graph.setdefault(b, set())
        if a != b:
            graph[a].add(b)
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative; only components of more than one node."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[set[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                members: set[str] = set()
                while node not in members:
                    members.add(stack.pop())
                on_stack -= members
                if len(members) > 1:
                    out.append(members)
    return out


def elementary_cycles(graph: dict[str, set[str]], limit: int = 1000) -> list[tuple[str, ...]]:
    """Every simple cycle (up to ``limit``), each starting at its alphabetically first node."""
    cycles: list[tuple[str, ...]] = []
    for members in strongly_connected(graph):
        for start in sorted(members):
            allowed = {m for m in members if m >= start}  # cycles whose first node is ``start``
            path = [start]
            work: list[Iterator[str]] = [iter(sorted(graph[start] & allowed))]
            while work:
                nxt = next(work[-1], None)
                if nxt is None:
                    work.pop()
                    path.pop()
                elif nxt == start:
                    cycles.append(tuple(path))
                    if len(cycles) >= limit:
                        return cycles
                elif nxt not in path:
                    path.append(nxt)
                    work.append(iter(sorted(graph[nxt] & allowed)))
    return cycles


def found_cycles() -> dict[str, str]:
    """{cycle name: the file and line of each hop, and whether it is deferred}."""
    modules = source_modules()
    eager = {(e.importer, e.imported) for e in all_imports(deferred=False)}
    where: dict[tuple[str, str], str] = {}
    for e in all_imports(deferred=True):
        hop = (e.importer, e.imported)
        where.setdefault(hop, f"{modules[e.importer].relative_to(ROOT)}:{e.line}"
                              + ("" if hop in eager else " (deferred)"))
    found: dict[str, str] = {}
    for cycle in elementary_cycles(graph_of(where, modules)):
        hops = zip(cycle, [*cycle[1:], cycle[0]], strict=True)
        found[" -> ".join([*cycle, cycle[0]])] = ", ".join(where[hop] for hop in hops)
    return found


def test_the_walker_sees_the_imports_it_must() -> None:
    """Not vacuous: known module-level imports are edges, deferred ones only in the deferred view."""
    modules = source_modules()
    eager = graph_of(((e.importer, e.imported) for e in all_imports(deferred=False)), modules)
    lazy = graph_of(((e.importer, e.imported) for e in all_imports(deferred=True)), modules)
    assert len(eager) > 80
    assert "vitals.wire" in eager["edge_agent.uplink"]  # from vitals.wire import ...
    assert "backend.accounts.model" in eager["backend.accounts.scope"]
    assert "backend.registry" in eager["backend.accounts.demo"]  # from backend import registry
    # backend.demo imports everything inside run_demo(): nothing at import time
    assert not {m for m in eager["backend.demo"] if m.startswith("backend.")}
    assert {"backend.app", "backend.embedded"} <= lazy["backend.demo"]


def test_the_walker_skips_function_bodies_and_type_checking(tmp_path: Path) -> None:
    source = (
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING\n"
        "import backend.errors\n"
        "from . import settings\n"
        "from .registry import RegistryNotFound\n"
        "from backend import __doc__\n"
        "if TYPE_CHECKING:\n    from backend import app\n"
        "else:\n    from backend import events\n"
        "try:\n    import backend.metrics\nexcept ImportError:\n    from backend import readings\n"
        "class C:\n    from backend import audit\n"
        "def f():\n    from backend import services\n"
    )
    path = tmp_path / "probe.py"
    path.write_text(source)
    modules = source_modules()
    eager = {i.imported for i in module_imports("backend.probe", path, modules, deferred=False)}
    assert eager == {"backend.errors", "backend.settings", "backend.registry", "backend", "backend.events",
                     "backend.metrics", "backend.readings", "backend.audit"}
    lazy = {i.imported for i in module_imports("backend.probe", path, modules, deferred=True)}
    assert lazy == eager | {"backend.services"}


def test_cycle_search_finds_every_elementary_cycle() -> None:
    graph = {"a": {"b"}, "b": {"a", "c"}, "c": {"a"}, "d": {"a"}}
    assert sorted(elementary_cycles(graph)) == [("a", "b"), ("a", "b", "c")]
    assert elementary_cycles({"x": {"y"}, "y": set()}) == []


def test_no_import_cycles() -> None:
    found = found_cycles()
    report = [f"import cycle, {name}  ({where})" for name, where in sorted(found.items())]
    assert not report, "\n".join(report)


def _crossings(forbidden: dict[str, tuple[str, ...]]) -> list[str]:
    """Imports (deferred ones too) from a module in a key's tree into a module in one of its values' trees."""
    modules = source_modules()

    def under(module: str, tree: str) -> bool:
        return module == tree or module.startswith(tree + ".")

    return [
        f"{e.importer} imports {e.imported} ({modules[e.importer].relative_to(ROOT)}:{e.line})"
        for e in all_imports(deferred=True)
        for source, targets in forbidden.items()
        if under(e.importer, source) and any(under(e.imported, t) for t in targets)
    ]


def test_the_layering_of_design_md() -> None:
    """vitals is the shared vocabulary and imports neither side; the edge agent and the alert
    rules never import the backend (DESIGN.md, "Suggested layout")."""
    wrong = _crossings({"vitals": ("edge_agent", "backend", "alert_rules"), "edge_agent": ("backend",),
                        "alert_rules": ("backend",)})
    assert not wrong, "\n".join(wrong)


def test_the_read_audit_is_below_the_accounts() -> None:
    """The access rules (backend.accounts) write through the read audit, so the audit knows no
    accounts type: it takes any actor with a username, display name, team name and role."""
    wrong = _crossings({"backend.audit": ("backend.accounts",)})
    assert not wrong, "\n".join(wrong)
    assert _crossings({"backend.accounts": ("backend.audit",)}), "the walker no longer sees accounts -> audit"
