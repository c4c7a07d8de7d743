"""Rules as data: the validated shape of a rule file (``alert_rules/*.yaml``).

Every rule and every threshold carries a source note, because a clinician must be able to see
where a default came from before changing it (EU MDR: traceable rules). The numbers in the YAML
are programme defaults, never medical truth; per-patient overrides are applied with
:meth:`Rule.with_thresholds`, which re-validates the merged values.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import time as dtime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from alert_rules.errors import ThresholdError
from vitals.kinds import MeasurementKind, spec

Severity = Literal["red", "yellow", "blue", "technical"]
SEVERITY_RANK: dict[str, int] = {"red": 0, "yellow": 1, "blue": 2, "technical": 3}
Programme = Literal["copd", "heart_failure", "hypertension"]
RuleId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$", max_length=100)]
Source = Annotated[str, StringConstraints(min_length=3, strip_whitespace=True)]
Title = Annotated[str, StringConstraints(min_length=3, max_length=200, strip_whitespace=True)]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Thresholds(_Strict):
    """Numeric, clinician-adjustable fields of one rule."""

    def fields(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.model_dump().items() if v is not None}


class AbsoluteThresholds(_Thresholds):
    red_low: float | None = None
    yellow_low: float | None = None
    yellow_high: float | None = None
    red_high: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> AbsoluteThresholds:
        values = [v for v in (self.red_low, self.yellow_low, self.yellow_high, self.red_high) if v is not None]
        if not values:
            raise ValueError("at least one of red_low, yellow_low, yellow_high, red_high is needed")
        if values != sorted(values) or len(set(values)) != len(values):
            raise ValueError("limits must rise strictly: red_low < yellow_low < yellow_high < red_high")
        return self


class BaselineThresholds(_Thresholds):
    k: float = Field(gt=0, le=10)
    """How many standard deviations from the patient's own mean count as a deviation."""
    days: int = Field(ge=3, le=90)
    """The last N stable days the baseline is computed over."""
    min_days: int = Field(ge=2, le=90)
    """The rule stays inactive until this many stable days with readings exist."""
    min_sd: float = Field(default=0.0, ge=0)
    """A floor under the SD, so that a very steady patient does not alert on noise."""

    @model_validator(mode="after")
    def _enough(self) -> BaselineThresholds:
        if self.min_days > self.days:
            raise ValueError("min_days cannot exceed days")
        return self


class TrendThresholds(_Thresholds):
    delta: float
    """Signed change that fires: +2 is a rise of 2 or more, -4 a fall of 4 or more."""
    window_hours: float = Field(gt=0, le=24 * 30)

    @model_validator(mode="after")
    def _nonzero(self) -> TrendThresholds:
        if self.delta == 0:
            raise ValueError("delta must not be 0")
        return self


class ScoreThresholds(_Thresholds):
    yellow: float = Field(ge=1)
    red: float = Field(ge=1)
    recent_hours: float = Field(default=12, gt=0, le=72)
    """Only values measured this recently count towards the score."""
    min_parameters: int = Field(default=2, ge=1, le=6)

    @model_validator(mode="after")
    def _ordered(self) -> ScoreThresholds:
        if self.red <= self.yellow:
            raise ValueError("red must be above yellow")
        return self


class PersonalThresholds(_Thresholds):
    """A robust personal range (FUT RELGAL/RELRAL): how far today is from the citizen's own median,
    in units of the citizen's own variability."""

    yellow: float = Field(gt=0, le=20)
    """The (weighted, summed) deviation in robust SDs that fires yellow."""
    red: float | None = Field(default=None, gt=0, le=30)
    """The deviation that fires red (act today); None: this rule never goes red."""
    days: int = Field(default=14, ge=3, le=60)
    """The baseline is the median of the daily values of this many days..."""
    lag_days: int = Field(default=0, ge=0, le=14)
    """...ending this many days before today (so a slow prodrome does not raise its own baseline)."""
    min_days: int = Field(default=7, ge=3, le=60)
    """Inactive until this many days with usable readings exist in the baseline window."""
    confirm: int = Field(default=1, ge=1, le=7)
    """Days (today included) out of the last ``of``: see :attr:`PersonalRule.persistence`."""
    of: int = Field(default=1, ge=1, le=7)
    recent_hours: float = Field(default=24, gt=0, le=72)
    """A part's latest value counts towards today's deviation only if measured this recently."""

    @model_validator(mode="after")
    def _consistent(self) -> PersonalThresholds:
        if self.min_days > self.days:
            raise ValueError("min_days cannot exceed days")
        if self.confirm > self.of:
            raise ValueError("confirm cannot exceed of")
        if self.red is not None and self.red <= self.yellow:
            raise ValueError("red must be above yellow")
        return self


