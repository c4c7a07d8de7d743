"""The pure evaluator: one reading + the patient's context -> what each rule says.

Imports only :mod:`vitals`, pydantic and the standard library, so the edge agent can give the
citizen the same feedback offline that the backend gives the nurse.

A :class:`Finding` with ``severity=None`` means the rule looked and found the reading in range:
the lifecycle counts those to resolve an alert by itself.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from alert_rules import news2
from alert_rules.baseline import Baseline
from alert_rules.model import (
    AbsoluteRule,
    AgentOfflineRule,
    AnyRule,
    BaselineRule,
    BatteryLowRule,
    PersonalRule,
    ScoreRule,
    TrendRule,
)
from alert_rules.quality import ARTEFACT_FLAGS
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
    """Earlier readings (any kind), oldest first: measured before the current one or at the same
    instant (an oximeter's pulse and SpO2), never the current one itself."""
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
    """What each rule says about ``obs``. A reading with a device artefact flag
    (:data:`alert_rules.quality.ARTEFACT_FLAGS`) gets no clinical finding at all: it never
    opens, worsens or resolves a clinical alert (only the battery rule still looks at it)."""
    out: list[Finding] = []
    kind = obs.kind
    artefact = bool(obs.quality) and not ARTEFACT_FLAGS.isdisjoint(obs.quality)
    for base in rules:
        plan = _PLANS.get(id(base))
        if plan is None or plan.base is not base:
            plan = _plan_for(base)
        if not plan.any_kind and (artefact or kind not in plan.kinds):
            continue
        overrides = ctx.overrides.get(plan.rule_id) if ctx.overrides else None
        rule = plan.effective(overrides) if overrides else plan.default
        finding = rule.check(rule, ctx, obs)
        if finding is not None:
            out.append(finding)
    return out


# Why compiled rules: a rule is a pydantic model, and reading its derived values per reading
# (thresholds dumped to a dict, the component's name, a missing attribute through pydantic's
# ``__getattr__``, an override re-validated into a new model) cost more than the checks
# themselves. Each rule, and each rule under a given set of overrides, is turned once into the
# plain values its check needs. Keyed by ``id`` with the rule kept alive by the entry, so an id
# cannot be reused while its entry exists; bounded, because override sets are per patient.
_PLANS: dict[int, _Plan] = {}
_MAX_PLANS = 1024
_MAX_EFFECTIVE = 4096


class _Compiled:
    __slots__ = ("a", "b", "c", "check", "component", "d", "ignore", "rule", "thresholds")

    def __init__(self, rule: AnyRule) -> None:
        self.rule = rule
        self.component: str = getattr(rule, "component_name", "") if hasattr(rule, "measurement") else ""
        self.ignore: frozenset[str] = frozenset(rule.ignore_quality) if hasattr(rule, "ignore_quality") else frozenset()
        self.thresholds: dict[str, float] = rule.default_thresholds()
        self.a: Any = None
        self.b: Any = None
        self.c: Any = None
        self.d: Any = None
        self.check: Any = _skip
        if isinstance(rule, AbsoluteRule):
            t = rule.thresholds
            self.a, self.b, self.c, self.d = t.red_low, t.red_high, t.yellow_low, t.yellow_high
            self.check = _absolute
        elif isinstance(rule, BaselineRule):
            self.a = (rule.measurement.value, self.component)
            self.b = (rule.direction in ("below", "both"), rule.direction in ("above", "both"))
            self.check = _baseline
        elif isinstance(rule, TrendRule):
            self.a = timedelta(hours=rule.thresholds.window_hours)
            self.check = _trend
        elif isinstance(rule, ScoreRule):
            self.a = timedelta(hours=rule.thresholds.recent_hours)
            self.check = _score
        elif isinstance(rule, BatteryLowRule):
            self.a = frozenset(rule.quality_flags)
            self.check = _battery
        elif isinstance(rule, PersonalRule):
            self.a = tuple((p.measurement, p.component_name, p.direction == "up", p.weight, p.scale,
                            p.min_scale, p.cap) for p in rule.parts)
            self.b = timedelta(hours=rule.thresholds.recent_hours)
            by_kind: dict[MeasurementKind, list[tuple[int, str]]] = {}
            for i, p in enumerate(rule.parts):
                by_kind.setdefault(p.measurement, []).append((i, p.component_name))
            self.c = by_kind
            self.check = _personal


class _Plan:
    __slots__ = ("_effective", "any_kind", "base", "default", "kinds", "rule_id")

    def __init__(self, base: AnyRule) -> None:
        self.base = base
        self.rule_id = base.id
        self.kinds = frozenset(base.measurement_kinds)
        self.any_kind = isinstance(base, BatteryLowRule)
        self.default = _Compiled(base)
        self._effective: dict[tuple[tuple[str, float], ...], _Compiled] = {}

    def effective(self, overrides: Mapping[str, float]) -> _Compiled:
        key = tuple(sorted(overrides.items()))
        hit = self._effective.get(key)
        if hit is None:
            # Raises ThresholdError for overrides that do not fit; those are never cached.
            hit = _Compiled(self.base.with_thresholds(overrides))
            if len(self._effective) >= _MAX_EFFECTIVE:
                self._effective.clear()
            self._effective[key] = hit
        return hit


def _plan_for(base: AnyRule) -> _Plan:
    plan = _Plan(base)
    if len(_PLANS) >= _MAX_PLANS:
        _PLANS.clear()
    _PLANS[id(base)] = plan
    return plan


def _found(c: _Compiled, obs: Observation, severity: str | None, value: float | None,
           detail: dict[str, Any]) -> Finding:
    rule = c.rule
    return Finding(rule.id, rule.kind, obs.kind.value, severity, value, rule.title, dict(c.thresholds), detail)


def _skip(c: _Compiled, ctx: Context, obs: Observation) -> Finding | None:
    return None  # missing / agent_offline are evaluated against time, not readings


def _battery(c: _Compiled, ctx: Context, obs: Observation) -> Finding | None:
    low = not c.a.isdisjoint(obs.quality)
    return _found(c, obs, "technical" if low else None, None, {"flags": list(obs.quality)})


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


def _absolute(c: _Compiled, ctx: Context, obs: Observation) -> Finding | None:
    value = obs.components.get(c.component)
    if value is None or (c.ignore and not c.ignore.isdisjoint(obs.quality)):
        return None
    red_low, red_high, yellow_low, yellow_high = c.a, c.b, c.c, c.d
    severity: str | None = None
    if (red_low is not None and value <= red_low) or (red_high is not None and value >= red_high):
        severity = "red"
    elif (yellow_low is not None and value <= yellow_low) or (yellow_high is not None and value >= yellow_high):
        severity = "yellow"
    return _found(c, obs, severity, value, {})


def _baseline(c: _Compiled, ctx: Context, obs: Observation) -> Finding | None:
    rule: BaselineRule = c.rule  # type: ignore[assignment]
    value = obs.components.get(c.component)
    b = ctx.baselines.get(c.a)
    t = rule.thresholds
    if value is None or (c.ignore and not c.ignore.isdisjoint(obs.quality)) or b is None or b.n_days < t.min_days:
        return None  # inactive until enough stable days exist
    sd = max(b.sd, t.min_sd)
    if sd <= 0:
        return None
    z = (value - b.mean) / sd
    below, above = c.b
    fired = (below and z <= -t.k) or (above and z >= t.k)
    return _found(c, obs, rule.severity if fired else None, value, {
        "z": round(z, 2), "baseline_mean": round(b.mean, 2), "baseline_sd": round(b.sd, 2),
        "baseline_days": b.n_days})


def _trend(c: _Compiled, ctx: Context, obs: Observation) -> Finding | None:
    comp = c.component
    ignore = c.ignore
    value = obs.components.get(comp)
    if value is None or (ignore and not ignore.isdisjoint(obs.quality)):
        return None
    rule: TrendRule = c.rule  # type: ignore[assignment]
    t = rule.thresholds
    at = obs.measured_at
    since = at - c.a
    kind = obs.kind
    # A plain scan rather than a bisect: the history's order is the caller's promise only, and
    # the engine already hands in just the rules' window of it.
    earlier = [
        v
        for o in ctx.history
        if o.kind == kind and since <= o.measured_at < at and not (o.quality and _unusable(o.quality, ignore))
        for v in (o.components.get(comp),)
        if v is not None
    ]
    if not earlier:
        return None
    delta = t.delta
    reference = min(earlier) if delta > 0 else max(earlier)
    change = value - reference
    fired = change >= delta if delta > 0 else change <= delta
    return _found(c, obs, rule.severity if fired else None, value, {
        "change": round(change, 2), "reference": reference, "window_hours": t.window_hours})


_SCORE_SOURCES: dict[str, tuple[MeasurementKind, str]] = {
    "spo2": (MeasurementKind.SPO2, "spo2"),
    "pulse": (MeasurementKind.PULSE, "pulse"),
    "systolic": (MeasurementKind.BLOOD_PRESSURE, "systolic"),
    "temperature": (MeasurementKind.TEMPERATURE, "temperature"),
    "respiration_rate": (MeasurementKind.RESPIRATION_RATE, "respiration_rate"),
}
# The same, looked up by the observation's kind: one dict lookup per observation, not five.
_SCORE_BY_KIND: dict[MeasurementKind, tuple[tuple[str, str], ...]] = {}
for _param, (_kind, _comp) in _SCORE_SOURCES.items():
    _SCORE_BY_KIND[_kind] = (*_SCORE_BY_KIND.get(_kind, ()), (_param, _comp))
del _param, _kind, _comp


def _score(c: _Compiled, ctx: Context, obs: Observation) -> Finding | None:
    rule: ScoreRule = c.rule  # type: ignore[assignment]
    t = rule.thresholds
    at = obs.measured_at
    since = at - c.a
    latest: dict[str, float] = {}
    by_kind = _SCORE_BY_KIND
    bp = MeasurementKind.BLOOD_PRESSURE
    for o in (*ctx.history, obs):
        if o.measured_at < since or o.measured_at > at or (o.quality and not ARTEFACT_FLAGS.isdisjoint(o.quality)):
            continue
        sources = by_kind.get(o.kind)
        if sources is None:
            continue
        comps = o.components
        for param, comp in sources:
            if (v := comps.get(comp)) is not None:
                latest[param] = v
        # pulse also comes with a BP reading when no oximeter pulse exists
        if o.kind == bp and (p := comps.get("pulse")) is not None:
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
        title=rule.title, thresholds=dict(c.thresholds), detail={"score": total, "parts": parts},
    )


