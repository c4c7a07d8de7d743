"""Blood Pressure Measurement (0x2A35) and Intermediate Cuff Pressure (0x2A36).

Layout (Bluetooth SIG Blood Pressure Service 1.0, GATT Specification Supplement), LE:

    flags u8 | sys SFLOAT | dia SFLOAT | MAP SFLOAT | [Date Time] | [pulse SFLOAT]
             | [user id u8] | [measurement status u16]

Flags: bit0 unit kPa (else mmHg), bit1 timestamp, bit2 pulse rate, bit3 user id,
bit4 measurement status; bits 5-7 reserved and kept in ``flags``.

Intermediate Cuff Pressure has the same layout; only the first SFLOAT (the current cuff
pressure) carries meaning, the diastolic and MAP slots are unused (NaN by spec) and
therefore not decoded into fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from edge_agent.gatt.codec import DateTime, MedFloat, Reader

__all__ = [
    "BLOOD_PRESSURE_MEASUREMENT",
    "INTERMEDIATE_CUFF_PRESSURE",
    "USER_ID_UNKNOWN",
    "BloodPressureMeasurement",
    "BloodPressureStatus",
    "IntermediateCuffPressure",
    "PressureUnit",
    "PulseRateRange",
    "decode_blood_pressure_measurement",
    "decode_intermediate_cuff_pressure",
]

BLOOD_PRESSURE_MEASUREMENT = "2A35"
INTERMEDIATE_CUFF_PRESSURE = "2A36"
USER_ID_UNKNOWN = 0xFF
"""User Index 0xFF means "unknown user" in BPS, WSS and the User Data Service."""


class PressureUnit(StrEnum):
    MMHG = "mmHg"
    KPA = "kPa"


class PulseRateRange(StrEnum):
    """Measurement status bits 3-4."""

    WITHIN_RANGE = "within_range"
    EXCEEDS_UPPER_LIMIT = "exceeds_upper_limit"
    BELOW_LOWER_LIMIT = "below_lower_limit"
    RESERVED = "reserved"


_PULSE_RANGES = (
    PulseRateRange.WITHIN_RANGE,
    PulseRateRange.EXCEEDS_UPPER_LIMIT,
    PulseRateRange.BELOW_LOWER_LIMIT,
    PulseRateRange.RESERVED,
)


@dataclass(frozen=True, slots=True)
class BloodPressureStatus:
    """Measurement Status (u16); ``raw`` keeps the reserved bits 6-15."""

    raw: int
    body_movement: bool
    """bit0: body movement detected during the measurement."""
    cuff_loose: bool
    """bit1: cuff fit too loose."""
    irregular_pulse: bool
    """bit2: irregular pulse detected."""
    pulse_rate_range: PulseRateRange
    """bits 3-4."""
    improper_position: bool
    """bit5: improper measurement position."""

    @classmethod
    def from_raw(cls, raw: int) -> BloodPressureStatus:
        return cls(
            raw=raw,
            body_movement=bool(raw & 0x01),
            cuff_loose=bool(raw & 0x02),
            irregular_pulse=bool(raw & 0x04),
            pulse_rate_range=_PULSE_RANGES[raw >> 3 & 0x03],
            improper_position=bool(raw & 0x20),
        )


@dataclass(frozen=True, slots=True)
class BloodPressureMeasurement:
    flags: int
    unit: PressureUnit
    systolic: MedFloat
    diastolic: MedFloat
    mean_arterial_pressure: MedFloat
    timestamp: DateTime | None
    pulse_rate: MedFloat | None
    """Beats per minute."""
    user_id: int | None
    """Raw user index; 0xFF is "unknown user"."""
    status: BloodPressureStatus | None


@dataclass(frozen=True, slots=True)
class IntermediateCuffPressure:
    flags: int
    unit: PressureUnit
    cuff_pressure: MedFloat
    timestamp: DateTime | None
    pulse_rate: MedFloat | None
    user_id: int | None
    status: BloodPressureStatus | None


def _optional_tail(
    r: Reader, flags: int
) -> tuple[DateTime | None, MedFloat | None, int | None, BloodPressureStatus | None]:
    timestamp = r.date_time() if flags & 0x02 else None
    pulse = r.sfloat("pulse rate") if flags & 0x04 else None
    user = r.u8("user id") if flags & 0x08 else None
    status = BloodPressureStatus.from_raw(r.u16("measurement status")) if flags & 0x10 else None
    r.end()
    return timestamp, pulse, user, status


def decode_blood_pressure_measurement(data: bytes) -> BloodPressureMeasurement:
    r = Reader(BLOOD_PRESSURE_MEASUREMENT, data)
    flags = r.u8("flags")
    systolic = r.sfloat("systolic")
    diastolic = r.sfloat("diastolic")
    mean = r.sfloat("mean arterial pressure")
    timestamp, pulse, user, status = _optional_tail(r, flags)
    return BloodPressureMeasurement(
        flags=flags,
        unit=PressureUnit.KPA if flags & 0x01 else PressureUnit.MMHG,
        systolic=systolic,
        diastolic=diastolic,
        mean_arterial_pressure=mean,
        timestamp=timestamp,
        pulse_rate=pulse,
        user_id=user,
        status=status,
    )


def decode_intermediate_cuff_pressure(data: bytes) -> IntermediateCuffPressure:
    r = Reader(INTERMEDIATE_CUFF_PRESSURE, data)
    flags = r.u8("flags")
    cuff = r.sfloat("current cuff pressure")
    # The diastolic and MAP slots are unused in 0x2A36 but still occupy 4 bytes.
    r.u16("unused diastolic slot")
    r.u16("unused mean arterial pressure slot")
    timestamp, pulse, user, status = _optional_tail(r, flags)
    return IntermediateCuffPressure(
        flags=flags,
        unit=PressureUnit.KPA if flags & 0x01 else PressureUnit.MMHG,
        cuff_pressure=cuff,
        timestamp=timestamp,
        pulse_rate=pulse,
        user_id=user,
        status=status,
    )