class OfflineThresholds(_Thresholds):
    offline_hours: float = Field(gt=0, le=24 * 14)


class _RuleBase(_Strict):
    id: RuleId
    title: Title
    """Danish, as the nurse sees it in the worklist."""
    source: Source
    auto_resolve_after: int = Field(default=2, ge=0, le=50)
    """Readings back in range that resolve the alert by themselves; 0 means only a clinician resolves."""

    def threshold_model(self) -> _Thresholds | None:
        return getattr(self, "thresholds", None)

    def default_thresholds(self) -> dict[str, float]:
        t = self.threshold_model()
        return t.fields() if t is not None else {}

    def with_thresholds(self, overrides: Mapping[str, float]) -> Any:
        """This rule with some threshold fields replaced, re-validated as a whole."""
        t = self.threshold_model()
        if not overrides:
            return self
        if t is None:
            raise ThresholdError(f"rule {self.id} has no adjustable thresholds")
        unknown = set(overrides) - set(type(t).model_fields)
        if unknown:
            raise ThresholdError(f"rule {self.id} has no threshold field(s) {sorted(unknown)}")
        try:
            merged = type(t).model_validate({**t.model_dump(), **overrides})
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            raise ThresholdError(f"rule {self.id}: {err['msg']}") from None
        return self.model_copy(update={"thresholds": merged})

    @property
    def measurement_kinds(self) -> tuple[MeasurementKind, ...]:
        m = getattr(self, "measurement", None)
        return (m,) if m is not None else ()


class _MeasuredRule(_RuleBase):
    measurement: MeasurementKind
    component: str | None = None
    """Defaults to the kind's primary component (systolic for blood pressure)."""
    ignore_quality: tuple[str, ...] = ()
    """Device quality flags that make a reading unusable for this rule (e.g. body_movement)."""

    @model_validator(mode="after")
    def _component_exists(self) -> _MeasuredRule:
        names = spec(self.measurement).component_names
        if self.component is not None and self.component not in names:
            raise ValueError(f"component {self.component!r} is not one of {list(names)} for {self.measurement.value}")
        return self

    @property
    def component_name(self) -> str:
        return self.component or spec(self.measurement).primary.name


class AbsoluteRule(_MeasuredRule):
    kind: Literal["absolute"]
    thresholds: AbsoluteThresholds


class BaselineRule(_MeasuredRule):
    kind: Literal["baseline"]
    severity: Literal["red", "yellow"] = "yellow"
    direction: Literal["below", "above", "both"]
    thresholds: BaselineThresholds


class TrendRule(_MeasuredRule):
    kind: Literal["trend"]
    severity: Literal["red", "yellow"] = "yellow"
    thresholds: TrendThresholds


class PersonalPart(_Strict):
    """One measurement's deviation from the citizen's own usual value."""

    measurement: MeasurementKind
    component: str | None = None
    direction: Literal["up", "down"]
    """Which way counts as worse: up (pulse, weight) or down (SpO2)."""
    weight: float = Field(default=1.0, gt=0, le=10)
    scale: Literal["spread", "trimmed_sd", "day_to_day"] = "spread"
    """The citizen's variability: ``spread``: 1.4826 x MAD of the daily values (around the
    median); ``trimmed_sd``: the SD of the daily values within 3 robust SDs of the median (as
    robust, less coarse for values read in whole units); ``day_to_day``: 1.4826 x MAD of
    successive daily differences / sqrt 2 (for a value that drifts slowly, like weight)."""
    min_scale: float = Field(gt=0)
    """A floor under the variability (device resolution, a very steady citizen)."""
    cap: float = Field(default=4.0, gt=0, le=20)
    """A part's deviation counts at most this much (one wild value cannot carry the sum)."""

    @model_validator(mode="after")
    def _component_exists(self) -> PersonalPart:
        names = spec(self.measurement).component_names
        if self.component is not None and self.component not in names:
            raise ValueError(f"component {self.component!r} is not one of {list(names)} for {self.measurement.value}")
        return self

    @property
    def component_name(self) -> str:
        return self.component or spec(self.measurement).primary.name


