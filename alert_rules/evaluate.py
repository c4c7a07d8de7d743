"""The pure evaluator: one reading + the patient's context -> what each rule says.

Imports only :mod:`vitals`, pydantic and the standard library, so the edge agent can give the
citizen the same feedback offline that the backend gives the nurse.

A :class:`Finding` with ``severity=None`` means the rule looked and found the reading in range:
the lifecycle counts those to resolve an alert by itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from alert_rules import news2
from alert_rules.baseline import Baseline
from alert_rules.model import (
    AbsoluteRule,
    AnyRule,
    BaselineRule,
    BatteryLowRule,
    ScoreRule,
    TrendRule,
)
from vitals.kinds import MeasurementKind, spec


@dataclass(frozen=True, slots=True)
class Observation:
    kind: MeasurementKind
    components: Mapping[str, float | None]
    measured_at: datetime
    id: str | None = None
    quality: tuple[str, ...] = ()

    def value(self, component: str | None = None) -> float | None:
        name = component or spec(self.kind).primary.name
        return self.components.get(name)


@dataclass(frozen=True, slots=True)
class Context:
    """What the evaluator may know about the patient besides the reading itself."""

    programme: str
    history: Sequence[Observation] = ()
    """Earlier readings (any kind), oldest first, all measured before the current one."""
    baselines: Mapping[tuple[str, str], Baseline] = field(default_factory=dict)
    """(kind, component) -> the patient's baseline."""
    overrides: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    """rule id -> threshold field -> value in force for this patient (defaults where absent)."""


@dataclass(frozen=True, slots=True)
class Finding:
    rule_id: str
    rule_kind: str
    measurement: str | None
    severity: str | None
    """red / yellow / blue / technical, or None: in range."""
    value: float | None
    title: str
    thresholds: Mapping[str, float]
    """The thresholds in force when this reading was evaluated."""
    detail: Mapping[str, Any] = field(default_factory=dict)

    @property
    def fired(self) -> bool:
        return self.severity is not None


def effective_rule(rule: AnyRule, ctx: Context) -> AnyRule:
    overrides = ctx.overrides.get(rule.id)
    return rule.with_thresholds(overrides) if overrides else rule


def evaluate(rules: Sequence[AnyRule], ctx: Context, obs: Observation) -> list[Finding]:
    out: list[Finding] = []
    for base in rules:
        if obs.kind not in base.measurement_kinds and not isinstance(base, BatteryLowRule):
            continue
        rule = effective_rule(base, ctx)
        finding = _evaluate_one(rule, ctx, obs)
        if finding is not None:
            out.append(finding)
    return out


def _finding(rule: AnyRule, obs: Observation, severity: str | None, value: float | None, **detail: Any) -> Finding:
    return Finding(
        rule_id=rule.id,
        rule_kind=rule.kind,
        measurement=obs.kind.value,
        severity=severity,
        value=value,
        title=rule.title,
        thresholds=rule.default_thresholds(),
        detail=detail,
    )


def _usable(rule: AnyRule, obs: Observation) -> bool:
    ignore = getattr(rule, "ignore_quality", ())
    return not any(q in ignore for q in obs.quality)


def _evaluate_one(rule: AnyRule, ctx: Context, obs: Observation) -> Finding | None:
    if isinstance(rule, AbsoluteRule):
        return _absolute(rule, obs)
    if isinstance(rule, BaselineRule):
        return _baseline(rule, ctx, obs)
    if isinstance(rule, TrendRule):
        return _trend(rule, ctx, obs)
    if isinstance(rule, ScoreRule):
        return _score(rule, ctx, obs)
    if isinstance(rule, BatteryLowRule):
        low = any(q in rule.quality_flags for q in obs.quality)
        return _finding(rule, obs, "technical" if low else None, None, flags=list(obs.quality))
    return None  # missing / agent_offline are evaluated against time, not readings


