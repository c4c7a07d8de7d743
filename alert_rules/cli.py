"""``nearcare rules …``: check the rule files, replay readings, test routing.

Imports stay inside the commands and never reach the backend: the rules package is pure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False)


@app.callback()
def _rules() -> None:
    """Alert rules and routing."""


def _dir(path: Path | None) -> Path:
    from alert_rules.loader import default_dir

    return path if path is not None else default_dir()


@app.command()
def check(
    path: Annotated[Path | None, typer.Argument(help="A rules directory or one rule file (default: packaged).")] = None,
) -> None:
    """Validate rule files and routing.yaml strictly; exit 1 naming file, line and field."""
    from alert_rules.errors import RuleFileError
    from alert_rules.loader import ROUTING_FILE, load_model, load_ruleset, rule_paths
    from alert_rules.routing import RoutingConfig

    target = _dir(path)
    try:
        if target.is_file():
            if target.name == ROUTING_FILE:
                load_model(target, RoutingConfig)
                typer.echo(f"ok: {target} (routing)")
                return
            rs = load_ruleset(target.parent, paths=[target])
        else:
            rs = load_ruleset(target, paths=rule_paths(target))
            routing = target / ROUTING_FILE
            if routing.exists():
                load_model(routing, RoutingConfig)
                typer.echo(f"ok: {routing} (routing)")
    except RuleFileError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    for name, f in rs.files.items():
        typer.echo(f"ok: {name} ({f.programme}, {len(f.rules)} rules)")


@app.command("test")
def test_cmd(
    readings: Annotated[Path, typer.Option(
        "--readings", help="YAML/JSON: {patient: {programme, municipality, …}, readings: [{at, kind, values}]}")],
    rules_dir: Annotated[Path | None, typer.Option("--rules", help="Rules directory (default: packaged).")] = None,
) -> None:
    """Replay readings through the pure evaluator and print what fires, when, how bad, to whom."""
    from alert_rules.errors import RuleFileError
    from alert_rules.loader import ROUTING_FILE, load_model, load_ruleset
    from alert_rules.replay import ReplayFile, format_events, replay
    from alert_rules.routing import RoutingConfig

    d = _dir(rules_dir)
    try:
        rs = load_ruleset(d)
        routing = load_model(d / ROUTING_FILE, RoutingConfig) if (d / ROUTING_FILE).exists() else None
        data = load_model(readings, ReplayFile)
    except RuleFileError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    events = replay(data, rs, routing)
    for line in format_events(events):
        typer.echo(line)
    typer.echo(f"{len(data.readings)} readings, {sum(1 for e in events if e.action == 'opened')} alerts opened")


@app.command()
def route(
    labels: Annotated[list[str], typer.Option(
        "--labels", help="k=v, e.g. programme=copd severity=red municipality=Aarhus")],
    at: Annotated[str | None, typer.Option(help="ISO time (default: now), e.g. 2026-11-24T17:00+01:00")] = None,
    rules_dir: Annotated[Path | None, typer.Option("--rules", help="Rules directory (default: packaged).")] = None,
) -> None:
    """Print which team gets an alert with these labels (like ``amtool config routes test``)."""
    from datetime import UTC, datetime

    from alert_rules.errors import RuleFileError
    from alert_rules.loader import ROUTING_FILE, load_model
    from alert_rules.routing import RoutingConfig
    from alert_rules.routing import route as do_route

    pairs: dict[str, str] = {}
    for item in labels:
        for part in item.split():
            if "=" not in part:
                typer.echo(f"error: label {part!r} is not k=v", err=True)
                raise typer.Exit(2)
            k, v = part.split("=", 1)
            pairs[k] = v
    try:
        cfg = load_model(_dir(rules_dir) / ROUTING_FILE, RoutingConfig)
    except RuleFileError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    when = datetime.fromisoformat(at) if at else datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=cfg.zone)
    d = do_route(cfg, pairs, at=when)
    typer.echo(d.team)
    typer.echo(f"  route:      {' > '.join(d.route_path)}")
    typer.echo(f"  receiver:   {d.receiver}")
    typer.echo(f"  sla:        {int(d.sla.total_seconds() // 60)} min")
    typer.echo(f"  escalation: {' -> '.join(d.escalate_to) or '(none)'}")
    if d.holiday:
        typer.echo(f"  holiday:    {d.holiday}")