class PersonalRule(_RuleBase):
    """Deviation from the citizen's own robust baseline (median and MAD of daily values, device
    artefacts left out), summed over one or more measurements, with persistence over days."""

    kind: Literal["personal"]
    parts: Annotated[tuple[PersonalPart, ...], Field(min_length=1, max_length=4)]
    persistence: Literal["days_over", "mean"] = "days_over"
    """``days_over``: fire when at least ``confirm`` of the last ``of`` days (today included)
    reached the limit; ``mean``: fire when the mean of the daily deviations over the last ``of``
    days (at least ``confirm`` of them with readings) reaches it: evidence summed over days,
    so a slow prodrome is seen before any single day stands out."""
    thresholds: PersonalThresholds

    @property
    def measurement_kinds(self) -> tuple[MeasurementKind, ...]:
        return tuple(dict.fromkeys(p.measurement for p in self.parts))


class ScoreRule(_RuleBase):
    """A NEWS2/TOBS-style compound early-warning score over the kinds available."""

    kind: Literal["score"]
    spo2_scale: Literal[1, 2] = 1
    """NEWS2 SpO2 scale 2 is for patients at risk of hypercapnia (target 88–92 %)."""
    single_parameter_red: Literal["red", "yellow"] = "yellow"
    """What a single parameter scoring 3 raises (NEWS2: urgent response)."""
    thresholds: ScoreThresholds

    @property
    def measurement_kinds(self) -> tuple[MeasurementKind, ...]:
        return (
            MeasurementKind.SPO2,
            MeasurementKind.PULSE,
            MeasurementKind.BLOOD_PRESSURE,
            MeasurementKind.TEMPERATURE,
            MeasurementKind.RESPIRATION_RATE,
        )


class MissingRule(_RuleBase):
    """A planned measurement not taken within its grace window: a blue alert."""

    kind: Literal["missing"]
    auto_resolve_after: int = Field(default=1, ge=0, le=50)


class AgentOfflineRule(_RuleBase):
    kind: Literal["agent_offline"]
    thresholds: OfflineThresholds
    auto_resolve_after: int = Field(default=1, ge=0, le=50)


class BatteryLowRule(_RuleBase):
    kind: Literal["battery_low"]
    quality_flags: tuple[str, ...] = ("low_battery", "battery_low")
    """Device quality flags on a reading that mean its battery is low."""
    auto_resolve_after: int = Field(default=3, ge=0, le=50)


Rule = Annotated[
    AbsoluteRule | BaselineRule | TrendRule | ScoreRule | PersonalRule | MissingRule | AgentOfflineRule
    | BatteryLowRule,
    Field(discriminator="kind"),
]
AnyRule = (AbsoluteRule | BaselineRule | TrendRule | ScoreRule | PersonalRule | MissingRule | AgentOfflineRule
           | BatteryLowRule)

TECHNICAL_KINDS = frozenset({"agent_offline", "battery_low"})


def rule_severities(rule: AnyRule) -> tuple[str, ...]:
    if isinstance(rule, AbsoluteRule):
        t = rule.thresholds
        out = []
        if t.red_low is not None or t.red_high is not None:
            out.append("red")
        if t.yellow_low is not None or t.yellow_high is not None:
            out.append("yellow")
        return tuple(out)
    if isinstance(rule, BaselineRule | TrendRule):
        return (rule.severity,)
    if isinstance(rule, ScoreRule):
        return ("red", "yellow")
    if isinstance(rule, PersonalRule):
        return ("red", "yellow") if rule.thresholds.red is not None else ("yellow",)
    if isinstance(rule, MissingRule):
        return ("blue",)
    return ("technical",)


class PlannedDefault(_Strict):
    """A programme's default monitoring plan line (copied onto a patient's plan at enrolment)."""

    kind: MeasurementKind
    times: tuple[dtime, ...] = ()
    weekdays: tuple[Annotated[int, Field(ge=0, le=6)], ...] = (0, 1, 2, 3, 4, 5, 6)
    grace_minutes: int = Field(default=120, ge=0, le=24 * 60)


class RuleFile(_Strict):
    programme: Programme | Literal["all"]
    """``all`` for technical rules that apply to every programme."""
    source: Source
    monitoring_plan: tuple[PlannedDefault, ...] = ()
    plan_source: str | None = None
    rules: Annotated[tuple[Rule, ...], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique_ids(self) -> RuleFile:
        seen: set[str] = set()
        for r in self.rules:
            if r.id in seen:
                raise ValueError(f"rule id {r.id!r} appears twice")
            seen.add(r.id)
        return self