def _unusable(quality: tuple[str, ...], ignore: frozenset[str]) -> bool:
    return not ARTEFACT_FLAGS.isdisjoint(quality) or (bool(ignore) and not ignore.isdisjoint(quality))


_DAY = 86400.0
_ONE_DAY = timedelta(days=1)
_HALF_DAY = timedelta(hours=12)
_ZERO = timedelta(0)
_MAD_SD = 1.4826  # MAD x 1.4826 estimates the SD of normally distributed values
_SQRT2 = 2 ** 0.5


def _median(values: list[float]) -> float:
    v = sorted(values)
    n = len(v)
    mid = n // 2
    return v[mid] if n % 2 else (v[mid - 1] + v[mid]) / 2


def _trimmed_sd(values: list[float], med: float, floor: float) -> float:
    """The SD of the daily values within 3 robust SDs (1.4826 x MAD, at least ``floor``) of their
    median: as robust to a wild day as the MAD, but it uses every ordinary day, so it does not
    jump between a few steps when readings come in whole units. (SpO2 in whole per cent: when
    more than half the days read the same value the MAD is 0, otherwise mostly 1, i.e. a robust
    SD of 0 or 1.48 for a citizen whose SD is 0.7.)"""
    bound = 3 * max(_MAD_SD * _median([abs(v - med) for v in values]), floor)
    kept = [v for v in values if abs(v - med) <= bound]
    if len(kept) < 3:
        return floor
    mean = sum(kept) / len(kept)
    return math.sqrt(sum((v - mean) ** 2 for v in kept) / (len(kept) - 1))


