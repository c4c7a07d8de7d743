"""The thresholds form on the patient page in clinical words (issue 13: it showed ``red_low``,
``k``, ``min_sd``, "14.0" days and "Not a number: 'abc'").

Pure: a threshold field as a clinician reads it (words and unit, whole numbers without ".0"), and
a typed value checked against the rule before it is saved, with the reason in the reader's
language. The service (``backend.alerting.views.thresholds.edit_threshold``) checks again."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from backend.web.i18n import N_, lookup, number, translator
from vitals.kinds import spec

MIN_REASON = 3

# Fields counted in time or numbers, whatever the rule measures.
_FIXED_UNITS = {
    "window_hours": N_("unit_hours"), "recent_hours": N_("unit_hours"), "offline_hours": N_("unit_hours"),
    "days": N_("unit_days"), "min_days": N_("unit_days"), "lag_days": N_("unit_days_before"),
    "of": N_("unit_days"), "k": N_("unit_sd"), "min_parameters": N_("unit_values"),
}
# Fields in the measured component's own unit.
_COMPONENT_FIELDS = {"red_low", "yellow_low", "yellow_high", "red_high", "delta", "min_sd"}
_ABSOLUTE_ORDER = ("red_low", "yellow_low", "yellow_high", "red_high")


@dataclass(frozen=True, slots=True)
class FieldWords:
    label: str
    unit: str


def field_words(field: str, *, rule_kind: str | None, kind: str | None, component: str | None,
                lang: str) -> FieldWords:
    """``red_low`` of an SpO2 rule as "rød nedre grænse" in "%"; ``yellow`` of a score rule in points,
    of a personal-range rule in the citizen's own spreads."""
    t = translator(lang)
    if field in ("yellow", "red") and rule_kind in ("score", "personal"):
        label = t(f"field_{field}_{rule_kind}")
        unit = t("unit_point") if rule_kind == "score" else t("unit_spread")
        return FieldWords(label, unit)
    label = lookup(lang, f"field_{field}") or t("field_unknown")
    if field in _FIXED_UNITS:
        return FieldWords(label, t(_FIXED_UNITS[field]))
    if field in _COMPONENT_FIELDS and kind is not None:
        comp = component or spec(kind).primary.name
        return FieldWords(label, lookup(lang, f"cunit_{comp}") or "")
    return FieldWords(label, "")


def value_text(value: float | None, lang: str) -> str:
    """A threshold as typed back into the form: "14", "84,5" (Danish), "84.5" (English)."""
    return "" if value is None else number(value, lang, None if float(value).is_integer() else _decimals(value))


def _decimals(value: float) -> int:
    text = f"{value:.6f}".rstrip("0")
    return max(1, len(text.split(".")[1]))


class FormError(Exception):
    """What is wrong with a typed threshold, in the reader's words."""


def parse_value(text: str, lang: str) -> float:
    """A number as a clinician types it: "84", "84,5", "84.5", "-2", "+2"."""
    t = translator(lang)
    cleaned = text.strip().replace("\u2212", "-").replace(",", ".")
    try:
        value = float(cleaned)
    except ValueError:
        raise FormError(t("threshold_not_a_number", value=f"'{text.strip()}'")) from None
    if not math.isfinite(value):
        raise FormError(t("threshold_not_a_number", value=f"'{text.strip()}'"))
    return value


def check_reason(reason: str, lang: str) -> None:
    t = translator(lang)
    if len(reason.strip()) < MIN_REASON:
        raise FormError(t("threshold_reason_short", n=MIN_REASON))


def check_value(rule: Any, field: str, value: float, in_force: Mapping[str, float], lang: str) -> None:
    """The rule with ``field`` set to ``value`` (the other fields as in force for the citizen) is a
    rule the service accepts, else :class:`FormError` saying why in words."""
    t = translator(lang)
    model = rule.threshold_model()
    rule_kind = getattr(rule, "kind", None)
    measurement = getattr(rule, "measurement", None)
    kind = measurement.value if measurement is not None else None
    comp_name = getattr(rule, "component_name", None)
    words = field_words(field, rule_kind=rule_kind, kind=kind, component=comp_name, lang=lang)

    def shown(v: float) -> str:
        return f"{value_text(v, lang)} {words.unit}".strip()

    if kind is not None:
        c = spec(kind).component(comp_name or spec(kind).primary.name)
        low, high = c.plausible_low, c.plausible_high
        if rule_kind == "absolute" and not low <= value <= high:
            raise FormError(t("threshold_outside", label=words.label, value=shown(value), low=value_text(low, lang),
                              high=shown(high)))
        if field in ("delta", "min_sd") and abs(value) > high - low:
            raise FormError(t("threshold_too_wide", label=words.label, value=shown(value), width=shown(high - low)))
    if model is None:
        return
    fields = {**model.model_dump(), **in_force, field: value}
    try:
        type(model).model_validate(fields)
    except ValidationError as exc:
        raise FormError(_explain(exc, rule_kind=rule_kind, field=field, words=words, lang=lang)) from None


def _explain(exc: ValidationError, *, rule_kind: str | None, field: str, words: FieldWords, lang: str) -> str:
    t = translator(lang)
    for err in exc.errors():
        ctx = err.get("ctx") or {}
        bound = next((ctx[k] for k in ("gt", "ge", "lt", "le") if k in ctx), None)
        if err.get("loc") and err["loc"][0] == field and bound is not None:
            key = {"greater_than": N_("threshold_gt"), "greater_than_equal": N_("threshold_ge"),
                   "less_than": N_("threshold_lt"), "less_than_equal": N_("threshold_le")}.get(err["type"])
            if key is not None:
                return t(key, label=words.label, bound=f"{value_text(float(bound), lang)} {words.unit}".strip())
        if err.get("type") == "int_from_float" or err.get("type") == "int_parsing":
            return t("threshold_whole", label=words.label)
    rule_keys = {"absolute": N_("threshold_order_absolute"), "baseline": N_("threshold_order_days"),
                 "personal": N_("threshold_order_personal"), "score": N_("threshold_order_score"),
                 "trend": N_("threshold_trend_zero")}
    if rule_kind in rule_keys:
        return t(rule_keys[rule_kind])
    return t("threshold_refused")


def rule_field_words(rule: Any | None, field: str, lang: str) -> FieldWords:
    """:func:`field_words` for a field of a loaded rule (a rule since removed from the files: words only)."""
    if rule is None:
        return field_words(field, rule_kind=None, kind=None, component=None, lang=lang)
    measurement = getattr(rule, "measurement", None)
    return field_words(field, rule_kind=getattr(rule, "kind", None),
                       kind=measurement.value if measurement is not None else None,
                       component=getattr(rule, "component_name", None), lang=lang)
