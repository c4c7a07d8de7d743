from __future__ import annotations

import pytest

from vitals.kinds import KINDS, MeasurementKind, spec, to_canonical


def test_codes_follow_clinical_md() -> None:
    bp = spec("blood_pressure")
    assert (bp.panel_loinc, bp.panel_mdc) == ("85354-9", 150020)
    assert [(c.name, c.loinc, c.mdc, c.ucum) for c in bp.components] == [
        ("systolic", "8480-6", 150021, "mm[Hg]"),
        ("diastolic", "8462-4", 150022, "mm[Hg]"),
        ("mean_arterial", "8478-0", 150023, "mm[Hg]"),
    ]
    spo2 = spec("spo2").primary
    assert (spo2.loinc, spo2.mdc, spo2.ucum, spo2.npu) == ("59408-5", 150456, "%", "NPU03011")
    pulse = spec("pulse").primary
    assert (pulse.mdc, pulse.alt_mdc, pulse.npu) == (149530, 149546, "NPU21692")
    weight = spec("weight").primary
    assert (weight.loinc, weight.mdc, weight.npu) == ("29463-7", 188736, "NPU03804")
    # MDC = partition * 65536 + term code: SpO2 is partition 2, term 19384.
    assert spo2.mdc == 2 * 65536 + 19384


def test_every_kind_has_a_spec_with_a_primary_component() -> None:
    assert set(KINDS) == set(MeasurementKind)
    for kind, s in KINDS.items():
        assert s.kind is kind
        assert s.primary.plausible_low < s.primary.plausible_high
        assert s.label_da


@pytest.mark.parametrize(
    ("kind", "value", "unit", "expected"),
    [
        ("weight", 100.0, "[lb_av]", 45.359237),
        ("blood_pressure", 16.0, "kPa", 120.00985),
        ("temperature", 98.6, "[degF]", 37.0),
        ("spo2", 97.0, "%", 97.0),
    ],
)
def test_to_canonical(kind: str, value: float, unit: str, expected: float) -> None:
    assert to_canonical(kind, value, unit) == pytest.approx(expected, abs=1e-4)


def test_to_canonical_refuses_unknown_units() -> None:
    with pytest.raises(ValueError, match="no conversion"):
        to_canonical("weight", 1.0, "stone")


def test_plausibility() -> None:
    spo2 = spec("spo2").primary
    assert spo2.is_plausible(88) and not spo2.is_plausible(120) and not spo2.is_plausible(12)
