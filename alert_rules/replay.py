"""Replay a series of readings through the pure evaluator: what fires, when, how bad, to whom.

The lifecycle is simulated in memory the way the backend runs it (identity per rule, worst
severity kept, auto-resolve after N readings in range, baselines recomputed each new day), so
a clinician can try a rule change on a known series before it goes live.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from alert_rules.baseline import Baseline, compute_baseline
from alert_rules.evaluate import Context, Observation, evaluate
from alert_rules.loader import Ruleset
from alert_rules.model import SEVERITY_RANK, BaselineRule, Programme
from alert_rules.routing import RoutingConfig, route
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
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(tz)
    rules = ruleset.rules_for(data.patient.programme)
    baseline_rules = [r for r in rules if isinstance(r, BaselineRule)]
    history: list[Observation] = []
    active: dict[str, tuple[str, int]] = {}  # rule -> (severity, in-range count)
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
        for f in evaluate(rules, ctx, obs):
            labels = {"programme": data.patient.programme, "severity": f.severity or "", "kind": f.rule_kind,
                      "rule": f.rule_id, "municipality": data.patient.municipality,
                      **({"measurement": f.measurement} if f.measurement else {}),
                      **({"department": data.patient.department} if data.patient.department else {})}
            team = route(routing, labels, at=r.at).team if routing is not None and f.severity else None
            prev = active.get(f.rule_id)
            if f.severity:
                if prev is None:
                    active[f.rule_id] = (f.severity, 0)
                    out.append(ReplayEvent(r.at, "opened", f.rule_id, f.severity, f.value, team, f.detail))
                elif SEVERITY_RANK[f.severity] < SEVERITY_RANK[prev[0]]:
                    active[f.rule_id] = (f.severity, 0)
                    out.append(ReplayEvent(r.at, "worsened", f.rule_id, f.severity, f.value, team, f.detail))
                else:
                    active[f.rule_id] = (prev[0], 0)
                    out.append(ReplayEvent(r.at, "updated", f.rule_id, prev[0], f.value, None, f.detail))
            elif prev is not None:
                n = prev[1] + 1
                rule = ruleset.by_id[f.rule_id]
                if rule.auto_resolve_after and n >= rule.auto_resolve_after:
                    del active[f.rule_id]
                    out.append(ReplayEvent(r.at, "resolved", f.rule_id, prev[0], f.value, None, {"in_range": n}))
                else:
                    active[f.rule_id] = (prev[0], n)
        history.append(obs)
        # keep what any rule can still look at (30 days covers every window and baseline)
        cutoff = r.at - timedelta(days=31)
        while history and history[0].measured_at < cutoff:
            history.pop(0)
    return out


def format_events(events: Sequence[ReplayEvent]) -> list[str]:
    lines = []
    for e in events:
        value = "" if e.value is None else f"{e.value:g}"
        team = f" -> {e.team}" if e.team else ""
        lines.append(f"{e.at.isoformat()}  {e.action:<8} {e.severity:<9} {e.rule_id:<30} {value:>6}{team}")
    return lines


