"""Dispatch raw characteristic bytes to the right decoder by UUID.

Accepted UUID spellings, case-insensitive, surrounding whitespace ignored:

- the 16-bit short form ``"2A35"``, also ``"0x2A35"``;
- the 32-bit form ``"00002A35"``;
- the full 128-bit form, with or without dashes; a SIG base UUID
  (``0000xxxx-0000-1000-8000-00805f9b34fb``) maps to its short form;
- the pseudo-UUID ``"bm1000"`` for BerryMed frames (see :mod:`edge_agent.gatt.berrymed`).

Anything else, and any malformed payload, raises :class:`GattDecodeError`.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from edge_agent.gatt.berrymed import BM1000, Bm1000Packet, decode_bm1000
from edge_agent.gatt.blood_pressure import (
    BLOOD_PRESSURE_MEASUREMENT,
    INTERMEDIATE_CUFF_PRESSURE,
    BloodPressureMeasurement,
    IntermediateCuffPressure,
    decode_blood_pressure_measurement,
    decode_intermediate_cuff_pressure,
)
from edge_agent.gatt.codec import DateTime, decode_date_time
from edge_agent.gatt.errors import GattDecodeError
from edge_agent.gatt.glucose import GLUCOSE_MEASUREMENT, GlucoseMeasurement, decode_glucose_measurement
from edge_agent.gatt.nonin import (
    NONIN_CONTINUOUS_UUID,
    NoninContinuous,
    decode_nonin_continuous,
)
from edge_agent.gatt.plx import (
    PLX_CONTINUOUS,
    PLX_FEATURES,
    PLX_SPOT_CHECK,
    PlxContinuous,
    PlxFeatures,
    PlxSpotCheck,
    decode_plx_continuous,
    decode_plx_features,
    decode_plx_spot_check,
)
from edge_agent.gatt.racp import RACP, RacpMessage, decode_racp
from edge_agent.gatt.thermometer import (
    TEMPERATURE_MEASUREMENT,
    TemperatureMeasurement,
    decode_temperature_measurement,
)
from edge_agent.gatt.weight import (
    WEIGHT_MEASUREMENT,
    WEIGHT_SCALE_FEATURE,
    WeightMeasurement,
    WeightScaleFeature,
    decode_weight_measurement,
    decode_weight_scale_feature,
)

__all__ = ["DATE_TIME", "DECODERS", "Decoded", "decode", "normalize_uuid"]

DATE_TIME = "2A08"

Decoded = (
    BloodPressureMeasurement
    | IntermediateCuffPressure
    | WeightMeasurement
    | WeightScaleFeature
    | PlxSpotCheck
    | PlxContinuous
    | PlxFeatures
    | TemperatureMeasurement
    | GlucoseMeasurement
    | RacpMessage
    | NoninContinuous
    | Bm1000Packet
    | DateTime
)


def _decode_date_time(data: bytes) -> DateTime:
    dt = decode_date_time(data, DATE_TIME)
    if len(data) != 7:
        raise GattDecodeError(DATE_TIME, 7, f"{len(data) - 7} unexpected trailing byte(s)")
    return dt


DECODERS: dict[str, Callable[[bytes], Decoded]] = {
    BLOOD_PRESSURE_MEASUREMENT.lower(): decode_blood_pressure_measurement,
    INTERMEDIATE_CUFF_PRESSURE.lower(): decode_intermediate_cuff_pressure,
    WEIGHT_MEASUREMENT.lower(): decode_weight_measurement,
    WEIGHT_SCALE_FEATURE.lower(): decode_weight_scale_feature,
    PLX_SPOT_CHECK.lower(): decode_plx_spot_check,
    PLX_CONTINUOUS.lower(): decode_plx_continuous,
    PLX_FEATURES.lower(): decode_plx_features,
    TEMPERATURE_MEASUREMENT.lower(): decode_temperature_measurement,
    GLUCOSE_MEASUREMENT.lower(): decode_glucose_measurement,
    RACP.lower(): decode_racp,
    DATE_TIME.lower(): _decode_date_time,
    NONIN_CONTINUOUS_UUID: decode_nonin_continuous,
    BM1000: decode_bm1000,
}
"""Normalised UUID (see :func:`normalize_uuid`) -> decoder."""

_SIG_BASE = re.compile(r"^0000([0-9a-f]{4})00001000800000805f9b34fb$")
_HEX = re.compile(r"^[0-9a-f]+$")


def normalize_uuid(uuid: str) -> str:
    """The registry key for ``uuid``: 4 lowercase hex digits for SIG UUIDs, else the
    lowercase dashed 128-bit form, or a known pseudo-UUID. Raises GattDecodeError."""
    text = uuid.strip().lower()
    if text in DECODERS and not _HEX.match(text):
        return text  # pseudo-UUIDs such as "bm1000"
    compact = text.removeprefix("0x").replace("-", "")
    if text.startswith("{") and text.endswith("}"):
        compact = text[1:-1].replace("-", "")
    if not _HEX.match(compact):
        raise GattDecodeError(uuid, 0, "not a UUID")
    if len(compact) == 4:
        return compact
    if len(compact) == 8 and compact.startswith("0000"):
        return compact[4:]
    if len(compact) == 32:
        base = _SIG_BASE.match(compact)
        if base:
            return base.group(1)
        return "-".join(
            (compact[:8], compact[8:12], compact[12:16], compact[16:20], compact[20:])
        )
    raise GattDecodeError(uuid, 0, "not a 16-, 32- or 128-bit UUID")


def decode(uuid: str, data: bytes | bytearray | memoryview) -> Decoded:
    """Decode ``data`` as the characteristic ``uuid``; unknown UUIDs are an error too.

    Accepts the ``bytearray`` bleak hands to notification callbacks as well as bytes.
    """
    key = normalize_uuid(uuid)
    decoder = DECODERS.get(key)
    if decoder is None:
        raise GattDecodeError(uuid.strip(), 0, "no decoder for this characteristic")
    return decoder(bytes(data))