def _personal(c: _Compiled, ctx: Context, obs: Observation) -> Finding | None:
    """Today's deviation from the citizen's own median, summed over the rule's parts.

    Days are 24-hour periods counted back from this reading and centred on its time of day (day 0:
    the last 12 hours; day 1: 12 to 36 hours back, i.e. yesterday's reading taken at about the
    same time, earlier or later), so the result does not depend on a time zone. (Periods ending
    at the reading put yesterday's reading in day 0 whenever it was taken later in the day than
    today's, and "the last two days" became today and the day before yesterday.) A part's daily
    value is the mean of that day's usable readings (no artefact flag); today's is the latest
    usable one within ``recent_hours``."""
    rule = cast(PersonalRule, c.rule)
    t = rule.thresholds
    at = obs.measured_at
    first_base = t.lag_days + 1
    horizon = t.lag_days + t.days + 1
    parts: tuple[Any, ...] = c.a
    n_parts = len(parts)
    # per part and day (0 = the last 24 hours): the sum and count of usable values; and today's
    # latest usable value. Lists indexed by day and whole-day timedelta division: this loop runs
    # over a month of history for every reading, so it is kept to the cheapest operations.
    sums: list[list[float]] = [[0.0] * horizon for _ in parts]
    counts: list[list[int]] = [[0] * horizon for _ in parts]
    latest: list[float | None] = [None] * n_parts
    latest_at: list[datetime] = [datetime.min.replace(tzinfo=at.tzinfo)] * n_parts
    recent = at - c.b
    by_kind: dict[MeasurementKind, list[tuple[int, str]]] = c.c
    artefacts = ARTEFACT_FLAGS
    one_day = _ONE_DAY
    half_day = _HALF_DAY
    zero = _ZERO
    for o in itertools.chain(ctx.history, (obs,)):
        idxs = by_kind.get(o.kind)
        if idxs is None:
            continue
        q = o.quality
        if q and not artefacts.isdisjoint(q):
            continue
        taken = o.measured_at
        age = at - taken
        if age < zero:
            continue
        d = (age + half_day) // one_day
        comps = o.components
        for i, comp in idxs:
            v = comps.get(comp)
            if v is None:
                continue
            if d < horizon:
                sums[i][d] += v
                counts[i][d] += 1
            if taken >= recent and taken >= latest_at[i]:
                latest[i] = v
                latest_at[i] = taken
    centres: list[tuple[float, float]] = []
    for i, (_kind, _comp, _up, _w, scale_mode, floor, _cap) in enumerate(parts):
        ps, pc = sums[i], counts[i]
        days = [(d, ps[d] / pc[d]) for d in range(first_base, horizon) if pc[d]]
        if len(days) < t.min_days:
            return None  # inactive until the citizen has enough usable days
        values = [v for _, v in days]
        med = _median(values)
        if scale_mode == "day_to_day":
            # successive differences of a slowly drifting series: 1.4826 x median |difference|
            # estimates their SD, which is the daily noise x sqrt 2
            diffs = [abs(b - a) for (_da, a), (_db, b) in itertools.pairwise(days)]
            spread = _MAD_SD * _median(diffs) / _SQRT2 if diffs else 0.0
        elif scale_mode == "trimmed_sd":
            spread = _trimmed_sd(values, med, floor)
        else:
            spread = _MAD_SD * _median([abs(v - med) for v in values])
        centres.append((med, max(spread, floor)))

    def score(values: list[float | None]) -> tuple[float, list[float]] | None:
        total = 0.0
        zs: list[float] = []
        for (_kind, _comp, up, w, _dd, _floor, cap), (med, scale), v in zip(parts, centres, values, strict=True):
            if v is None:
                return None
            z = (v - med) / scale if up else (med - v) / scale
            z = max(-cap, min(cap, z))
            zs.append(round(z, 2))
            total += w * z
        return total, zs

    now = score(latest)
    if now is None:
        return None
    today, zs = now
    daily_scores = [today]
    for d in range(1, t.of):
        past = score([sums[i][d] / counts[i][d] if d < horizon and counts[i][d] else None for i in range(n_parts)])
        if past is not None:
            daily_scores.append(past[0])
    severity: str | None = None
    if rule.persistence == "mean":
        total = sum(daily_scores) / len(daily_scores)
        fired = len(daily_scores) >= t.confirm and total >= t.yellow
        reached = len(daily_scores)
    else:
        total = today
        reached = sum(1 for x in daily_scores if x >= t.yellow)
        fired = today >= t.yellow and reached >= t.confirm
    if fired:
        severity = "red" if t.red is not None and total >= t.red else "yellow"
    return Finding(rule.id, rule.kind, obs.kind.value, severity, round(total, 2), rule.title, dict(c.thresholds), {
        "z": zs, "median": [round(m, 2) for m, _ in centres], "scale": [round(s, 2) for _, s in centres],
        "days": reached})


