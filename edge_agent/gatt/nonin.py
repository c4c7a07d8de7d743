"""Nonin 3230 / WristOx2 3150 proprietary Continuous Oximetry characteristic.

Service 46A970E0-0D5F-11E2-8B5E-0002A5D5C51B, characteristic
0AAD7EA0-0D60-11E2-8E3C-0002A5D5C51B, notify about once a second. Unlike the SIG
characteristics the multi-byte fields are **big-endian** (CLINICAL.md; Nonin's own iOS
sample ``PulseOximeterClass.m`` reads ``(bytes[8] << 8) | bytes[9]``):

    [0] length (10) | [1] status | [2] battery x0.1 V | [3-4] PAI x0.01 %
    | [5-6] seconds counter | [7] SpO2 % (127 = missing) | [8-9] pulse /min (511 = missing)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntFlag

from edge_agent.gatt.errors import GattDecodeError

__all__ = [
    "NONIN_CONTINUOUS",
    "NONIN_CONTINUOUS_UUID",
    "NoninContinuous",
    "NoninStatus",
    "decode_nonin_continuous",
]

NONIN_CONTINUOUS = "nonin-continuous"
NONIN_CONTINUOUS_UUID = "0aad7ea0-0d60-11e2-8e3c-0002a5d5c51b"
_SIZE = 10
_SPO2_MISSING = 127
_PULSE_MISSING = 511


class NoninStatus(IntFlag):
    """Status byte, bit meanings from Nonin's 3230 sample code; bits 6-7 unnamed."""

    DISPLAY_SYNC = 1 << 0
    """The device display shows the values in this packet."""
    WEAK_SIGNAL = 1 << 1
    """Average amplitude indicates low or marginal signal quality."""
    SMARTPOINT = 1 << 2
    """The values passed Nonin's SmartPoint quality algorithm."""
    SEARCHING = 1 << 3
    """No consecutive good pulse signals."""
    CORRECT_CHECK = 1 << 4
    """The finger is placed correctly in the sensor."""
    LOW_BATTERY = 1 << 5


@dataclass(frozen=True, slots=True)
class NoninContinuous:
    length: int
    status: NoninStatus
    battery_voltage: float
    """Volts."""
    pulse_amplitude_index: float
    """Percent."""
    counter: int
    """Seconds since the device entered run mode (wraps at 65535)."""
    spo2: int | None
    """Percent; None when the device reports 127 (missing)."""
    pulse_rate: int | None
    """Beats per minute; None when the device reports 511 (missing)."""


def decode_nonin_continuous(data: bytes) -> NoninContinuous:
    data = bytes(data)
    if len(data) < _SIZE:
        raise GattDecodeError(
            NONIN_CONTINUOUS, len(data), f"packet needs {_SIZE} bytes, got {len(data)}"
        )
    if data[0] != len(data):
        raise GattDecodeError(
            NONIN_CONTINUOUS, 0, f"length byte says {data[0]}, packet has {len(data)} bytes"
        )
    spo2 = data[7]
    pulse = data[8] << 8 | data[9]
    return NoninContinuous(
        length=data[0],
        status=NoninStatus(data[1]),
        battery_voltage=data[2] / 10,
        pulse_amplitude_index=(data[3] << 8 | data[4]) / 100,
        counter=data[5] << 8 | data[6],
        spo2=None if spo2 == _SPO2_MISSING else spo2,
        pulse_rate=None if pulse == _PULSE_MISSING else pulse,
    )
