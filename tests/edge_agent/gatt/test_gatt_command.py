"""The ``decode`` CLI function, run through a local Typer app as ``nearcare agent decode``."""

from __future__ import annotations

import json
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from edge_agent.gatt.command import decode

app = typer.Typer()
app.command()(decode)
runner = CliRunner()


def run_ok(uuid: str, hex_: str) -> dict[str, Any]:
    result = runner.invoke(app, [uuid, hex_])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert result.stdout.count("\n") == 1  # exactly one JSON object, one line
    obj: dict[str, Any] = json.loads(result.stdout)
    return obj


def test_blood_pressure_json() -> None:
    # Nordic BloodPressureMeasurementDataCallbackTest (_some), kPa.
    assert run_ok("2A35", "15bdf00b009ff03c001200") == {
        "characteristic": "blood_pressure_measurement",
        "systolic": 18.9,
        "diastolic": 11.0,
        "mean_arterial_pressure": 15.9,
        "unit": "kPa",
        "pulse_rate": 60.0,
        "user_id": None,
        "timestamp": None,
        "measurement_status": {
            "body_movement": False,
            "cuff_loose": True,
            "irregular_pulse": False,
            "pulse_rate_range": "below_lower_limit",
            "improper_position": False,
            "raw": 18,
        },
    }


def test_blood_pressure_specials_are_null() -> None:
    obj = run_ok("0x2a35", "0a ff 07 00 08 fe 07 e8 07 03 01 08 0f 00 ff")
    assert (obj["systolic"], obj["diastolic"], obj["mean_arterial_pressure"]) == (
        None,
        None,
        None,
    )
    assert obj["timestamp"] == "2024-03-01T08:15:00"
    assert obj["user_id"] == 255


def test_intermediate_cuff_pressure_json() -> None:
    # Nordic IntermediateCuffPressureDataCallbackTest (_minimal).
    assert run_ok("2a36", "00d7f000000000") == {
        "characteristic": "intermediate_cuff_pressure",
        "cuff_pressure": 21.5,
        "unit": "mmHg",
        "pulse_rate": None,
        "user_id": None,
        "timestamp": None,
        "measurement_status": None,
    }


def test_weight_json() -> None:
    assert run_ok("00002a9d-0000-1000-8000-00805f9b34fb", "0e983ae807010f071e0001f500d606") == {
        "characteristic": "weight_measurement",
        "weight": 75.0,
        "unit": "kg",
        "measurement_unsuccessful": False,
        "bmi": 24.5,
        "height": 1.75,
        "height_unit": "m",
        "user_id": 1,
        "timestamp": "2024-01-15T07:30:00",
    }


def test_weight_unsuccessful_json() -> None:
    obj = run_ok("2A9D", "01ffff")
    assert (obj["weight"], obj["unit"], obj["measurement_unsuccessful"]) == (None, "lb", True)


def test_plx_continuous_json_has_fast_and_slow_pairs() -> None:
    # SpeziBluetooth PLXTests (testFullMeasurementCoding).
    obj = run_ok("2A5F", "1fdef3caf3caf35af5d4f3b2f220010000007ae3")
    assert {k: obj[k] for k in ("spo2", "pulse_rate", "timestamp", "pulse_amplitude_index")} == {
        "spo2": 99.0,
        "pulse_rate": 97.0,
        "timestamp": None,
        "pulse_amplitude_index": 8.9,
    }
    assert (obj["spo2_fast"], obj["pulse_rate_fast"]) == (97.0, 137.0)
    assert (obj["spo2_slow"], obj["pulse_rate_slow"]) == (98.0, 69.0)
    assert obj["measurement_status"]["fully_qualified_data"] is True
    assert obj["device_and_sensor_status"]["low_perfusion"] is False


def test_plx_continuous_json_without_pairs() -> None:
    obj = run_ok("2A5F", "0064005a00")
    assert "spo2_fast" not in obj and "spo2_slow" not in obj
    assert obj["measurement_status"] is None


