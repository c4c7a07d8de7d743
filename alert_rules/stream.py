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

Passive intervals in ``--patients`` are validated and kept; they only change missed-measurement
(blue) alerts, which come from the scheduler's clock, not from readings, and are not replayed.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from alert_rules.baseline import Baseline, compute_baseline
from alert_rules.drive import Actives, apply_findings, rules_for_kind, settle_inhibition, window
from alert_rules.errors import AlertRulesError
from alert_rules.evaluate import Context, Observation, evaluate, history_kinds
from alert_rules.lifecycle import Effect, Patient, Record, Router
from alert_rules.loader import Ruleset
from alert_rules.model import AnyRule, BaselineRule, Programme
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
    times: list[datetime] = field(default_factory=list)
    history: list[Observation] = field(default_factory=list)
    daily: dict[tuple[str, str], dict[date, list[tuple[datetime, float]]]] = field(default_factory=dict)
    spans: dict[int, tuple[datetime, datetime | None, str]] = field(default_factory=dict)
    """Alert id -> opened, resolved (None: still open), severity: for the stable days."""
    baselines: dict[tuple[str, str], Baseline] = field(default_factory=dict)
    day: date | None = None
    by_kind: dict[MeasurementKind, tuple[list[AnyRule], float]] = field(default_factory=dict)


def replay_stream(readings: Sequence[StreamReading], ruleset: Ruleset, *,
                  patients: Mapping[str, Citizen] | None = None, routing: RoutingConfig | None = None,
                  tz: str = "Europe/Copenhagen", source: str = "<readings>") -> list[Transition]:
    """All citizens' readings through the production path; the alert transitions in order
    (per citizen, in measurement order)."""
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
        out += _replay_citizen(st, mine, router, config, ruleset.by_id, ids, zone)
    return out


def _replay_citizen(st: _State, readings: Sequence[StreamReading], router: Router, config: RoutingConfig,
                    rules_by_id: Mapping[str, AnyRule], ids: Iterator[int], zone: ZoneInfo) -> list[Transition]:
    actives: Actives = {}
    out: list[Transition] = []
    patients = {st.pid: st.patient}
    for r in readings:
        now = r.at
        if st.baseline_rules:
            day = now.astimezone(zone).date()
            if day != st.day:
                st.day = day
                st.baselines = _baselines(st, now, zone)
        rules, hours = st.by_kind.get(r.kind) or st.by_kind.setdefault(r.kind, rules_for_kind(st.rules, r.kind))
        obs = Observation(kind=r.kind, components=r.values, measured_at=now, quality=r.quality)
        ctx = Context(programme=st.patient.programme, history=window(st.times, st.history, now, hours),
                      baselines=st.baselines, overrides=st.overrides)
        findings = evaluate(rules, ctx, obs)
        effects: list[Effect] = []
        settle: set[int] = set()
        apply_findings(actives, st.pid, st.patient, findings, None, rules_by_id, now, router, ids, effects,
                       settle)
        settle_inhibition(actives, settle, patients, config, now, router, effects)
        if effects:
            for e in effects:
                if type(e) is Record and e.action in ("opened", "worsened", "resolved"):
                    a = e.alert
                    # the value production records: the alert's latest breaching value
                    out.append(Transition(st.ref, a.rule_id, a.severity, e.action, now, a.last_value, a.team_key))
                    # the job's stable days: alerts red or yellow now, from opening to resolution
                    st.spans[a.id] = (a.opened_at, a.resolved_at, a.severity)
        if r.kind in st.kinds:
            st.times.append(now)
            st.history.append(obs)
        if st.baseline_rules and not (r.quality and not ARTEFACT_FLAGS.isdisjoint(r.quality)):
            # the nightly job leaves artefact-flagged readings out of the daily means
            for br in st.baseline_rules:
                v = r.values.get(br.component_name)
                if br.measurement == r.kind and v is not None:
                    st.daily.setdefault((br.measurement.value, br.component_name), {}).setdefault(
                        now.astimezone(zone).date(), []).append((now, v))
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
