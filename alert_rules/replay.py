"""Replay a series of readings through the pure evaluator: what fires, when, how bad, to whom.

The alerts go through the backend's own state machine (:mod:`alert_rules.lifecycle`: identity
per rule, worst severity kept, re-routing when worse, auto-resolve after N readings in range),
with baselines recomputed each new day, so a clinician can try a rule change on a known series
before it goes live.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from alert_rules.baseline import Baseline, compute_baseline
from alert_rules.evaluate import Context, Observation, evaluate
from alert_rules.lifecycle import Alert, Patient, PatientFinding, Record, Refresh, Router, run_batch
from alert_rules.loader import Ruleset
from alert_rules.model import BaselineRule, Programme
from alert_rules.routing import Route, RoutingConfig
from vitals.kinds import MeasurementKind


class ReplayPatient(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    programme: Programme
    municipality: str = "Aarhus"
    department: str | None = None
    overrides: dict[str, dict[str, float]] = Field(default_factory=dict)


class ReplayReading(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    at: AwareDatetime
    kind: MeasurementKind
    values: dict[str, float]
    quality: tuple[str, ...] = ()


class ReplayFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    patient: ReplayPatient
    readings: tuple[ReplayReading, ...] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class ReplayEvent:
    at: datetime
    action: str  # opened, worsened, updated, resolved
    rule_id: str
    severity: str
    value: float | None
    team: str | None
    detail: Mapping[str, Any]


def replay(data: ReplayFile, ruleset: Ruleset, routing: RoutingConfig | None = None,
           *, tz: str = "Europe/Copenhagen") -> list[ReplayEvent]:
    """Each reading evaluated as the backend evaluates it, and its findings run through the
    backend's own alert state machine (:func:`alert_rules.lifecycle.run_batch`)."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(tz)
    rules = ruleset.rules_for(data.patient.programme)
    baseline_rules = [r for r in rules if isinstance(r, BaselineRule)]
    patient = Patient(id=0, programme=data.patient.programme, municipality=data.patient.municipality,
                      department=data.patient.department)
    router = Router(config=routing if routing is not None else _UNROUTED)
    ids = itertools.count(1)
    history: list[Observation] = []
    alerts: dict[str, Alert] = {}
    out: list[ReplayEvent] = []
    baselines: dict[tuple[str, str], Baseline] = {}
    current_day = None
    for r in sorted(data.readings, key=lambda x: x.at):
        day = r.at.astimezone(zone).date()
        if day != current_day and baseline_rules:
            current_day = day
            baselines = {}
            for br in baseline_rules:
                daily: dict[Any, list[float]] = {}
                for o in history:
                    v = o.value(br.component_name)
                    if o.kind == br.measurement and v is not None:
                        daily.setdefault(o.measured_at.astimezone(zone).date(), []).append(v)
                b = compute_baseline(((d, sum(v) / len(v)) for d, v in daily.items()), today=day,
                                     days=br.thresholds.days, min_days=br.thresholds.min_days)
                if b is not None:
                    baselines[(br.measurement.value, br.component_name)] = b
        obs = Observation(r.kind, r.values, r.at, quality=r.quality)
        ctx = Context(programme=data.patient.programme, history=tuple(history), baselines=baselines,
                      overrides=data.patient.overrides)
        found = {f.rule_id: f for f in evaluate(rules, ctx, obs) if f.fired or f.rule_id in alerts}
        alerts, effects = run_batch(
            patient, alerts, [PatientFinding(patient, f, None, ruleset.by_id[f.rule_id].auto_resolve_after)
                              for f in found.values()], r.at, router, ids=ids)
        for e in effects:
            if isinstance(e, Record) and e.action in ("opened", "worsened"):
                f = found[e.alert.rule_id]
                team = e.alert.team_key if routing is not None else None
                out.append(ReplayEvent(r.at, e.action, f.rule_id, e.alert.severity, f.value, team, f.detail))
            elif isinstance(e, Record) and e.action == "resolved":
                f = found[e.alert.rule_id]
                out.append(ReplayEvent(r.at, "resolved", f.rule_id, e.alert.severity, f.value, None,
                                       {"in_range": e.alert.in_range_count}))
            elif isinstance(e, Refresh) and e.alert.rule_id in found and found[e.alert.rule_id].fired:
                f = found[e.alert.rule_id]
                out.append(ReplayEvent(r.at, "updated", f.rule_id, e.alert.severity, f.value, None, f.detail))
        history.append(obs)
        # keep what any rule can still look at (30 days covers every window and baseline)
        cutoff = r.at - timedelta(days=31)
        while history and history[0].measured_at < cutoff:
            history.pop(0)
    return out


# Routing for a replay without routing.yaml: every alert to one placeholder team (not shown).
_UNROUTED = RoutingConfig(source="replay without routing", fallback_team="unrouted",
                          sla_minutes={"red": 30, "yellow": 240, "blue": 1440, "technical": 4320},
                          route=Route(receiver="unrouted"))


def format_events(events: Sequence[ReplayEvent]) -> list[str]:
    lines = []
    for e in events:
        value = "" if e.value is None else f"{e.value:g}"
        team = f" -> {e.team}" if e.team else ""
        lines.append(f"{e.at.isoformat()}  {e.action:<8} {e.severity:<9} {e.rule_id:<30} {value:>6}{team}")
    return lines


