"""What can be measured at home, with its codes, canonical unit and plausible range.

Codes are from ../shared/CLINICAL.md (LOINC from the FHIR R4 vital-signs value set, MDC from
the HL7 PHD IG, NPU/MCS from the FUT implementation guide). Plausible ranges are input checks,
not clinical thresholds: a reading outside them is held for review, never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class MeasurementKind(StrEnum):
    SPO2 = "spo2"
    PULSE = "pulse"
    WEIGHT = "weight"
    BLOOD_PRESSURE = "blood_pressure"
    TEMPERATURE = "temperature"
    GLUCOSE = "glucose"
    RESPIRATION_RATE = "respiration_rate"


@dataclass(frozen=True, slots=True)
class Component:
    """One number of a measurement, e.g. the systolic pressure of a blood-pressure reading."""

    name: str
    label_da: str
    label_en: str
    loinc: str
    mdc: int
    ucum: str
    npu: str | None
    plausible_low: float
    plausible_high: float
    plausible_source: str
    # MDC partition x 65536 + term code; a second code where the measuring method changes it
    # (pulse from a BP cuff is MDC_PULS_RATE_NON_INV, from an oximeter MDC_PULS_OXIM_PULS_RATE).
    alt_mdc: int | None = None

    @property
    def display_unit(self) -> str:
        return _DISPLAY_UNITS.get(self.ucum, self.ucum)

    def is_plausible(self, value: float) -> bool:
        return self.plausible_low <= value <= self.plausible_high


@dataclass(frozen=True, slots=True)
class KindSpec:
    kind: MeasurementKind
    label_da: str
    label_en: str
    components: tuple[Component, ...]
    # For a panel such as blood pressure: the panel's own LOINC and MDC codes.
    panel_loinc: str | None = None
    panel_mdc: int | None = None

    @property
    def primary(self) -> Component:
        """The component that stands for the whole reading in lists and scalar trends."""
        return self.components[0]

    @property
    def unit(self) -> str:
        return self.primary.ucum

    def component(self, name: str) -> Component:
        for c in self.components:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def component_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.components)


_DISPLAY_UNITS = {"mm[Hg]": "mmHg", "Cel": "°C", "/min": "/min", "mmol/L": "mmol/L"}

_RICU = "ricu ICU package plausibility ranges (CLINICAL.md)"
_NO_SOURCE = "no published standard; chosen wide, to catch decoder or unit errors only"

KINDS: dict[MeasurementKind, KindSpec] = {
    MeasurementKind.SPO2: KindSpec(
        MeasurementKind.SPO2,
        "Iltmætning",
        "SpO2",
        (Component("spo2", "Iltmætning", "SpO2", "59408-5", 150456, "%", "NPU03011", 50, 100, _RICU),),
    ),
    MeasurementKind.PULSE: KindSpec(
        MeasurementKind.PULSE,
        "Puls",
        "Pulse",
        (
            Component(
                "pulse", "Puls", "Pulse", "8867-4", 149530, "/min", "NPU21692", 0, 300, _RICU,
                alt_mdc=149546,
            ),
        ),
    ),
    MeasurementKind.WEIGHT: KindSpec(
        MeasurementKind.WEIGHT,
        "Vægt",
        "Weight",
        (Component("weight", "Vægt", "Weight", "29463-7", 188736, "kg", "NPU03804", 1, 500, _RICU),),
    ),
    MeasurementKind.BLOOD_PRESSURE: KindSpec(
        MeasurementKind.BLOOD_PRESSURE,
        "Blodtryk",
        "Blood pressure",
        (
            Component("systolic", "Systolisk", "Systolic", "8480-6", 150021, "mm[Hg]", "MCS88019", 0, 300, _RICU),
            Component("diastolic", "Diastolisk", "Diastolic", "8462-4", 150022, "mm[Hg]", "MCS88020", 0, 200, _RICU),
            Component("mean_arterial", "Middeltryk", "Mean arterial", "8478-0", 150023, "mm[Hg]", None, 0, 300, _RICU),
        ),
        panel_loinc="85354-9",
        panel_mdc=150020,
    ),
    MeasurementKind.TEMPERATURE: KindSpec(
        MeasurementKind.TEMPERATURE,
        "Temperatur",
        "Temperature",
        (Component("temperature", "Temperatur", "Temperature", "8310-5", 150364, "Cel", "NPU08676", 32, 42, _RICU),),
    ),
    MeasurementKind.GLUCOSE: KindSpec(
        MeasurementKind.GLUCOSE,
        "Blodsukker",
        "Glucose",
        # LOINC 15074-8 (glucose, moles/volume, blood); MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD.
        # Not in CLINICAL.md's table: unconfirmed against the FUT value set, hence no NPU.
        (Component("glucose", "Blodsukker", "Glucose", "15074-8", 160184, "mmol/L", None, 0.5, 50, _NO_SOURCE),),
    ),
    MeasurementKind.RESPIRATION_RATE: KindSpec(
        MeasurementKind.RESPIRATION_RATE,
        "Respirationsfrekvens",
        "Respiration rate",
        (
            Component(
                "respiration_rate", "Respirationsfrekvens", "Respiration rate", "9279-1", 151562, "/min", None,
                0, 80, _NO_SOURCE,
            ),
        ),
    ),
}


def spec(kind: MeasurementKind | str) -> KindSpec:
    return KINDS[MeasurementKind(kind)]


@dataclass(frozen=True, slots=True)
class KindFacts:
    """What checking a reading needs from its kind, computed once from :data:`KINDS`
    (validation runs per reading at ingest rates; the properties above rebuild tuples)."""

    names: frozenset[str]
    primary: str
    unit: str


FACTS: dict[MeasurementKind, KindFacts] = {
    kind: KindFacts(frozenset(k.component_names), k.primary.name, k.unit) for kind, k in KINDS.items()
}


# Conversions the edge applies before sending: the wire carries canonical UCUM units only.
_TO_CANONICAL: dict[tuple[str, str], tuple[float, float]] = {
    # (from unit, to unit): (factor, offset)
    ("[lb_av]", "kg"): (0.45359237, 0.0),
    ("kPa", "mm[Hg]"): (7.500615758, 0.0),
    ("[degF]", "Cel"): (5 / 9, -32 * 5 / 9),
    ("mg/dL", "mmol/L"): (1 / 18.0156, 0.0),
}


def to_canonical(kind: MeasurementKind | str, value: float, unit: str) -> float:
    """Convert ``value`` in ``unit`` to the kind's canonical UCUM unit."""
    target = spec(kind).unit
    if unit == target:
        return value
    try:
        factor, offset = _TO_CANONICAL[(unit, target)]
    except KeyError:
        raise ValueError(f"no conversion from {unit!r} to {target!r}") from None
    return value * factor + offset