def history_hours(rules: Sequence[AnyRule]) -> float:
    """How far back a set of rules looks: the longest trend window, score recency or personal
    baseline window."""
    hours = 0.0
    for r in rules:
        if isinstance(r, TrendRule):
            hours = max(hours, r.thresholds.window_hours)
        elif isinstance(r, ScoreRule):
            hours = max(hours, r.thresholds.recent_hours)
        elif isinstance(r, PersonalRule):
            hours = max(hours, (r.thresholds.lag_days + r.thresholds.days + 1) * 24.0)
    return hours


def history_kinds(rules: Sequence[AnyRule]) -> frozenset[MeasurementKind]:
    """The kinds of earlier readings a set of rules looks at (trend, score and personal rules)."""
    return frozenset(k for r in rules if isinstance(r, TrendRule | ScoreRule | PersonalRule)
                     for k in r.measurement_kinds)


# Technical rules decided against facts about the home equipment, not against a reading. The
# backend's scheduled check only gathers the facts (agents, devices) and feeds the findings to
# the alert state machine; the rules and their limits live here and in technical.yaml.


@dataclass(frozen=True, slots=True)
class AgentStatus:
    """What the backend knows of one home agent at a scheduled check."""

    agent_id: str
    online: bool
    """The agent's last status message said online (its MQTT will says offline)."""
    last_seen_at: datetime | None
    """Its last contact (else its last status, else its enrolment)."""


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """One measuring device of an agent, as its last reading's status bits left it."""

    address: str
    model: str | None
    battery_low: bool


