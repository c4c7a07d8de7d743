"""The thresholds form in clinical words (issue 13), pure: field words and units, whole numbers
without ".0", and a typed value refused in the reader's language before the service sees it."""

from __future__ import annotations

import pytest

from alert_rules.model import AbsoluteRule, BaselineRule
from backend.web.threshold_form import (
    FieldWords,
    FormError,
    check_reason,
    check_value,
    field_words,
    parse_value,
    value_text,
)


def _absolute_spo2() -> AbsoluteRule:
    return AbsoluteRule.model_validate({
        "id": "t.spo2", "title": "Lav iltmætning", "source": "test", "kind": "absolute", "measurement": "spo2",
        "thresholds": {"red_low": 85, "yellow_low": 88},
    })


def _baseline_weight() -> BaselineRule:
    return BaselineRule.model_validate({
        "id": "t.weight", "title": "Vægt", "source": "test", "kind": "baseline", "measurement": "weight",
        "direction": "above",
        "thresholds": {"k": 2.5, "days": 14, "min_days": 7, "min_sd": 0.3},
    })


@pytest.mark.parametrize(("field", "rule_kind", "kind", "label", "unit"), [
    ("red_low", "absolute", "spo2", "Rød alarm under", "%"),
    ("yellow_high", "absolute", "pulse", "Gul alarm over", "slag/min"),
    ("k", "baseline", "weight", "Afvigelse fra borgerens normalværdi", "standardafvigelser"),
    ("min_sd", "baseline", "weight", "Mindste spredning der regnes med", "kg"),
    ("days", "baseline", "weight", "Normalværdien beregnes over", "dage"),
    ("window_hours", "trend", "weight", "Inden for", "timer"),
    ("yellow", "score", None, "Gul alarm fra", "point"),
    ("some_new_field", "absolute", "spo2", "grænseværdi", ""),
])
def test_fields_read_as_clinical_words_with_units(
    field: str, rule_kind: str, kind: str | None, label: str, unit: str
) -> None:
    assert field_words(field, rule_kind=rule_kind, kind=kind, component=None, lang="da") == FieldWords(label, unit)


def test_whole_numbers_have_no_decimals_and_danish_has_a_comma() -> None:
    assert value_text(14.0, "da") == "14"
    assert value_text(84.5, "da") == "84,5"
    assert value_text(84.5, "en") == "84.5"
    assert value_text(0.25, "da") == "0,25"
    assert value_text(-2.0, "da") == "-2"


@pytest.mark.parametrize(
    ("typed", "value"), [("88", 88.0), ("88,5", 88.5), (" 88.5 ", 88.5), ("-2", -2.0), ("+2", 2.0)]
)
def test_numbers_as_clinicians_type_them(typed: str, value: float) -> None:
    assert parse_value(typed, "da") == value


@pytest.mark.parametrize("typed", ["abc", "", "nan", "inf", "1e999"])
def test_not_a_number_is_refused_in_danish_and_english(typed: str) -> None:
    with pytest.raises(FormError, match=f"^Ikke et tal: '{typed.strip()}'"):
        parse_value(typed, "da")
    with pytest.raises(FormError, match=f"^Not a number: '{typed.strip()}'"):
        parse_value(typed, "en")


def test_a_short_reason_is_refused_in_words() -> None:
    with pytest.raises(FormError, match="begrundelse"):
        check_reason("  a ", "da")
    check_reason("KOL-patient, habituelt lav", "da")


def test_values_that_break_the_rule_are_refused_in_words() -> None:
    rule = _absolute_spo2()
    in_force = {"red_low": 85.0, "yellow_low": 88.0}
    check_value(rule, "red_low", 84.0, in_force, "da")  # fine
    with pytest.raises(FormError) as exc:
        check_value(rule, "red_low", 90.0, in_force, "da")  # above yellow
    assert str(exc.value).startswith("Grænserne skal stige")
    with pytest.raises(FormError) as exc:
        check_value(rule, "yellow_low", 140.0, in_force, "da")
    assert "uden for det mulige område" in str(exc.value) and "%" in str(exc.value)

    weight = _baseline_weight()
    in_force_w = {"k": 2.5, "days": 14.0, "min_days": 7.0, "min_sd": 0.3}
    with pytest.raises(FormError) as exc:
        check_value(weight, "k", 0.0, in_force_w, "da")
    assert str(exc.value) == "Afvigelse fra borgerens normalværdi skal være over 0 standardafvigelser."
    with pytest.raises(FormError) as exc:
        check_value(weight, "days", 14.5, in_force_w, "da")
    assert str(exc.value) == "Normalværdien beregnes over skal være et helt tal."
    with pytest.raises(FormError) as exc:
        check_value(weight, "min_days", 20.0, in_force_w, "en")
    assert str(exc.value).startswith("The days before the rule becomes active")
    for err in ("red_low", "min_sd", "min_days"):
        assert err not in str(exc.value)
