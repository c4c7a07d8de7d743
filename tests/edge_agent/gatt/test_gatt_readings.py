"""readings_from: decoded characteristic -> Reading in canonical units."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

import pytest

from edge_agent.gatt import Reading, decode, readings_from
from vitals.kinds import MeasurementKind, spec
from vitals.wire import Device, Measurement, new_measurement_id

BP = MeasurementKind.BLOOD_PRESSURE
PULSE = MeasurementKind.PULSE
SPO2 = MeasurementKind.SPO2


def approx(expected: float, abs: float | None = None) -> float:
    """pytest.approx typed as the float it stands in for inside a Reading's values."""
    return cast(float, pytest.approx(expected, abs=abs))


def test_blood_pressure_with_pulse_yields_two_readings() -> None:
    # Nordic BloodPressureMeasurementDataCallbackTest (_full): year 0, so the clock is not
    # trusted; status 0b100111; user 1.
    data = bytes.fromhex("1e 8a 00 58 00 78 00 00 00 04 11 14 29 3b 3c 00 01 27 00")
    quality = ("body_movement", "cuff_loose", "irregular_pulse", "improper_position")
    assert readings_from(decode("2A35", data)) == (
        Reading(
            kind=BP,
            values={"systolic": 138.0, "diastolic": 88.0, "mean_arterial": 120.0},
            device_time=None,
            clock_trusted=False,
            quality=quality,
            user_index=1,
        ),
        Reading(
            kind=PULSE,
            values={"pulse": 60.0},
            device_time=None,
            clock_trusted=False,
            quality=quality,
            user_index=1,
        ),
    )


def test_blood_pressure_kpa_is_converted_to_mmhg() -> None:
    # Nordic BloodPressureMeasurementDataCallbackTest (_some): 18.9/11.0/15.9 kPa.
    data = bytes.fromhex("15 bd f0 0b 00 9f f0 3c 00 12 00")
    bp, pulse = readings_from(decode("2A35", data))
    assert bp == Reading(
        kind=BP,
        values={
            "systolic": approx(141.76, abs=0.01),
            "diastolic": approx(82.51, abs=0.01),
            "mean_arterial": approx(119.26, abs=0.01),
        },
        device_time=None,
        clock_trusted=False,
        quality=("cuff_loose", "pulse_rate_below_lower_limit"),
        user_index=None,
    )
    assert pulse.values == {"pulse": 60.0}


def test_blood_pressure_specials_become_none() -> None:
    # Built: systolic NaN (0x07FF), diastolic NRes (0x0800), MAP +INF (0x07FE), with a
    # known timestamp 2024-03-01 08:15:00 and user 0xFF (unknown user).
    data = bytes.fromhex("0a ff 07 00 08 fe 07 e8 07 03 01 08 0f 00 ff")
    (bp,) = readings_from(decode("2A35", data))
    assert bp == Reading(
        kind=BP,
        values={"systolic": None, "diastolic": None, "mean_arterial": None},
        device_time=datetime(2024, 3, 1, 8, 15, 0),
        clock_trusted=True,
        quality=(),
        user_index=None,
    )


def test_weight_pounds_to_kg() -> None:
    data = bytes.fromhex("0d 97 40 ff f5 00 b2 02")  # 165.35 lb, unknown user
    assert readings_from(decode("2A9D", data)) == (
        Reading(
            kind=MeasurementKind.WEIGHT,
            values={"weight": approx(75.0015, abs=0.0001)},  # x 0.45359237
            device_time=None,
            clock_trusted=False,
            quality=(),
            user_index=None,
        ),
    )


def test_weight_unsuccessful_yields_nothing() -> None:
    # im97mori JavaBLEUtil WeightMeasurementTest (test_constructor002): 0xFFFF.
    assert readings_from(decode("2A9D", bytes.fromhex("00 ff ff"))) == ()


