"""Weight Measurement (0x2A9D) and Weight Scale Feature (0x2A9E), Weight Scale Service 1.0.

Weight Measurement, LE:

    flags u8 | weight u16 | [Date Time] | [user id u8] | [BMI u16 | height u16]

Flags: bit0 imperial (lb / inch, else kg / metre), bit1 timestamp, bit2 user id,
bit3 BMI *and* height (one bit for both fields). Weight is x 0.005 kg or x 0.01 lb;
0xFFFF means "measurement unsuccessful". BMI is x 0.1 kg/m2; height x 0.001 m or x 0.1 in.

The scale factors are fixed by the spec; the Weight Scale Feature's resolution only says
how fine the scale really measures (a 100 g scale still counts in 5 g steps).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from edge_agent.gatt.codec import DateTime, Reader

__all__ = [
    "WEIGHT_MEASUREMENT",
    "WEIGHT_SCALE_FEATURE",
    "WEIGHT_UNSUCCESSFUL",
    "WeightMeasurement",
    "WeightScaleFeature",
    "WeightUnit",
    "decode_weight_measurement",
    "decode_weight_scale_feature",
]

WEIGHT_MEASUREMENT = "2A9D"
WEIGHT_SCALE_FEATURE = "2A9E"
WEIGHT_UNSUCCESSFUL = 0xFFFF


class WeightUnit(StrEnum):
    KG = "kg"
    LB = "lb"

    @property
    def height_unit(self) -> str:
        return "m" if self is WeightUnit.KG else "in"


@dataclass(frozen=True, slots=True)
class WeightMeasurement:
    flags: int
    unit: WeightUnit
    weight_raw: int
    """The u16 as sent; 0xFFFF = measurement unsuccessful."""
    weight: float | None
    """In ``unit``; None when the measurement was unsuccessful."""
    timestamp: DateTime | None
    user_id: int | None
    """Raw user index; 0xFF is "unknown user"."""
    bmi: float | None
    """kg/m2."""
    height: float | None
    """Metres for kg, inches for lb."""

    @property
    def successful(self) -> bool:
        return self.weight_raw != WEIGHT_UNSUCCESSFUL


def decode_weight_measurement(data: bytes) -> WeightMeasurement:
    r = Reader(WEIGHT_MEASUREMENT, data)
    flags = r.u8("flags")
    imperial = bool(flags & 0x01)
    raw = r.u16("weight")
    timestamp = r.date_time() if flags & 0x02 else None
    user = r.u8("user id") if flags & 0x04 else None
    bmi = height = None
    if flags & 0x08:
        bmi = r.u16("BMI") / 10
        height_raw = r.u16("height")
        height = height_raw / 10 if imperial else height_raw / 1000
    r.end()
    weight = None
    if raw != WEIGHT_UNSUCCESSFUL:
        # Division rounds once: 15000 / 200 is exactly 75.0, 15000 * 0.005 need not be.
        weight = raw / 100 if imperial else raw / 200
    return WeightMeasurement(
        flags=flags,
        unit=WeightUnit.LB if imperial else WeightUnit.KG,
        weight_raw=raw,
        weight=weight,
        timestamp=timestamp,
        user_id=user,
        bmi=bmi,
        height=height,
    )


# Weight Scale Feature bits 3-6: resolution code -> (kg, lb); 0 = not specified.
_WEIGHT_RESOLUTIONS: dict[int, tuple[float, float]] = {
    1: (0.5, 1.0),
    2: (0.2, 0.5),
    3: (0.1, 0.2),
    4: (0.05, 0.1),
    5: (0.02, 0.05),
    6: (0.01, 0.02),
    7: (0.005, 0.01),
}
# Bits 7-9: resolution code -> (metre, inch).
_HEIGHT_RESOLUTIONS: dict[int, tuple[float, float]] = {
    1: (0.01, 1.0),
    2: (0.005, 0.5),
    3: (0.001, 0.1),
}


@dataclass(frozen=True, slots=True)
class WeightScaleFeature:
    raw: int
    """The u32 as sent; bits 10-31 are reserved."""
    timestamp_supported: bool
    multiple_users_supported: bool
    bmi_supported: bool
    weight_resolution_code: int
    height_resolution_code: int

    @property
    def weight_resolution_kg(self) -> float | None:
        """None when not specified or a reserved code."""
        pair = _WEIGHT_RESOLUTIONS.get(self.weight_resolution_code)
        return pair[0] if pair else None

    @property
    def weight_resolution_lb(self) -> float | None:
        pair = _WEIGHT_RESOLUTIONS.get(self.weight_resolution_code)
        return pair[1] if pair else None

    @property
    def height_resolution_m(self) -> float | None:
        pair = _HEIGHT_RESOLUTIONS.get(self.height_resolution_code)
        return pair[0] if pair else None

    @property
    def height_resolution_in(self) -> float | None:
        pair = _HEIGHT_RESOLUTIONS.get(self.height_resolution_code)
        return pair[1] if pair else None


def decode_weight_scale_feature(data: bytes) -> WeightScaleFeature:
    r = Reader(WEIGHT_SCALE_FEATURE, data)
    raw = r.u32("weight scale feature")
    r.end()
    return WeightScaleFeature(
        raw=raw,
        timestamp_supported=bool(raw & 0x01),
        multiple_users_supported=bool(raw & 0x02),
        bmi_supported=bool(raw & 0x04),
        weight_resolution_code=raw >> 3 & 0x0F,
        height_resolution_code=raw >> 7 & 0x07,
    )
