"""Health Thermometer Service 1.0: Temperature Measurement (0x2A1C).

Layout, LE:

    flags u8 | temperature FLOAT | [Date Time] | [temperature type u8]

flags: bit0 Fahrenheit (else Celsius), bit1 timestamp, bit2 temperature type.
Temperature Type (also characteristic 0x2A1D): 1 armpit, 2 body (general), 3 ear (usually
earlobe), 4 finger, 5 gastro-intestinal tract, 6 mouth, 7 rectum, 8 toe, 9 tympanum (ear
drum); other values reserved and kept as their number.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from edge_agent.gatt.codec import DateTime, MedFloat, Reader

__all__ = [
    "TEMPERATURE_MEASUREMENT",
    "TEMPERATURE_TYPES",
    "TemperatureMeasurement",
    "TemperatureUnit",
    "decode_temperature_measurement",
]

TEMPERATURE_MEASUREMENT = "2A1C"

TEMPERATURE_TYPES: dict[int, str] = {
    1: "armpit",
    2: "body",
    3: "ear",
    4: "finger",
    5: "gastrointestinal_tract",
    6: "mouth",
    7: "rectum",
    8: "toe",
    9: "tympanum",
}


class TemperatureUnit(StrEnum):
    """UCUM codes, as the wire contract speaks UCUM."""

    CELSIUS = "Cel"
    FAHRENHEIT = "[degF]"


@dataclass(frozen=True, slots=True)
class TemperatureMeasurement:
    flags: int
    unit: TemperatureUnit
    temperature: MedFloat
    timestamp: DateTime | None
    temperature_type: int | None

    @property
    def temperature_type_name(self) -> str | None:
        if self.temperature_type is None:
            return None
        return TEMPERATURE_TYPES.get(self.temperature_type, "reserved")


def decode_temperature_measurement(data: bytes) -> TemperatureMeasurement:
    r = Reader(TEMPERATURE_MEASUREMENT, data)
    flags = r.u8("flags")
    temperature = r.float32("temperature")
    timestamp = r.date_time() if flags & 0x02 else None
    temperature_type = r.u8("temperature type") if flags & 0x04 else None
    r.end()
    return TemperatureMeasurement(
        flags=flags,
        unit=TemperatureUnit.FAHRENHEIT if flags & 0x01 else TemperatureUnit.CELSIUS,
        temperature=temperature,
        timestamp=timestamp,
        temperature_type=temperature_type,
    )