def test_weight_with_user_and_time() -> None:
    data = bytes.fromhex("0e 98 3a e8 07 01 0f 07 1e 00 01 f5 00 d6 06")
    assert readings_from(decode("2A9D", data)) == (
        Reading(
            kind=MeasurementKind.WEIGHT,
            values={"weight": 75.0},
            device_time=datetime(2024, 1, 15, 7, 30, 0),
            clock_trusted=True,
            quality=(),
            user_index=1,
        ),
    )


def test_plx_spot_check() -> None:
    # SpeziBluetooth PLXTests (testSpotCheckMeasurementCoding).
    data = bytes([15, 172, 243, 190, 245, 232, 7, 11, 29, 23, 8, 57, 32, 64, 34, 0, 0, 102, 227])
    quality = (
        "measurement_ongoing",
        "questionable_measurement",
        "equipment_malfunction",
        "low_perfusion",
    )
    at = datetime(2024, 11, 29, 23, 8, 57)
    assert readings_from(decode("2A5E", data)) == (
        Reading(SPO2, {"spo2": 94.0}, at, True, quality),
        Reading(PULSE, {"pulse": 147.0}, at, True, quality),
    )


def test_plx_spot_check_clock_not_set_is_untrusted() -> None:
    data = bytes([31, 172, 243, 190, 245, 232, 7, 11, 29, 23, 8, 57, 32, 64, 34, 0, 0, 102, 227])
    spo2, _ = readings_from(decode("2A5E", data))
    assert spo2.device_time == datetime(2024, 11, 29, 23, 8, 57)
    assert spo2.clock_trusted is False
    assert spo2.quality[-1] == "device_clock_not_set"


def test_plx_continuous() -> None:
    # SpeziBluetooth PLXTests (testFullMeasurementCoding).
    data = bytes(
        [31, 222, 243, 202, 243, 202, 243, 90, 245, 212, 243, 178, 242, 32, 1, 0, 0, 0, 122, 227]
    )
    quality = ("measurement_ongoing", "fully_qualified_data")
    assert readings_from(decode("2A5F", data)) == (
        Reading(SPO2, {"spo2": 99.0}, None, False, quality),
        Reading(PULSE, {"pulse": 97.0}, None, False, quality),
    )


def test_temperature_fahrenheit_to_celsius() -> None:
    # Built: 98.6 degF (FLOAT mantissa 986, exponent -1), type 6 (mouth).
    data = bytes.fromhex("05 da 03 00 ff 06")
    assert readings_from(decode("2A1C", data)) == (
        Reading(
            kind=MeasurementKind.TEMPERATURE,
            values={"temperature": approx(37.0)},
            device_time=None,
            clock_trusted=False,
        ),
    )


def test_temperature_celsius() -> None:
    # Nordic TemperatureMeasurementDataCallbackTest.
    data = bytes.fromhex("06 b0 0e 00 fe dc 07 0c 05 0b 32 1b 04")
    assert readings_from(decode("2A1C", data)) == (
        Reading(
            kind=MeasurementKind.TEMPERATURE,
            values={"temperature": 37.6},
            device_time=datetime(2012, 12, 5, 11, 50, 27),
            clock_trusted=True,
        ),
    )


def test_glucose_mol_per_litre() -> None:
    data = bytes.fromhex("06 02 00 e3 07 02 1b 0b 0a 1e 36 c0 11")  # 5.4 mmol/L
    assert readings_from(decode("2A18", data)) == (
        Reading(
            kind=MeasurementKind.GLUCOSE,
            values={"glucose": approx(5.4)},
            device_time=datetime(2019, 2, 27, 11, 10, 30),
            clock_trusted=True,
        ),
    )


def test_glucose_kg_per_litre_and_time_fault() -> None:
    # Built: 100 mg/dL = 0.001 kg/L (mantissa 1, exponent -3 -> 0xD001); status bit11 time
    # fault, so the clock is not trusted.
    data = bytes.fromhex("0a 03 00 e3 07 02 1b 0b 0a 1e 01 d0 11 00 08")
    assert readings_from(decode("2A18", data)) == (
        Reading(
            kind=MeasurementKind.GLUCOSE,
            values={"glucose": approx(5.5508, abs=0.0001)},
            device_time=datetime(2019, 2, 27, 11, 10, 30),
            clock_trusted=False,
            quality=("time_fault",),
        ),
    )