def test_plx_spot_check_json() -> None:
    # SpeziBluetooth PLXTests (testSpotCheckMeasurementCoding).
    obj = run_ok("2a5e", "0facf3bef5e8070b1d170839204022000066e3")
    assert obj["characteristic"] == "plx_spot_check_measurement"
    assert (obj["spo2"], obj["pulse_rate"], obj["timestamp"]) == (94.0, 147.0, "2024-11-29T23:08:57")
    assert obj["device_and_sensor_status"]["low_perfusion"] is True
    assert obj["measurement_status"]["questionable_measurement"] is True
    assert obj["pulse_amplitude_index"] == 8.7


def test_temperature_json() -> None:
    # Nordic TemperatureMeasurementDataCallbackTest.
    assert run_ok("2A1C", "06 b0 0e 00 fe dc 07 0c 05 0b 32 1b 04") == {
        "characteristic": "temperature_measurement",
        "temperature": 37.6,
        "unit": "Cel",
        "timestamp": "2012-12-05T11:50:27",
        "temperature_type": "finger",
    }
    assert run_ok("2A1C", "05da0300ff06")["unit"] == "degF"


def test_glucose_json() -> None:
    # Nordic GlucoseMeasurementDataCallbackTest.
    obj = run_ok("2A18", "1b0100e307021b0b0a1efbff1e00120501")
    assert {
        k: obj[k]
        for k in ("sequence_number", "timestamp", "time_offset", "concentration", "unit")
    } == {
        "sequence_number": 1,
        "timestamp": "2019-02-27T11:05:30",
        "time_offset": -5,
        "concentration": 30.0,
        "unit": "kg/L",
    }
    assert obj["sensor_status"]["low_battery"] is True


def test_racp_json() -> None:
    assert run_ok("2A52", "05000201") == {
        "characteristic": "record_access_control_point",
        "op_code": "number_of_stored_records_response",
        "operator": "null",
        "request_op_code": None,
        "response_code": None,
        "number_of_records": 258,
        "operand": "0201",
    }


def test_features_json() -> None:
    obj = run_ok("2A60", "a3004010800100")
    assert obj["supported_features"] == [
        "measurement_status_support",
        "device_and_sensor_status_support",
        "spo2pr_slow",
        "multiple_bonds",
    ]
    assert run_ok("2A9E", "07000000")["bmi_supported"] is True


def test_nonin_json() -> None:
    assert run_ok("0AAD7EA0-0D60-11E2-8E3C-0002A5D5C51B", "0a161d01f4002a610048") == {
        "characteristic": "nonin_continuous_oximetry",
        "spo2": 97,
        "pulse_rate": 72,
        "pulse_amplitude_index": 5.0,
        "battery_voltage": 2.9,
        "counter": 42,
        "status": {
            "display_sync": False,
            "weak_signal": True,
            "smartpoint": True,
            "searching": False,
            "correct_check": True,
            "low_battery": False,
        },
    }


def test_bm1000_json() -> None:
    obj = run_ok("bm1000", "bf007f7f7f:c5:32:0a:48:62")
    assert (obj["characteristic"], obj["spo2"], obj["pulse_rate"]) == ("bm1000", 98, 72)
    assert [f["spo2"] for f in obj["frames"]] == [None, 98]


@pytest.mark.parametrize(
    ("uuid", "hex_", "in_message"),
    [
        ("2A35", "zz", "bad hex"),
        ("2A35", "1e8", "bad hex"),
        ("2A35", "010203040506", "2A35 at byte 5"),
        ("2A37", "0048", "no decoder"),
        ("not-a-uuid", "00", "not a UUID"),
        ("2A52", "0601 01", "2A52 at byte 1"),
    ],
)
def test_malformed_exits_2_with_one_line_on_stderr(uuid: str, hex_: str, in_message: str) -> None:
    result = runner.invoke(app, [uuid, hex_])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.endswith("\n")
    assert result.stderr.startswith("error: ")
    assert in_message in result.stderr
