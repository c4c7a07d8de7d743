"""Pulse Oximeter Service 1.0: PLX Spot-Check (0x2A5E), Continuous (0x2A5F), Features (0x2A60).

Spot-Check, LE:

    flags u8 | SpO2 SFLOAT | PR SFLOAT | [Date Time] | [measurement status u16]
             | [device & sensor status u24] | [pulse amplitude index SFLOAT]

flags: bit0 timestamp, bit1 measurement status, bit2 device & sensor status, bit3 PAI,
bit4 device clock is not set.

Continuous, LE:

    flags u8 | SpO2 SFLOAT | PR SFLOAT | [SpO2PR-Fast 2xSFLOAT] | [SpO2PR-Slow 2xSFLOAT]
             | [measurement status u16] | [device & sensor status u24] | [PAI SFLOAT]

flags: bit0 fast pair, bit1 slow pair, bit2 measurement status, bit3 device & sensor
status, bit4 PAI.

The two status fields are :class:`enum.IntFlag` so reserved bits survive in the value while
the named bits give the snake_case quality flags (``low_perfusion``, ``sensor_displaced``…).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntFlag

from edge_agent.gatt.codec import DateTime, MedFloat, Reader

__all__ = [
    "PLX_CONTINUOUS",
    "PLX_FEATURES",
    "PLX_SPOT_CHECK",
    "PlxContinuous",
    "PlxDeviceSensorStatus",
    "PlxFeatures",
    "PlxMeasurementStatus",
    "PlxSpotCheck",
    "PlxSupportedFeatures",
    "decode_plx_continuous",
    "decode_plx_features",
    "decode_plx_spot_check",
]

PLX_SPOT_CHECK = "2A5E"
PLX_CONTINUOUS = "2A5F"
PLX_FEATURES = "2A60"


class PlxMeasurementStatus(IntFlag):
    """Measurement Status (u16); bits 0-4 are reserved."""

    MEASUREMENT_ONGOING = 1 << 5
    EARLY_ESTIMATED_DATA = 1 << 6
    VALIDATED_DATA = 1 << 7
    FULLY_QUALIFIED_DATA = 1 << 8
    DATA_FROM_MEASUREMENT_STORAGE = 1 << 9
    DATA_FOR_DEMONSTRATION = 1 << 10
    DATA_FOR_TESTING = 1 << 11
    CALIBRATION_ONGOING = 1 << 12
    MEASUREMENT_UNAVAILABLE = 1 << 13
    QUESTIONABLE_MEASUREMENT = 1 << 14
    INVALID_MEASUREMENT = 1 << 15


class PlxDeviceSensorStatus(IntFlag):
    """Device and Sensor Status (u24); bits 16-23 are reserved."""

    EXTENDED_DISPLAY_UPDATE_ONGOING = 1 << 0
    EQUIPMENT_MALFUNCTION = 1 << 1
    SIGNAL_PROCESSING_IRREGULARITY = 1 << 2
    INADEQUATE_SIGNAL = 1 << 3
    POOR_SIGNAL = 1 << 4
    LOW_PERFUSION = 1 << 5
    ERRATIC_SIGNAL = 1 << 6
    NONPULSATILE_SIGNAL = 1 << 7
    QUESTIONABLE_PULSE = 1 << 8
    SIGNAL_ANALYSIS_ONGOING = 1 << 9
    SENSOR_INTERFERENCE = 1 << 10
    SENSOR_UNCONNECTED_TO_USER = 1 << 11
    UNKNOWN_SENSOR_CONNECTED = 1 << 12
    SENSOR_DISPLACED = 1 << 13
    SENSOR_MALFUNCTIONING = 1 << 14
    SENSOR_DISCONNECTED = 1 << 15


class PlxSupportedFeatures(IntFlag):
    """PLX Features "Supported Features" (u16)."""

    MEASUREMENT_STATUS_SUPPORT = 1 << 0
    DEVICE_AND_SENSOR_STATUS_SUPPORT = 1 << 1
    SPOT_CHECK_MEASUREMENT_STORAGE = 1 << 2
    SPOT_CHECK_TIMESTAMP = 1 << 3
    SPO2PR_FAST = 1 << 4
    SPO2PR_SLOW = 1 << 5
    PULSE_AMPLITUDE_INDEX = 1 << 6
    MULTIPLE_BONDS = 1 << 7


@dataclass(frozen=True, slots=True)
class PlxSpotCheck:
    flags: int
    spo2: MedFloat
    """Percent."""
    pulse_rate: MedFloat
    """Beats per minute."""
    timestamp: DateTime | None
    measurement_status: PlxMeasurementStatus | None
    device_and_sensor_status: PlxDeviceSensorStatus | None
    pulse_amplitude_index: MedFloat | None
    """Percent."""
    device_clock_not_set: bool
    """flags bit4: the timestamp (if any) comes from a clock nobody has set."""


@dataclass(frozen=True, slots=True)
class PlxContinuous:
    flags: int
    spo2: MedFloat
    pulse_rate: MedFloat
    spo2_fast: MedFloat | None
    pulse_rate_fast: MedFloat | None
    spo2_slow: MedFloat | None
    pulse_rate_slow: MedFloat | None
    measurement_status: PlxMeasurementStatus | None
    device_and_sensor_status: PlxDeviceSensorStatus | None
    pulse_amplitude_index: MedFloat | None


@dataclass(frozen=True, slots=True)
class PlxFeatures:
    supported_features: PlxSupportedFeatures
    measurement_status_support: PlxMeasurementStatus | None
    """Which measurement status bits the sensor can report (present if bit0 set)."""
    device_and_sensor_status_support: PlxDeviceSensorStatus | None
    """Which device & sensor status bits it can report (present if bit1 set)."""


def _statuses(
    r: Reader, status_present: bool, dss_present: bool
) -> tuple[PlxMeasurementStatus | None, PlxDeviceSensorStatus | None]:
    status = PlxMeasurementStatus(r.u16("measurement status")) if status_present else None
    dss = PlxDeviceSensorStatus(r.u24("device and sensor status")) if dss_present else None
    return status, dss


def decode_plx_spot_check(data: bytes) -> PlxSpotCheck:
    r = Reader(PLX_SPOT_CHECK, data)
    flags = r.u8("flags")
    spo2 = r.sfloat("SpO2")
    pulse = r.sfloat("pulse rate")
    timestamp = r.date_time() if flags & 0x01 else None
    status, dss = _statuses(r, bool(flags & 0x02), bool(flags & 0x04))
    pai = r.sfloat("pulse amplitude index") if flags & 0x08 else None
    r.end()
    return PlxSpotCheck(
        flags=flags,
        spo2=spo2,
        pulse_rate=pulse,
        timestamp=timestamp,
        measurement_status=status,
        device_and_sensor_status=dss,
        pulse_amplitude_index=pai,
        device_clock_not_set=bool(flags & 0x10),
    )


def decode_plx_continuous(data: bytes) -> PlxContinuous:
    r = Reader(PLX_CONTINUOUS, data)
    flags = r.u8("flags")
    spo2 = r.sfloat("SpO2")
    pulse = r.sfloat("pulse rate")
    spo2_fast = pulse_fast = spo2_slow = pulse_slow = None
    if flags & 0x01:
        spo2_fast = r.sfloat("SpO2 fast")
        pulse_fast = r.sfloat("pulse rate fast")
    if flags & 0x02:
        spo2_slow = r.sfloat("SpO2 slow")
        pulse_slow = r.sfloat("pulse rate slow")
    status, dss = _statuses(r, bool(flags & 0x04), bool(flags & 0x08))
    pai = r.sfloat("pulse amplitude index") if flags & 0x10 else None
    r.end()
    return PlxContinuous(
        flags=flags,
        spo2=spo2,
        pulse_rate=pulse,
        spo2_fast=spo2_fast,
        pulse_rate_fast=pulse_fast,
        spo2_slow=spo2_slow,
        pulse_rate_slow=pulse_slow,
        measurement_status=status,
        device_and_sensor_status=dss,
        pulse_amplitude_index=pai,
    )


def decode_plx_features(data: bytes) -> PlxFeatures:
    r = Reader(PLX_FEATURES, data)
    supported = PlxSupportedFeatures(r.u16("supported features"))
    status, dss = _statuses(
        r,
        PlxSupportedFeatures.MEASUREMENT_STATUS_SUPPORT in supported,
        PlxSupportedFeatures.DEVICE_AND_SENSOR_STATUS_SUPPORT in supported,
    )
    r.end()
    return PlxFeatures(
        supported_features=supported,
        measurement_status_support=status,
        device_and_sensor_status_support=dss,
    )
