"""Shared wire types of the Bluetooth SIG health characteristics: SFLOAT, FLOAT, Date Time.

All SIG values are little-endian. IEEE 11073-20601 medical floats are a signed base-10
exponent over a signed integer mantissa:

- SFLOAT (16 bit): exponent in the top 4 bits, mantissa in the low 12 bits, both two's
  complement. 0xF0BD is exponent -1, mantissa 189, i.e. 18.9. A decoder that subtracts a
  bias of 8 from the exponent instead of sign-extending it (one public Python library does)
  reads 0xF0BD as 1.89e9, which is why the tests pin both negative and positive exponents.
- FLOAT (32 bit): exponent in the top 8 bits, mantissa in the low 24 bits.

The reserved raw values (NaN, NRes, +INF, -INF, reserved) are kept as a :class:`Special`,
never turned into Python floats: NaN compares unequal to itself and +INF would pass a
``value > threshold`` rule, and neither is health data. They are defined with exponent 0
only, as in IEEE 11073-20601 and CLINICAL.md, so 0x17FF is a plain number (2047 x 10).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime
from enum import Flag, StrEnum

from edge_agent.gatt.errors import GattDecodeError

__all__ = [
    "DATE_TIME_SIZE",
    "DateTime",
    "MedFloat",
    "Special",
    "decode_date_time",
    "decode_float",
    "decode_sfloat",
    "flag_names",
]


class Special(StrEnum):
    """The IEEE 11073-20601 reserved values; none of them is a measurement."""

    NAN = "nan"
    """Not a number: the device has no valid value."""
    NRES = "nres"
    """Not at this resolution: the value cannot be represented with this exponent."""
    POSITIVE_INFINITY = "+inf"
    NEGATIVE_INFINITY = "-inf"
    RESERVED = "reserved"
    """Reserved for future use by the standard."""


_SFLOAT_SPECIALS = {
    0x07FF: Special.NAN,
    0x0800: Special.NRES,
    0x07FE: Special.POSITIVE_INFINITY,
    0x0802: Special.NEGATIVE_INFINITY,
    0x0801: Special.RESERVED,
}
_FLOAT_SPECIALS = {
    0x007FFFFF: Special.NAN,
    0x00800000: Special.NRES,
    0x007FFFFE: Special.POSITIVE_INFINITY,
    0x00800002: Special.NEGATIVE_INFINITY,
    0x00800001: Special.RESERVED,
}


@dataclass(frozen=True, slots=True)
class MedFloat:
    """An IEEE 11073 SFLOAT or FLOAT as sent: mantissa x 10^exponent, or a special.

    Kept as integers so equality is exact and nothing is lost; :attr:`value` gives the float.
    For a special, ``mantissa`` and ``exponent`` are the raw fields that encoded it.
    """

    mantissa: int
    exponent: int
    special: Special | None = None

    @property
    def value(self) -> float | None:
        """The number, or None for a special value."""
        if self.special is not None:
            return None
        # Divide for negative exponents: 189 / 10 rounds once (to the double nearest 18.9),
        # whereas 189 * 0.1 rounds twice and gives 18.900000000000002.
        if self.exponent < 0:
            return self.mantissa / 10 ** (-self.exponent)
        return float(self.mantissa * 10**self.exponent)

    @property
    def is_special(self) -> bool:
        return self.special is not None


def _signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value & (1 << (bits - 1)) else value


def decode_sfloat(raw: int) -> MedFloat:
    """Decode a 16-bit SFLOAT from its integer value (already read little-endian)."""
    mantissa = raw & 0x0FFF
    exponent = _signed(raw >> 12 & 0x0F, 4)
    special = _SFLOAT_SPECIALS.get(raw & 0xFFFF)
    if special is not None:
        return MedFloat(mantissa, exponent, special)
    return MedFloat(_signed(mantissa, 12), exponent)


def decode_float(raw: int) -> MedFloat:
    """Decode a 32-bit FLOAT from its integer value (already read little-endian)."""
    mantissa = raw & 0x00FFFFFF
    exponent = _signed(raw >> 24 & 0xFF, 8)
    special = _FLOAT_SPECIALS.get(raw & 0xFFFFFFFF)
    if special is not None:
        return MedFloat(mantissa, exponent, special)
    return MedFloat(_signed(mantissa, 24), exponent)


DATE_TIME_SIZE = 7


@dataclass(frozen=True, slots=True)
class DateTime:
    """The SIG Date Time (0x2A08) as sent; 0 in year, month or day means "not known".

    Device clocks carry no time zone: :attr:`value` is naive device-local time, and the
    caller attaches the agent's zone (and decides whether to trust the device clock).
    """

    year: int
    month: int
    day: int
    hours: int
    minutes: int
    seconds: int

    @property
    def known(self) -> bool:
        return self.year != 0 and self.month != 0 and self.day != 0

    @property
    def value(self) -> datetime | None:
        """The naive device time, or None when the date is not known or not a real date."""
        if not self.known or _date_time_problem(self) is not None:
            return None
        return datetime(self.year, self.month, self.day, self.hours, self.minutes, self.seconds)


def _date_time_problem(dt: DateTime) -> tuple[int, str] | None:
    """(relative offset, reason) of the first field out of range, or None."""
    if dt.year != 0 and not 1582 <= dt.year <= 9999:
        return 0, f"year {dt.year} outside 1582..9999 (0 = unknown)"
    if not 0 <= dt.month <= 12:
        return 2, f"month {dt.month} outside 1..12 (0 = unknown)"
    if not 0 <= dt.day <= 31:
        return 3, f"day {dt.day} outside 1..31 (0 = unknown)"
    if not 0 <= dt.hours <= 23:
        return 4, f"hours {dt.hours} outside 0..23"
    if not 0 <= dt.minutes <= 59:
        return 5, f"minutes {dt.minutes} outside 0..59"
    if not 0 <= dt.seconds <= 59:
        return 6, f"seconds {dt.seconds} outside 0..59"
    if dt.known and dt.day > calendar.monthrange(dt.year, dt.month)[1]:
        return 3, f"day {dt.day} does not exist in {dt.year:04d}-{dt.month:02d}"
    return None


def decode_date_time(data: bytes, characteristic: str = "2A08", offset: int = 0) -> DateTime:
    """Decode the 7-byte Date Time found at ``offset`` of ``data``.

    Fields out of range (hour 24, 31 February…) are malformed bytes, not an unknown time:
    the device wrote something the spec forbids, so the whole value is suspect.
    """
    if len(data) - offset < DATE_TIME_SIZE:
        left = max(len(data) - offset, 0)
        raise GattDecodeError(
            characteristic, offset, f"Date Time needs {DATE_TIME_SIZE} bytes, {left} left"
        )
    dt = DateTime(
        year=data[offset] | data[offset + 1] << 8,
        month=data[offset + 2],
        day=data[offset + 3],
        hours=data[offset + 4],
        minutes=data[offset + 5],
        seconds=data[offset + 6],
    )
    problem = _date_time_problem(dt)
    if problem is not None:
        rel, reason = problem
        raise GattDecodeError(characteristic, offset + rel, reason)
    return dt


class Reader:
    """A bounds-checked little-endian cursor; every short read is a :class:`GattDecodeError`.

    Decoders read through this instead of ``struct.unpack`` so that no ``struct.error`` or
    ``IndexError`` can escape, and so that each error names the offset where it happened.
    """

    __slots__ = ("characteristic", "data", "offset")

    def __init__(self, characteristic: str, data: bytes) -> None:
        self.characteristic = characteristic
        self.data = bytes(data)
        self.offset = 0

    def fail(self, reason: str, offset: int | None = None) -> GattDecodeError:
        return GattDecodeError(
            self.characteristic, self.offset if offset is None else offset, reason
        )

    def _take(self, size: int, what: str) -> bytes:
        end = self.offset + size
        if end > len(self.data):
            raise self.fail(
                f"{what} needs {size} byte(s), {len(self.data) - self.offset} left"
            )
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk

    def uint(self, size: int, what: str) -> int:
        return int.from_bytes(self._take(size, what), "little")

    def u8(self, what: str) -> int:
        return self.uint(1, what)

    def u16(self, what: str) -> int:
        return self.uint(2, what)

    def u24(self, what: str) -> int:
        return self.uint(3, what)

    def u32(self, what: str) -> int:
        return self.uint(4, what)

    def s16(self, what: str) -> int:
        return int.from_bytes(self._take(2, what), "little", signed=True)

    def sfloat(self, what: str) -> MedFloat:
        return decode_sfloat(self.u16(what))

    def float32(self, what: str) -> MedFloat:
        return decode_float(self.u32(what))

    def date_time(self) -> DateTime:
        dt = decode_date_time(self.data, self.characteristic, self.offset)
        self.offset += DATE_TIME_SIZE
        return dt

    def end(self) -> None:
        """Refuse trailing bytes: a flags byte misread would otherwise go unnoticed."""
        if self.offset != len(self.data):
            raise self.fail(
                f"{len(self.data) - self.offset} unexpected trailing byte(s) "
                "(flags promise no more fields)"
            )


def flag_names(flags: Flag) -> tuple[str, ...]:
    """The snake_case names of the set, named bits of ``flags``, in bit order.

    Reserved bits have no name and are not listed; they stay in the flag's integer value.
    """
    return tuple(
        member.name.lower()
        for member in type(flags)
        if member.name is not None and member in flags
    )
