"""``nearcare rules replay``: many citizens' readings (JSON Lines) through the production path.

Each line is one reading in the project's own shape plus the citizen::

    {"patient": "P0001", "programme": "copd", "kind": "spo2", "values": {"spo2": 91},
     "at": "2026-01-05T08:12:00+00:00", "quality": ["low_perfusion"]}

Validation is strict and names the line and the field: an unknown kind, an unknown component
(``{"value": 80}`` for SpO2), an unknown quality flag, a missing citizen, a naive time. Nothing is
skipped.

The readings go through :mod:`alert_rules.drive` (the engine's own driving functions: the
history window per kind, the pure evaluator, :func:`alert_rules.lifecycle.transition`, the
inhibition stage), with each citizen's readings in measurement order and the reading's time as
"now". Baseline rules (``kind: baseline``) get their baselines as the nightly job makes them: at
the first reading of each local day, from the daily means, leaving out days on which a red or
yellow alert was open (:func:`alert_rules.baseline.compute_baseline`).

With ``clock=True`` (the command's default) the scheduler's clock runs too, through the same pure
functions as the scheduled jobs: each planned measurement of the programme's monitoring plan
(``monitoring_plan:``) not taken within its grace window opens or updates a blue alert
(:func:`alert_rules.plans.missed_slots`, :func:`alert_rules.plans.missed_finding`), found one
minute after the window (the job runs every minute) and cleared by the next reading of that
kind; slots inside a citizen's ``passive`` intervals are not planned. A citizen's ``offline``
intervals in ``--patients`` (the home agent's status said offline) open the technical
agent-offline alert after ``offline_hours`` (:func:`alert_rules.evaluate.evaluate_agent`),
resolved when the agent is back. These alerts are blue and technical: ``nearcare rules score``
counts them apart, never as clinical.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from alert_rules.baseline import Baseline, compute_baseline
from alert_rules.drive import Actives, apply_findings, rules_for_kind, settle_inhibition, step, window
from alert_rules.errors import AlertRulesError
from alert_rules.evaluate import AgentStatus, Context, Finding, Observation, evaluate, evaluate_agent, history_kinds
from alert_rules.lifecycle import Effect, Patient, PatientFinding, Record, Router
from alert_rules.loader import Ruleset
from alert_rules.model import AgentOfflineRule, AnyRule, BaselineRule, MissingRule, Programme
from alert_rules.plans import awaited, missed_finding, missed_slots, missing_clear, plan_lines, planned_slots
from alert_rules.quality import ARTEFACT_FLAGS, KNOWN_FLAGS
from alert_rules.routing import Route, RoutingConfig
from vitals.kinds import MeasurementKind, spec


class ReplayInputError(AlertRulesError):
    """A reading, patient or alert line that does not validate: names the file, line and field."""

    def __init__(self, message: str, *, file: str, line: int | None, field: str | None) -> None:
        self.message, self.file, self.line, self.field = message, file, line, field
        where = f"{file}:{line}" if line is not None else file
        super().__init__(f"{where}: {field}: {message}" if field else f"{where}: {message}")


class PassiveInterval(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    starts_at: AwareDatetime
    ends_at: AwareDatetime | None = None


class Citizen(BaseModel):
    """What ``--patients FILE`` may say about a citizen (JSON: {"P0001": {...}, ...})."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    programme: Programme | None = None
    municipality: str = "Aarhus"
    department: str | None = None
    overrides: dict[str, dict[str, float]] = Field(default_factory=dict)
    passive: tuple[PassiveInterval, ...] = ()
    """Hospitalised, on holiday: no measurement is planned (no blue alert)."""
    offline: tuple[PassiveInterval, ...] = ()
    """The home agent offline (its status, not the readings: readings it buffered still arrive)."""


