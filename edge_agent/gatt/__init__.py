"""Pure decoders for the Bluetooth LE health characteristics the edge agent reads.

Each decoder takes the raw characteristic bytes and returns a frozen dataclass, with no
I/O. Malformed bytes raise :class:`GattDecodeError` (a :class:`GattError`) and nothing
else. :func:`decode` dispatches by UUID; :func:`readings_from` turns a decoded value into
:class:`Reading` objects in the wire contract's canonical units.

Modules: :mod:`.codec` (SFLOAT, FLOAT, Date Time), :mod:`.blood_pressure`, :mod:`.weight`,
:mod:`.plx`, :mod:`.thermometer`, :mod:`.glucose`, :mod:`.racp`, :mod:`.nonin`,
:mod:`.berrymed`, :mod:`.registry`, :mod:`.readings`, :mod:`.command` (the CLI).
"""

from __future__ import annotations

from edge_agent.gatt.codec import DateTime, MedFloat, Special
from edge_agent.gatt.errors import GattDecodeError, GattError
from edge_agent.gatt.readings import Reading, readings_from
from edge_agent.gatt.registry import Decoded, decode, normalize_uuid

__all__ = [
    "DateTime",
    "Decoded",
    "GattDecodeError",
    "GattError",
    "MedFloat",
    "Reading",
    "Special",
    "decode",
    "normalize_uuid",
    "readings_from",
]