def absolute_severity(t: Any, value: float) -> str | None:
    if t.red_low is not None and value <= t.red_low:
        return "red"
    if t.red_high is not None and value >= t.red_high:
        return "red"
    if t.yellow_low is not None and value <= t.yellow_low:
        return "yellow"
    if t.yellow_high is not None and value >= t.yellow_high:
        return "yellow"
    return None


def _absolute(rule: AbsoluteRule, obs: Observation) -> Finding | None:
    value = obs.value(rule.component_name)
    if value is None or not _usable(rule, obs):
        return None
    return _finding(rule, obs, absolute_severity(rule.thresholds, value), value)


def _baseline(rule: BaselineRule, ctx: Context, obs: Observation) -> Finding | None:
    value = obs.value(rule.component_name)
    b = ctx.baselines.get((obs.kind.value, rule.component_name))
    t = rule.thresholds
    if value is None or not _usable(rule, obs) or b is None or b.n_days < t.min_days:
        return None  # inactive until enough stable days exist
    sd = max(b.sd, t.min_sd)
    if sd <= 0:
        return None
    z = (value - b.mean) / sd
    fired = (rule.direction in ("below", "both") and z <= -t.k) or (rule.direction in ("above", "both") and z >= t.k)
    return _finding(
        rule, obs, rule.severity if fired else None, value,
        z=round(z, 2), baseline_mean=round(b.mean, 2), baseline_sd=round(b.sd, 2), baseline_days=b.n_days,
    )


def _trend(rule: TrendRule, ctx: Context, obs: Observation) -> Finding | None:
    value = obs.value(rule.component_name)
    if value is None or not _usable(rule, obs):
        return None
    t = rule.thresholds
    since = obs.measured_at - timedelta(hours=t.window_hours)
    earlier = [
        v
        for o in ctx.history
        if o.kind == obs.kind and since <= o.measured_at < obs.measured_at and _usable(rule, o)
        for v in (o.value(rule.component_name),)
        if v is not None
    ]
    if not earlier:
        return None
    reference = min(earlier) if t.delta > 0 else max(earlier)
    change = value - reference
    fired = change >= t.delta if t.delta > 0 else change <= t.delta
    return _finding(
        rule, obs, rule.severity if fired else None, value,
        change=round(change, 2), reference=reference, window_hours=t.window_hours,
    )


_SCORE_SOURCES: dict[str, tuple[MeasurementKind, str]] = {
    "spo2": (MeasurementKind.SPO2, "spo2"),
    "pulse": (MeasurementKind.PULSE, "pulse"),
    "systolic": (MeasurementKind.BLOOD_PRESSURE, "systolic"),
    "temperature": (MeasurementKind.TEMPERATURE, "temperature"),
    "respiration_rate": (MeasurementKind.RESPIRATION_RATE, "respiration_rate"),
}


def _score(rule: ScoreRule, ctx: Context, obs: Observation) -> Finding | None:
    t = rule.thresholds
    since = obs.measured_at - timedelta(hours=t.recent_hours)
    latest: dict[str, float] = {}
    for o in [*ctx.history, obs]:
        if o.measured_at < since or o.measured_at > obs.measured_at:
            continue
        for param, (kind, comp) in _SCORE_SOURCES.items():
            if o.kind == kind and (v := o.components.get(comp)) is not None:
                latest[param] = v
        # pulse also comes with a BP reading when no oximeter pulse exists
        if o.kind == MeasurementKind.BLOOD_PRESSURE and (p := o.components.get("pulse")) is not None:
            latest.setdefault("pulse", p)
    if len(latest) < t.min_parameters:
        return None
    parts = news2.score(latest, spo2_scale=rule.spo2_scale)
    total = sum(parts.values())
    severity: str | None = None
    if total >= t.red:
        severity = "red"
    elif total >= t.yellow:
        severity = "yellow"
    elif any(p == 3 for p in parts.values()):
        severity = rule.single_parameter_red
    return Finding(
        rule_id=rule.id, rule_kind=rule.kind, measurement=None, severity=severity, value=float(total),
        title=rule.title, thresholds=rule.default_thresholds(), detail={"score": total, "parts": parts},
    )