def evaluate_agent(rule: AgentOfflineRule, agent: AgentStatus, now: datetime,
                   overrides: Mapping[str, float] | None = None) -> Finding | None:
    """Offline beyond ``offline_hours``: a technical breach. Online: a clear (the alert resolves
    after ``auto_resolve_after`` such checks). Offline but not for long yet: no finding."""
    r = rule.with_thresholds(overrides) if overrides else rule
    thresholds = r.default_thresholds()
    if agent.online:
        return Finding(r.id, r.kind, None, None, None, r.title, thresholds, {"agent_id": agent.agent_id})
    limit = now - timedelta(hours=r.thresholds.offline_hours)
    if agent.last_seen_at is not None and agent.last_seen_at < limit:
        return Finding(r.id, r.kind, None, "technical", None, r.title, thresholds,
                       {"agent_id": agent.agent_id, "last_seen_at": agent.last_seen_at.isoformat()})
    return None


def evaluate_device(rule: BatteryLowRule, device: DeviceStatus) -> Finding | None:
    """A device whose status reports a low battery: a technical breach. A device that no longer
    does is no finding here: readings without the flag clear the alert (see :func:`evaluate`)."""
    if not device.battery_low:
        return None
    return Finding(rule.id, rule.kind, None, "technical", None, rule.title, {},
                   {"device": device.address, "model": device.model})
