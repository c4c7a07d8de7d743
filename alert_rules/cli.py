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


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(1)


@app.command("replay")
def replay_cmd(
    readings: Annotated[Path, typer.Argument(help="JSON Lines, one reading per line ('-' for stdin).")],
    patients: Annotated[Path | None, typer.Option(
        "--patients", help="JSON: citizen -> {programme, municipality, department, overrides, passive}.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table or jsonl")] = "table",
    out: Annotated[Path | None, typer.Option("--out", help="Write here instead of stdout.")] = None,
    rules_dir: Annotated[Path | None, typer.Option("--rules", help="Rules directory (default: packaged).")] = None,
    technical: Annotated[bool, typer.Option(
        "--technical/--no-technical",
        help="Run the scheduler's clock too: missed-measurement (blue) and agent-offline alerts.")] = True,
) -> None:
    """Many citizens' readings through the production path (evaluator, state machine, inhibition,
    and the scheduler's missed-measurement and agent-offline checks): one line per alert
    transition (opened, worsened, resolved)."""
    import json
    import sys

    from alert_rules.errors import AlertRulesError
    from alert_rules.loader import ROUTING_FILE, load_model, load_ruleset
    from alert_rules.routing import RoutingConfig
    from alert_rules.stream import format_table, load_patients, parse_readings, replay_stream

    if fmt not in ("table", "jsonl"):
        typer.echo(f"error: --format {fmt!r}: table or jsonl", err=True)
        raise typer.Exit(2)
    d = _dir(rules_dir)
    try:
        rs = load_ruleset(d)
        routing = load_model(d / ROUTING_FILE, RoutingConfig) if (d / ROUTING_FILE).exists() else None
        who = load_patients(patients) if patients is not None else None
        if str(readings) == "-":
            parsed = parse_readings(sys.stdin, source="<stdin>")
        else:
            with readings.open(encoding="utf-8") as fh:
                parsed = parse_readings(fh, source=str(readings))
        transitions = replay_stream(parsed, rs, patients=who, routing=routing, source=str(readings), clock=technical)
    except (AlertRulesError, OSError) as exc:
        raise _fail(exc) from None
    lines = ([json.dumps(t.as_json()) for t in transitions] if fmt == "jsonl" else format_table(transitions))
    text = "\n".join(lines) + ("\n" if lines else "")
    if out is not None:
        out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    opened = sum(1 for t in transitions if t.event == "opened")
    typer.echo(f"{len(parsed)} readings, {len({r.patient for r in parsed})} citizens, {opened} alerts opened",
               err=True)


@app.command("score")
def score_cmd(
    alerts: Annotated[Path, typer.Option("--alerts", help="JSON Lines from `rules replay --format jsonl`.")],
    events: Annotated[Path, typer.Option("--events", help="JSON Lines: events and monitored days per citizen.")],
    fmt: Annotated[str, typer.Option("--format", help="table or json")] = "table",
    tz: Annotated[str, typer.Option(help="Time zone of the calendar days.")] = "Europe/Copenhagen",
) -> None:
    """Caught deteriorations, false alert-days per patient-month, per rule, red vs yellow."""
    import json

    from alert_rules.errors import AlertRulesError
    from alert_rules.score import format_score, parse_alerts, parse_events, score

    if fmt not in ("table", "json"):
        typer.echo(f"error: --format {fmt!r}: table or json", err=True)
        raise typer.Exit(2)
    try:
        with alerts.open(encoding="utf-8") as fh:
            opened = parse_alerts(fh, source=str(alerts), tz=tz)
        with events.open(encoding="utf-8") as fh:
            evs, monitored = parse_events(fh, source=str(events), tz=tz)
        if not monitored:
            typer.echo(f"error: {events}: no monitored_from/monitored_to lines: the citizen-days are unknown", err=True)
            raise typer.Exit(1)
        s = score(opened, evs, monitored)
    except (AlertRulesError, OSError) as exc:
        raise _fail(exc) from None
    if fmt == "json":
        typer.echo(json.dumps(s.as_json(), indent=2))
    else:
        for line in format_score(s):
            typer.echo(line)


@app.command("cohort")
def cohort_cmd(
    out: Annotated[Path, typer.Option(
        "--out", help="Directory for readings.jsonl, events.jsonl, patients.json and truth.json.")],
    seed: Annotated[int, typer.Option(help="Random seed.")] = 1,
    citizens: Annotated[int, typer.Option(min=1, max=100_000)] = 200,
    days: Annotated[int, typer.Option(min=30, max=3650)] = 180,
) -> None:
    """A labelled synthetic cohort (COPD and heart failure) built from published physiology.

    truth.json holds each citizen's hidden stable parameters and deterioration sizes: rules must
    never read it; it is for the ceiling bench (bench/alert_ceiling.py) only."""
    import json

    from alert_rules.cohort import generate

    c = generate(seed=seed, citizens=citizens, days=days)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "readings.jsonl").open("w", encoding="utf-8") as fh:
        for r in c.readings:
            fh.write(json.dumps(r) + "\n")
    with (out / "events.jsonl").open("w", encoding="utf-8") as fh:
        for e in c.events:
            fh.write(json.dumps(e) + "\n")
    (out / "patients.json").write_text(json.dumps(c.patients, indent=1) + "\n", encoding="utf-8")
    (out / "truth.json").write_text(json.dumps(c.truth, indent=1) + "\n", encoding="utf-8")
    n_events = sum(1 for e in c.events if "event" in e)
    typer.echo(f"{len(c.readings)} readings, {citizens} citizens x {days} days, {n_events} events -> {out}")


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
