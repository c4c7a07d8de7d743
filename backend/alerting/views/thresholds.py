"""A patient's thresholds as the clinician sees them (in force, default, override and why), the
red and yellow bands they draw on the trend plots, and the clinician's edit from a form."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg

from alert_rules.model import AbsoluteRule, BaselineRule, TrendRule
from backend.accounts.model import User
from backend.alerting.config import AlertingConfig
from backend.alerting.errors import AlertingError
from backend.alerting.thresholds import clear_threshold_override, set_threshold_override, thresholds_for
from vitals.kinds import spec

MIN_REASON = 3


@dataclass(frozen=True, slots=True)
class ThresholdRow:
    rule_id: str
    label: str
    """The rule's title."""
    field: str
    value: float
    """In force for this patient now."""
    default: float
    """The programme default."""
    overridden: bool
    reason: str | None
    by: str | None
    at: datetime | None
    kind: str | None
    """The measurement kind the rule reads (None for rules about no single measurement)."""
    component: str | None
    rule_kind: str | None
    """absolute, baseline, trend, score, missing…; None for a rule no longer in the files."""


def _rule_info(config: AlertingConfig, rule_id: str) -> tuple[str | None, str | None, str | None]:
    """(measurement kind, component, rule kind) from the loaded rule files."""
    rule = config.ruleset.by_id.get(rule_id)
    if rule is None:  # removed from the files since: shown without a band
        return None, None, None
    if isinstance(rule, AbsoluteRule | BaselineRule | TrendRule):
        return rule.measurement.value, rule.component_name, rule.kind
    return None, None, rule.kind


def thresholds(conn: psycopg.Connection, *, patient_id: int, config: AlertingConfig) -> list[ThresholdRow]:
    out = []
    for th in thresholds_for(conn, patient_id=patient_id, config=config):
        kind, comp, rule_kind = _rule_info(config, th.rule_id)
        out.append(
            ThresholdRow(
                rule_id=th.rule_id,
                label=th.rule_title,
                field=th.field,
                value=th.value,
                default=th.default_value,
                overridden=th.overridden,
                reason=th.override_reason,
                by=th.override_by,
                at=th.override_at,
                kind=kind,
                component=comp,
                rule_kind=rule_kind,
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class PlotBand:
    """A red or yellow zone of an absolute rule, in the plot's display unit; an open side is None."""

    kind: str
    scale: str
    low: float | None
    high: float | None
    level: str
    component: str | None = None
    """The series the band belongs to (systolic, diastolic, spo2, ...)."""

    def to_chart(self) -> dict[str, str | float | None]:
        return {"kind": self.kind, "scale": self.scale, "from": self.low, "to": self.high, "level": self.level,
                "component": self.component}


def plot_bands(rows: Sequence[ThresholdRow]) -> list[PlotBand]:
    """Pure: the red and yellow zones of the absolute rules (red below red_low, yellow between
    red_low and yellow_low, and mirrored above)."""
    by_rule: dict[str, tuple[str, str | None, dict[str, float]]] = {}
    for th in rows:
        if th.rule_kind != "absolute" or th.kind is None:
            continue
        by_rule.setdefault(th.rule_id, (th.kind, th.component, {}))[2][th.field] = th.value
    bands = []
    for kind, component, f in by_rule.values():
        scale = spec(kind).component(component).display_unit if component else spec(kind).primary.display_unit
        comp = component or spec(kind).primary.name
        if "red_low" in f:
            bands.append(PlotBand(kind, scale, None, f["red_low"], "red", comp))
        if "yellow_low" in f:
            bands.append(PlotBand(kind, scale, f.get("red_low"), f["yellow_low"], "yellow", comp))
        if "yellow_high" in f:
            bands.append(PlotBand(kind, scale, f["yellow_high"], f.get("red_high"), "yellow", comp))
        if "red_high" in f:
            bands.append(PlotBand(kind, scale, f["red_high"], None, "red", comp))
    return bands


def threshold_bands(conn: psycopg.Connection, *, patient_id: int, config: AlertingConfig) -> list[PlotBand]:
    return plot_bands(thresholds(conn, patient_id=patient_id, config=config))


def edit_threshold(
    conn: psycopg.Connection,
    *,
    patient_id: int,
    rule_id: str,
    field: str,
    value: str,
    reason: str,
    user: User,
    config: AlertingConfig,
    clear: bool = False,
) -> str | None:
    """Set (``value``, a number as typed: "84" or "84,5") or clear a personal threshold, with a
    reason. None when done, else why not (shown to the clinician)."""
    reason = reason.strip()
    if len(reason) < MIN_REASON:
        return f"A reason is required (at least {MIN_REASON} characters)."
    by = f"{user.display_name} ({user.username})"
    try:
        with conn.transaction():
            if clear:
                clear_threshold_override(
                    conn, patient_id=patient_id, rule_id=rule_id, field=field, by=by, reason=reason, config=config
                )
            else:
                try:
                    number = float(value.replace(",", "."))
                except ValueError:
                    return f"Not a number: {value!r}"
                set_threshold_override(
                    conn,
                    patient_id=patient_id,
                    rule_id=rule_id,
                    field=field,
                    value=number,
                    by=by,
                    reason=reason,
                    config=config,
                )
    except (AlertingError, KeyError, ValueError) as exc:
        return str(exc)
    return None