def test_glucose_without_concentration_yields_nothing() -> None:
    assert readings_from(decode("2A18", bytes.fromhex("00 03 00 e3 07 02 1b 0b 0a 1e"))) == ()


def test_nonin() -> None:
    data = bytes.fromhex("0a 16 1d 01 f4 00 2a 61 00 48")
    assert readings_from(decode("0aad7ea0-0d60-11e2-8e3c-0002a5d5c51b", data)) == (
        Reading(SPO2, {"spo2": 97.0}, None, False, ("weak_signal",)),
        Reading(PULSE, {"pulse": 72.0}, None, False, ("weak_signal",)),
    )


def test_nonin_missing_and_misplaced() -> None:
    data = bytes.fromhex("0a 28 1d 00 00 00 01 7f 01 ff")  # searching + low battery
    quality = ("searching", "low_battery", "sensor_displaced")
    assert readings_from(decode("0aad7ea0-0d60-11e2-8e3c-0002a5d5c51b", data)) == (
        Reading(SPO2, {"spo2": None}, None, False, quality),
        Reading(PULSE, {"pulse": None}, None, False, quality),
    )


def test_bm1000_latest_frame() -> None:
    data = bytes.fromhex("bf 00 7f 7f 7f c5 32 0a 48 62")
    assert readings_from(decode("bm1000", data)) == (
        Reading(SPO2, {"spo2": 98.0}, None, False, ()),
        Reading(PULSE, {"pulse": 72.0}, None, False, ()),
    )


def test_bm1000_no_finger() -> None:
    quality = ("no_signal", "probe_unplugged", "no_finger", "searching")
    assert readings_from(decode("bm1000", bytes.fromhex("bf 00 7f 7f 7f"))) == (
        Reading(SPO2, {"spo2": None}, None, False, quality),
        Reading(PULSE, {"pulse": None}, None, False, quality),
    )


@pytest.mark.parametrize(
    ("uuid", "hex_"),
    [
        ("2A36", "00 d7 f0 00 00 00 00"),  # intermediate cuff pressure
        ("2A52", "06 00 01 01"),  # RACP
        ("2A60", "a3 00 40 10 80 01 00"),  # PLX features
        ("2A9E", "07 00 00 00"),  # weight scale feature
        ("2A08", "e2 07 04 11 0f 33 00"),  # date time
    ],
)
def test_protocol_traffic_yields_nothing(uuid: str, hex_: str) -> None:
    assert readings_from(decode(uuid, bytes.fromhex(hex_))) == ()


def test_readings_fit_the_wire_contract() -> None:
    # Every reading must build a vitals.wire.Measurement once the caller adds id, times
    # and device: component names and canonical units are the contract's.
    vectors = [
        ("2A35", "15 bd f0 0b 00 9f f0 3c 00 12 00"),
        ("2A9D", "0d 97 40 ff f5 00 b2 02"),
        ("2A5F", "1c 5f 00 5a 00 20 00 00 00 00 57 f0"),
        ("2A1C", "05 da 03 00 ff 06"),
        ("2A18", "06 02 00 e3 07 02 1b 0b 0a 1e 36 c0 11"),
        ("0aad7ea0-0d60-11e2-8e3c-0002a5d5c51b", "0a 28 1d 00 00 00 01 7f 01 ff"),
    ]
    now = datetime(2025, 1, 1, tzinfo=UTC)
    for uuid, hex_ in vectors:
        for r in readings_from(decode(uuid, bytes.fromhex(hex_))):
            Measurement(
                id=new_measurement_id(),
                kind=r.kind,
                values=r.values,
                unit=spec(r.kind).unit,
                measured_at=now,
                device_clock_trusted=r.clock_trusted,
                received_at=now,
                device=Device(address="00:11:22:33:44:55"),
                user_index=r.user_index,
                quality=r.quality,
            )
