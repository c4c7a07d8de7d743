"""Glucose Service 1.0: Glucose Measurement (0x2A18).

Layout, LE:

    flags u8 | sequence number u16 | base time (Date Time) | [time offset s16, minutes]
             | [concentration SFLOAT | type-sample location u8] | [sensor status u16]

flags: bit0 time offset, bit1 concentration + type/location, bit2 unit mol/L (else kg/L),
bit3 sensor status annunciation, bit4 context information follows (in 0x2A34).
The type is the low nibble of the type/location byte, the sample location the high nibble.

The device time is base time + time offset; the base time is mandatory in this
characteristic, so a glucose record always has a timestamp unless the date is "unknown".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntFlag, StrEnum

from edge_agent.gatt.codec import DateTime, MedFloat, Reader

__all__ = [
    "GLUCOSE_MEASUREMENT",
    "GLUCOSE_SAMPLE_LOCATIONS",
    "GLUCOSE_TYPES",
    "GlucoseMeasurement",
    "GlucoseSensorStatus",
    "GlucoseUnit",
    "decode_glucose_measurement",
]

GLUCOSE_MEASUREMENT = "2A18"

GLUCOSE_TYPES: dict[int, str] = {
    1: "capillary_whole_blood",
    2: "capillary_plasma",
    3: "venous_whole_blood",
    4: "venous_plasma",
    5: "arterial_whole_blood",
    6: "arterial_plasma",
    7: "undetermined_whole_blood",
    8: "undetermined_plasma",
    9: "interstitial_fluid",
    10: "control_solution",
}
GLUCOSE_SAMPLE_LOCATIONS: dict[int, str] = {
    1: "finger",
    2: "alternate_site_test",
    3: "earlobe",
    4: "control_solution",
    15: "not_available",
}


class GlucoseUnit(StrEnum):
    KG_PER_L = "kg/L"
    MOL_PER_L = "mol/L"


class GlucoseSensorStatus(IntFlag):
    """Sensor Status Annunciation (u16); bits 12-15 are reserved."""

    LOW_BATTERY = 1 << 0
    SENSOR_MALFUNCTION = 1 << 1
    SAMPLE_SIZE_INSUFFICIENT = 1 << 2
    STRIP_INSERTION_ERROR = 1 << 3
    STRIP_TYPE_INCORRECT = 1 << 4
    RESULT_TOO_HIGH = 1 << 5
    RESULT_TOO_LOW = 1 << 6
    SENSOR_TEMPERATURE_TOO_HIGH = 1 << 7
    SENSOR_TEMPERATURE_TOO_LOW = 1 << 8
    STRIP_PULLED_TOO_SOON = 1 << 9
    GENERAL_DEVICE_FAULT = 1 << 10
    TIME_FAULT = 1 << 11


@dataclass(frozen=True, slots=True)
class GlucoseMeasurement:
    flags: int
    sequence_number: int
    base_time: DateTime
    time_offset: int | None
    """Minutes to add to the base time."""
    timestamp: datetime | None
    """Naive device time: base time + time offset; None when the base date is unknown."""
    concentration: MedFloat | None
    unit: GlucoseUnit | None
    """Set when ``concentration`` is present."""
    type: int | None
    sample_location: int | None
    sensor_status: GlucoseSensorStatus | None
    context_information_follows: bool


def decode_glucose_measurement(data: bytes) -> GlucoseMeasurement:
    r = Reader(GLUCOSE_MEASUREMENT, data)
    flags = r.u8("flags")
    sequence = r.u16("sequence number")
    base_at = r.offset
    base = r.date_time()
    offset = r.s16("time offset") if flags & 0x01 else None
    concentration = unit = glucose_type = location = None
    if flags & 0x02:
        concentration = r.sfloat("glucose concentration")
        unit = GlucoseUnit.MOL_PER_L if flags & 0x04 else GlucoseUnit.KG_PER_L
        type_location = r.u8("type-sample location")
        glucose_type = type_location & 0x0F
        location = type_location >> 4
    status = GlucoseSensorStatus(r.u16("sensor status annunciation")) if flags & 0x08 else None
    r.end()
    timestamp = base.value
    if timestamp is not None and offset:
        try:
            timestamp = timestamp + timedelta(minutes=offset)
        except OverflowError:
            # Only reachable at the very edges of the calendar (9999-12-31 + offset).
            raise r.fail("base time + time offset leaves the calendar", base_at) from None
    return GlucoseMeasurement(
        flags=flags,
        sequence_number=sequence,
        base_time=base,
        time_offset=offset,
        timestamp=timestamp,
        concentration=concentration,
        unit=unit,
        type=glucose_type,
        sample_location=location,
        sensor_status=status,
        context_information_follows=bool(flags & 0x10),
    )
