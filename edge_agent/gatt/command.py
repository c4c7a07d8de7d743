"""``nearcare agent decode UUID HEX``: decode one characteristic value for a field technician.

Prints exactly one JSON object on stdout. Numbers are JSON numbers in the unit named by the
``unit`` key, special values (NaN, NRes, INF) and "missing" markers are ``null``, timestamps
are ISO 8601 device-local time without zone (``null`` when the device date is unknown).
Keys are snake_case after the GATT field names, and ``characteristic`` names what was
decoded. BerryMed BM1000 frames are decoded under the pseudo-UUID ``bm1000``.

Malformed input (bad hex included) prints one line on stderr and exits with status 2.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from edge_agent.gatt.berrymed import Bm1000Frame, Bm1000Packet
from edge_agent.gatt.blood_pressure import (
    BloodPressureMeasurement,
    BloodPressureStatus,
    IntermediateCuffPressure,
)
from edge_agent.gatt.codec import DateTime, MedFloat, flag_names
from edge_agent.gatt.errors import GattError
from edge_agent.gatt.glucose import GLUCOSE_SAMPLE_LOCATIONS, GLUCOSE_TYPES, GlucoseMeasurement
from edge_agent.gatt.nonin import NoninContinuous
from edge_agent.gatt.plx import PlxContinuous, PlxFeatures, PlxSpotCheck
from edge_agent.gatt.racp import RACP_OPERATORS, RacpMessage
from edge_agent.gatt.registry import Decoded
from edge_agent.gatt.registry import decode as decode_characteristic
from edge_agent.gatt.thermometer import TemperatureMeasurement, TemperatureUnit
from edge_agent.gatt.weight import WeightMeasurement, WeightScaleFeature

__all__ = ["decode", "to_json_object"]

EXIT_MALFORMED = 2


def _num(f: MedFloat | None) -> float | None:
    return None if f is None else f.value


def _ts(dt: DateTime | None) -> str | None:
    value = None if dt is None else dt.value
    return None if value is None else value.isoformat()


def _flags(value: Any) -> dict[str, bool] | None:
    if value is None:
        return None
    return {m.name.lower(): m in value for m in type(value) if m.name is not None}


def _bp_status(status: BloodPressureStatus | None) -> dict[str, Any] | None:
    if status is None:
        return None
    return {
        "body_movement": status.body_movement,
        "cuff_loose": status.cuff_loose,
        "irregular_pulse": status.irregular_pulse,
        "pulse_rate_range": status.pulse_rate_range.value,
        "improper_position": status.improper_position,
        "raw": status.raw,
    }


def _bp_tail(m: BloodPressureMeasurement | IntermediateCuffPressure) -> dict[str, Any]:
    return {
        "pulse_rate": _num(m.pulse_rate),
        "user_id": m.user_id,
        "timestamp": _ts(m.timestamp),
        "measurement_status": _bp_status(m.status),
    }


def _bm1000_frame(f: Bm1000Frame) -> dict[str, Any]:
    return {
        "spo2": f.spo2,
        "pulse_rate": f.pulse_rate,
        "pleth": f.pleth,
        "bargraph": f.bargraph,
        "signal_strength": f.signal_strength,
        "no_signal": f.no_signal,
        "probe_unplugged": f.probe_unplugged,
        "no_finger": f.no_finger,
        "pulse_searching": f.pulse_searching,
        "pulse_beep": f.pulse_beep,
    }


def to_json_object(decoded: Decoded) -> dict[str, Any]:
    """The JSON-ready dict the CLI prints for one decoded value."""
    match decoded:
        case BloodPressureMeasurement():
            return {
                "characteristic": "blood_pressure_measurement",
                "systolic": _num(decoded.systolic),
                "diastolic": _num(decoded.diastolic),
                "mean_arterial_pressure": _num(decoded.mean_arterial_pressure),
                "unit": decoded.unit.value,
                **_bp_tail(decoded),
            }
        case IntermediateCuffPressure():
            return {
                "characteristic": "intermediate_cuff_pressure",
                "cuff_pressure": _num(decoded.cuff_pressure),
                "unit": decoded.unit.value,
                **_bp_tail(decoded),
            }
        case WeightMeasurement():
            return {
                "characteristic": "weight_measurement",
                "weight": decoded.weight,
                "unit": decoded.unit.value,
                "measurement_unsuccessful": not decoded.successful,
                "bmi": decoded.bmi,
                "height": decoded.height,
                "height_unit": decoded.unit.height_unit,
                "user_id": decoded.user_id,
                "timestamp": _ts(decoded.timestamp),
            }
        case WeightScaleFeature():
            return {
                "characteristic": "weight_scale_feature",
                "timestamp_supported": decoded.timestamp_supported,
                "multiple_users_supported": decoded.multiple_users_supported,
                "bmi_supported": decoded.bmi_supported,
                "weight_resolution_kg": decoded.weight_resolution_kg,
                "weight_resolution_lb": decoded.weight_resolution_lb,
                "height_resolution_m": decoded.height_resolution_m,
                "height_resolution_in": decoded.height_resolution_in,
                "raw": decoded.raw,
            }
        case PlxSpotCheck():
            return {
                "characteristic": "plx_spot_check_measurement",
                "spo2": _num(decoded.spo2),
                "pulse_rate": _num(decoded.pulse_rate),
                "timestamp": _ts(decoded.timestamp),
                "device_clock_not_set": decoded.device_clock_not_set,
                "measurement_status": _flags(decoded.measurement_status),
                "device_and_sensor_status": _flags(decoded.device_and_sensor_status),
                "pulse_amplitude_index": _num(decoded.pulse_amplitude_index),
            }
        case PlxContinuous():
            obj: dict[str, Any] = {
                "characteristic": "plx_continuous_measurement",
                "spo2": _num(decoded.spo2),
                "pulse_rate": _num(decoded.pulse_rate),
                "timestamp": None,
                "measurement_status": _flags(decoded.measurement_status),
                "device_and_sensor_status": _flags(decoded.device_and_sensor_status),
                "pulse_amplitude_index": _num(decoded.pulse_amplitude_index),
            }
            # Fast/slow keys only where the flags say the pair is present, so a null means
            # "device sent a special value" and never "field absent".
            if decoded.flags & 0x01:
                obj["spo2_fast"] = _num(decoded.spo2_fast)
                obj["pulse_rate_fast"] = _num(decoded.pulse_rate_fast)
            if decoded.flags & 0x02:
                obj["spo2_slow"] = _num(decoded.spo2_slow)
                obj["pulse_rate_slow"] = _num(decoded.pulse_rate_slow)
            return obj
        case PlxFeatures():
            return {
                "characteristic": "plx_features",
                "supported_features": list(flag_names(decoded.supported_features)),
                "measurement_status_support": _flags(decoded.measurement_status_support),
                "device_and_sensor_status_support": _flags(
                    decoded.device_and_sensor_status_support
                ),
            }
        case TemperatureMeasurement():
            return {
                "characteristic": "temperature_measurement",
                "temperature": _num(decoded.temperature),
                "unit": "degF" if decoded.unit is TemperatureUnit.FAHRENHEIT else "Cel",
                "timestamp": _ts(decoded.timestamp),
                "temperature_type": decoded.temperature_type_name,
            }
        case GlucoseMeasurement():
            return {
                "characteristic": "glucose_measurement",
                "sequence_number": decoded.sequence_number,
                "timestamp": None if decoded.timestamp is None else decoded.timestamp.isoformat(),
                "time_offset": decoded.time_offset,
                "concentration": _num(decoded.concentration),
                "unit": None if decoded.unit is None else decoded.unit.value,
                "type": None
                if decoded.type is None
                else GLUCOSE_TYPES.get(decoded.type, "reserved"),
                "sample_location": None
                if decoded.sample_location is None
                else GLUCOSE_SAMPLE_LOCATIONS.get(decoded.sample_location, "reserved"),
                "sensor_status": _flags(decoded.sensor_status),
                "context_information_follows": decoded.context_information_follows,
            }
        case RacpMessage():
            return {
                "characteristic": "record_access_control_point",
                "op_code": decoded.op_code_name,
                "operator": RACP_OPERATORS.get(decoded.operator, "reserved"),
                "request_op_code": decoded.request_op_code,
                "response_code": decoded.response_code_name,
                "number_of_records": decoded.number_of_records,
                "operand": decoded.operand.hex(),
            }
        case NoninContinuous():
            return {
                "characteristic": "nonin_continuous_oximetry",
                "spo2": decoded.spo2,
                "pulse_rate": decoded.pulse_rate,
                "pulse_amplitude_index": decoded.pulse_amplitude_index,
                "battery_voltage": decoded.battery_voltage,
                "counter": decoded.counter,
                "status": _flags(decoded.status),
            }
        case Bm1000Packet():
            return {
                "characteristic": "bm1000",
                **_bm1000_frame(decoded.latest),
                "frames": [_bm1000_frame(f) for f in decoded.frames],
            }
        case DateTime():
            return {"characteristic": "date_time", "timestamp": _ts(decoded)}
    raise AssertionError(f"no JSON rendering for {type(decoded).__name__}")  # pragma: no cover


def _one_line(text: str) -> str:
    return " ".join(text.split())


def decode(
    uuid: Annotated[
        str,
        typer.Argument(
            help='Characteristic UUID: "2A35", "0x2a35", a full 128-bit UUID, or "bm1000".'
        ),
    ],
    hex: Annotated[
        str,
        typer.Argument(help='The value as hex, e.g. "1E8A00..."; spaces and colons allowed.'),
    ],
) -> None:
    """Decode one GATT characteristic value and print it as one JSON object."""
    cleaned = "".join(hex.split()).replace(":", "")
    try:
        data = bytes.fromhex(cleaned)
    except ValueError as exc:
        typer.echo(_one_line(f"error: bad hex {hex!r}: {exc}"), err=True)
        raise typer.Exit(EXIT_MALFORMED) from None
    try:
        decoded = decode_characteristic(uuid, data)
    except GattError as exc:
        typer.echo(_one_line(f"error: {exc}"), err=True)
        raise typer.Exit(EXIT_MALFORMED) from None
    typer.echo(json.dumps(to_json_object(decoded), ensure_ascii=False))