class _Line(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    patient: str = Field(min_length=1, max_length=100)
    programme: Programme | None = None
    kind: MeasurementKind
    values: dict[str, float | None]
    at: AwareDatetime
    quality: tuple[str, ...] = ()
    id: str | None = None


@dataclass(frozen=True, slots=True)
class StreamReading:
    patient: str
    programme: str | None
    kind: MeasurementKind
    values: Mapping[str, float | None]
    at: datetime
    quality: tuple[str, ...]
    line: int


@dataclass(frozen=True, slots=True)
class Transition:
    """One alert transition, as ``--format jsonl`` writes it."""

    patient: str
    rule: str
    severity: str
    event: str
    """opened, worsened or resolved."""
    at: datetime
    value: float | None
    team: str = ""
    """The team routing chose (not in the JSON Lines output)."""

    def as_json(self) -> dict[str, Any]:
        return {"patient": self.patient, "rule": self.rule, "severity": self.severity, "event": self.event,
                "at": self.at.isoformat(), "value": self.value}


def _field(loc: Sequence[int | str]) -> str:
    return ".".join(str(p) for p in loc) or "(line)"


def parse_readings(lines: Iterable[str], *, source: str = "<readings>") -> list[StreamReading]:
    """Every line validated; the first bad one raises :class:`ReplayInputError` naming it."""
    out: list[StreamReading] = []
    for n, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text:
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ReplayInputError(f"not JSON: {exc.msg}", file=source, line=n, field=None) from None
        if not isinstance(data, dict):
            raise ReplayInputError("a reading is a JSON object", file=source, line=n, field=None)
        if "patient" not in data or data.get("patient") in (None, ""):
            raise ReplayInputError("a reading must name its citizen", file=source, line=n, field="patient")
        try:
            r = _Line.model_validate(data)
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            raise ReplayInputError(str(err["msg"]), file=source, line=n, field=_field(err["loc"])) from None
        names = spec(r.kind).component_names
        for comp in r.values:
            if comp not in names:
                raise ReplayInputError(f"{comp!r} is not a component of {r.kind.value} (one of {list(names)})",
                                       file=source, line=n, field=f"values.{comp}")
        if all(v is None for v in r.values.values()):
            raise ReplayInputError("no value", file=source, line=n, field="values")
        for i, flag in enumerate(r.quality):
            if flag not in KNOWN_FLAGS:
                raise ReplayInputError(f"unknown quality flag {flag!r}", file=source, line=n, field=f"quality.{i}")
        out.append(StreamReading(r.patient, r.programme, r.kind, r.values, r.at, r.quality, n))
    return out


def load_patients(path: Path) -> dict[str, Citizen]:
    """``--patients FILE``: a JSON object, citizen -> :class:`Citizen`."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ReplayInputError(f"not JSON: {exc.msg}", file=str(path), line=exc.lineno, field=None) from None
    if not isinstance(data, dict):
        raise ReplayInputError("a JSON object of citizens is needed", file=str(path), line=None, field=None)
    out: dict[str, Citizen] = {}
    for ref, body in data.items():
        try:
            out[ref] = Citizen.model_validate(body)
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            raise ReplayInputError(str(err["msg"]), file=str(path), line=None,
                                   field=f"{ref}.{_field(err['loc'])}") from None
    return out


# Routing for a replay without routing.yaml: every alert to one placeholder team (not shown).
UNROUTED = RoutingConfig(source="replay without routing", fallback_team="unrouted",
                         sla_minutes={"red": 30, "yellow": 240, "blue": 1440, "technical": 4320},
                         route=Route(receiver="unrouted"))


@dataclass(slots=True)
class _State:
    pid: int
    ref: str
    patient: Patient
    rules: tuple[AnyRule, ...]
    overrides: Mapping[str, Mapping[str, float]]
    kinds: frozenset[MeasurementKind]
    baseline_rules: list[BaselineRule]
    daily: dict[tuple[str, str], dict[date, list[tuple[datetime, float]]]] = field(default_factory=dict)
    spans: dict[int, tuple[datetime, datetime | None, str]] = field(default_factory=dict)
    """Alert id -> opened, resolved (None: still open), severity: for the stable days."""
    baselines: dict[tuple[str, str], Baseline] = field(default_factory=dict)
    day: date | None = None
    by_kind: dict[MeasurementKind, tuple[list[AnyRule], float]] = field(default_factory=dict)


def replay_stream(readings: Sequence[StreamReading], ruleset: Ruleset, *,
                  patients: Mapping[str, Citizen] | None = None, routing: RoutingConfig | None = None,
                  tz: str = "Europe/Copenhagen", source: str = "<readings>", clock: bool = False,
                  until: datetime | None = None) -> list[Transition]:
    """All citizens' readings through the production path; the alert transitions in order
    (per citizen, in measurement order). ``clock``: the scheduler's missed-measurement and
    agent-offline checks too, up to ``until`` (default: the last reading of all)."""
    zone = ZoneInfo(tz)
    patients = patients or {}
    config = routing if routing is not None else UNROUTED
    router = Router(config=config)
    states: dict[str, _State] = {}
    by_citizen: dict[str, list[StreamReading]] = {}
    for r in readings:
        by_citizen.setdefault(r.patient, []).append(r)
    ids = itertools.count(1)
    out: list[Transition] = []
    end = until if until is not None else max((r.at for r in readings), default=None)
    for ref, mine in by_citizen.items():
        info = patients.get(ref, Citizen())
        programme: str | None = info.programme
        for r in mine:
            p = r.programme or programme
            if p is None:
                raise ReplayInputError(f"no programme for citizen {ref!r} (on the line or in --patients)",
                                       file=source, line=r.line, field="programme")
            if programme is None:
                programme = p
            elif p != programme:
                raise ReplayInputError(f"citizen {ref!r} is in programme {programme!r}, not {p!r}",
                                       file=source, line=r.line, field="programme")
        assert programme is not None
        pid = len(states) + 1
        rules = ruleset.rules_for(programme)
        st = _State(pid=pid, ref=ref, patient=Patient(id=pid, programme=programme, municipality=info.municipality,
                                                      department=info.department, external_ref=ref),
                    rules=rules, overrides=info.overrides, kinds=history_kinds(rules),
                    baseline_rules=[r for r in rules if isinstance(r, BaselineRule)])
        states[ref] = st
        mine.sort(key=lambda x: (x.at, x.line))
        ticks = _clock(st, ruleset, info, mine, end, tz) if clock and end is not None else []
        out += _replay_citizen(st, mine, router, config, ruleset.by_id, ids, zone, ticks)
    return out


CHECK_EVERY = timedelta(minutes=1)
"""The scheduled missed-measurement and technical checks run every minute: a slot missed at
``due + grace`` is found one check later."""


@dataclass(frozen=True, slots=True)
class _Tick:
    """One scheduled check with something to say: the findings it hands the state machine."""

    at: datetime
    findings: tuple[tuple[AnyRule, Literal["record", "keep"], Any], ...]
    """(rule, repeat, finding or a builder of it from the open alert's detail)."""


def _clock(st: _State, ruleset: Ruleset, info: Citizen, readings: Sequence[StreamReading], end: datetime,
           tz: str) -> list[_Tick]:
    """The scheduler's checks that find something for this citizen, from the first reading to ``end``."""
    ticks: list[_Tick] = []
    missing = next((r for r in st.rules if isinstance(r, MissingRule)), None)
    lines = plan_lines(ruleset.default_plan(st.patient.programme))
    if missing is not None and lines and readings:
        slots = planned_slots(lines, start=readings[0].at, end=end, tz=tz,
                              passive=[(p.starts_at, p.ends_at) for p in info.passive])
        taken: dict[MeasurementKind, list[datetime]] = {}
        for r in readings:
            taken.setdefault(r.kind, []).append(r.at)
        found: dict[datetime, list[Any]] = {}
        for slot in missed_slots(slots, taken, now=end):
            # the first check after the grace window ran out
            at = slot.due_at + slot.grace + CHECK_EVERY
            if at <= end:
                found.setdefault(at, []).append(slot)
        for at, new in sorted(found.items()):
            ticks.append(_Tick(at, ((missing, "record",
                                     lambda detail, rule=missing, new=new: missed_finding(rule, new, detail)),)))
    offline = next((r for r in st.rules if isinstance(r, AgentOfflineRule)), None)
    if offline is not None:
        limit = timedelta(hours=offline.thresholds.offline_hours)
        for span in info.offline:
            seen = span.starts_at
            at = seen + limit + CHECK_EVERY
            back = span.ends_at
            if back is not None and at >= back:
                continue  # back before the limit: no alert
            if at <= end:
                f = evaluate_agent(offline, AgentStatus("agent", online=False, last_seen_at=seen), at)
                if f is not None:
                    ticks.append(_Tick(at, ((offline, "keep", f),)))
            if back is not None and back <= end:
                f = evaluate_agent(offline, AgentStatus("agent", online=True, last_seen_at=back), back)
                if f is not None:
                    ticks.append(_Tick(back, ((offline, "keep", f),)))
    ticks.sort(key=lambda t: t.at)
    return ticks


def _replay_citizen(st: _State, readings: Sequence[StreamReading], router: Router, config: RoutingConfig,
                    rules_by_id: Mapping[str, AnyRule], ids: Iterator[int], zone: ZoneInfo,
                    ticks: Sequence[_Tick] = ()) -> list[Transition]:
    actives: Actives = {}
    out: list[Transition] = []
    patients = {st.pid: st.patient}
    missing = [r for r in st.rules if isinstance(r, MissingRule)] if ticks else []
    pending = list(reversed(ticks))
    # Every reading of the kinds the rules look back at, as the engine finds them stored: a reading's
    # evaluation sees all of the citizen's readings up to its own time (drive.window), those taken
    # at the same instant included.
    observations = [Observation(kind=r.kind, components=r.values, measured_at=r.at, id=f"line {r.line}",
                                quality=r.quality) for r in readings]
    history = [o for o in observations if o.kind in st.kinds]
    times = [o.measured_at for o in history]

    def record(effects: Sequence[Effect], now: datetime) -> None:
        for e in effects:
            if type(e) is Record and e.action in ("opened", "worsened", "resolved"):
                a = e.alert
                # the value production records: the alert's latest breaching value
                out.append(Transition(st.ref, a.rule_id, a.severity, e.action, now, a.last_value, a.team_key))
                # the job's stable days: alerts red or yellow now, from opening to resolution
                st.spans[a.id] = (a.opened_at, a.resolved_at, a.severity)

    def run_ticks(until: datetime | None) -> None:
        # the scheduler's checks due before this reading (all of them at the end)
        while pending and (until is None or pending[-1].at <= until):
            tick = pending.pop()
            effects: list[Effect] = []
            settle: set[int] = set()
            for rule, repeat, made in tick.findings:
                key = (st.pid, rule.id)
                active = actives.get(key)
                f: Finding = made if isinstance(made, Finding) else made(
                    list(active.detail.get("missed", [])) if active else [])
                pf = PatientFinding(st.patient, f, None, rule.auto_resolve_after, repeat=repeat)
                step(actives, key, active, pf, tick.at, router, ids, effects, settle)
            settle_inhibition(actives, settle, patients, config, tick.at, router, effects)
            record(effects, tick.at)

    for r, obs in zip(readings, observations, strict=True):
        now = r.at
        if pending:
            run_ticks(now)
        if st.baseline_rules:
            day = now.astimezone(zone).date()
            if day != st.day:
                st.day = day
                st.baselines = _baselines(st, now, zone)
        rules, hours = st.by_kind.get(r.kind) or st.by_kind.setdefault(r.kind, rules_for_kind(st.rules, r.kind))
        ctx = Context(programme=st.patient.programme,
                      history=window(times, history, now, hours, reading=obs.id),
                      baselines=st.baselines, overrides=st.overrides)
        findings = evaluate(rules, ctx, obs)
        effects: list[Effect] = []
        settle: set[int] = set()
        apply_findings(actives, st.pid, st.patient, findings, None, rules_by_id, now, router, ids, effects,
                       settle)
        for rule in missing:
            # a reading of a kind a blue alert is waiting for counts as back in range (as the engine)
            key = (st.pid, rule.id)
            active = actives.get(key)
            if active is not None and r.kind.value in awaited(active.detail):
                step(actives, key, active, PatientFinding(st.patient, missing_clear(rule), None,
                                                          rule.auto_resolve_after), now, router, ids, effects, settle)
        settle_inhibition(actives, settle, patients, config, now, router, effects)
        if effects:
            record(effects, now)
        if st.baseline_rules and not (r.quality and not ARTEFACT_FLAGS.isdisjoint(r.quality)):
            # the nightly job leaves artefact-flagged readings out of the daily means
            for br in st.baseline_rules:
                v = r.values.get(br.component_name)
                if br.measurement == r.kind and v is not None:
                    st.daily.setdefault((br.measurement.value, br.component_name), {}).setdefault(
                        now.astimezone(zone).date(), []).append((now, v))
    run_ticks(None)
    return out


def _baselines(st: _State, now: datetime, zone: ZoneInfo) -> dict[tuple[str, str], Baseline]:
    """As ``backend.alerting.jobs.recompute_baselines`` makes them at ``now``."""
    today = now.astimezone(zone).date()
    days = max(r.thresholds.days for r in st.baseline_rules)
    since = now - timedelta(days=days * 2 + 2)
    unstable: set[date] = set()
    for opened, closed, severity in st.spans.values():
        if severity not in ("red", "yellow"):
            continue
        end = closed or now
        if end < since:
            continue
        d, last = opened.astimezone(zone).date(), end.astimezone(zone).date()
        while d <= last:
            unstable.add(d)
            d += timedelta(days=1)
    since_day = since.astimezone(zone).date()
    out: dict[tuple[str, str], Baseline] = {}
    for br in st.baseline_rules:
        key = (br.measurement.value, br.component_name)
        means: list[tuple[date, float]] = []
        daily = st.daily.get(key, {})
        for d in [d for d in daily if d < since_day]:
            del daily[d]  # out of every later window too
        for d, values in daily.items():
            kept = [v for at, v in values if at >= since]  # the job's window starts at an instant
            if kept:
                means.append((d, sum(kept) / len(kept)))
        b = compute_baseline(means, today=today, days=br.thresholds.days, min_days=br.thresholds.min_days,
                             unstable_days=unstable)
        if b is not None:
            out[key] = b
    return out


def format_table(transitions: Sequence[Transition]) -> list[str]:
    lines = [f"{'at':<25} {'patient':<10} {'event':<9} {'severity':<9} {'rule':<34} {'value':>7}"]
    for t in transitions:
        value = "" if t.value is None else f"{t.value:g}"
        lines.append(f"{t.at.isoformat():<25} {t.patient:<10} {t.event:<9} {t.severity:<9} {t.rule:<34} {value:>7}")
    return lines
