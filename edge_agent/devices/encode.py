"""Characteristic bytes for simulated and emulated devices (the inverse of :mod:`edge_agent.gatt`).

The simulator and the BlueZoo peripherals speak real GATT bytes, so every reading goes through
the same decoders as a real device's.
"""

from __future__ import annotations

from datetime import datetime

from edge_agent.devices.recipes import encode_date_time


def sfloat(value: float, exponent: int = 0) -> bytes:
    """IEEE 11073 SFLOAT: 4-bit signed exponent, 12-bit signed mantissa, little-endian."""
    mantissa = round(value / (10**exponent))
    if not -2046 <= mantissa <= 2045:
        raise ValueError(f"{value} does not fit an SFLOAT with exponent {exponent}")
    raw = ((exponent & 0xF) << 12) | (mantissa & 0xFFF)
    return raw.to_bytes(2, "little")


def blood_pressure(systolic: float, diastolic: float, mean: float, *, at: datetime | None,
                   pulse: float | None, user: int | None = None, status: int | None = None) -> bytes:
    flags = (0x02 if at else 0) | (0x04 if pulse is not None else 0) | (0x08 if user is not None else 0)
    flags |= 0x10 if status is not None else 0
    out = bytes([flags]) + sfloat(systolic) + sfloat(diastolic) + sfloat(mean)
    if at:
        out += encode_date_time(at)
    if pulse is not None:
        out += sfloat(pulse)
    if user is not None:
        out += bytes([user])
    if status is not None:
        out += status.to_bytes(2, "little")
    return out


def weight(kg: float, *, at: datetime | None, user: int | None = None) -> bytes:
    flags = (0x02 if at else 0) | (0x04 if user is not None else 0)
    out = bytes([flags]) + round(kg / 0.005).to_bytes(2, "little")
    if at:
        out += encode_date_time(at)
    if user is not None:
        out += bytes([user])
    return out


def plx_spot_check(spo2: float, pulse: float, *, at: datetime | None, clock_not_set: bool = False) -> bytes:
    flags = (0x01 if at else 0) | (0x10 if clock_not_set else 0)
    out = bytes([flags]) + sfloat(spo2) + sfloat(pulse)
    if at:
        out += encode_date_time(at)
    return out


NONIN_CORRECT_CHECK = 0x10
NONIN_SEARCHING = 0x08


def nonin_frame(spo2: int | None, pulse: int | None, *, status: int = NONIN_CORRECT_CHECK, counter: int = 0,
                battery_v: float = 3.0, pai_pct: float = 5.0) -> bytes:
    """Nonin 3230 continuous packet (big-endian)."""
    pai = round(pai_pct * 100)
    s = 127 if spo2 is None else spo2
    p = 511 if pulse is None else pulse
    return bytes([10, status, round(battery_v * 10), pai >> 8, pai & 0xFF, (counter >> 8) & 0xFF, counter & 0xFF,
                  s, p >> 8, p & 0xFF])
