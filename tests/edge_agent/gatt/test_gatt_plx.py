"""PLX Spot-Check 0x2A5E, PLX Continuous 0x2A5F and PLX Features 0x2A60."""

from __future__ import annotations

import pytest

from edge_agent.gatt.codec import DateTime, MedFloat, flag_names
from edge_agent.gatt.errors import GattDecodeError
from edge_agent.gatt.plx import (
    PlxContinuous,
    PlxDeviceSensorStatus,
    PlxFeatures,
    PlxMeasurementStatus,
    PlxSpotCheck,
    PlxSupportedFeatures,
    decode_plx_continuous,
    decode_plx_features,
    decode_plx_spot_check,
)

# Vectors: StanfordSpezi/SpeziBluetooth Tests/SpeziBluetoothServicesTests/PLXTests.swift.
# Status bits are written as literal numbers and their names as literal strings, so a
# mis-numbered enum member fails here rather than agreeing with itself.


def test_continuous_very_simple() -> None:
    # PLXTests.testVerySimpleMeasurementCoding: Data([0, 100, 0, 90, 0]).
    assert decode_plx_continuous(bytes([0, 100, 0, 90, 0])) == PlxContinuous(
        flags=0x00,
        spo2=MedFloat(100, 0),
        pulse_rate=MedFloat(90, 0),
        spo2_fast=None,
        pulse_rate_fast=None,
        spo2_slow=None,
        pulse_rate_slow=None,
        measurement_status=None,
        device_and_sensor_status=None,
        pulse_amplitude_index=None,
    )


def test_continuous_simple() -> None:
    # PLXTests.testSimpleMeasurementCoding: SpO2 95, PR 90, measurement ongoing, PAI 8.7.
    m = decode_plx_continuous(bytes([28, 95, 0, 90, 0, 32, 0, 0, 0, 0, 87, 240]))
    assert m == PlxContinuous(
        flags=0x1C,
        spo2=MedFloat(95, 0),
        pulse_rate=MedFloat(90, 0),
        spo2_fast=None,
        pulse_rate_fast=None,
        spo2_slow=None,
        pulse_rate_slow=None,
        measurement_status=PlxMeasurementStatus(0x0020),
        device_and_sensor_status=PlxDeviceSensorStatus(0x000000),
        pulse_amplitude_index=MedFloat(87, -1),
    )
    assert m.measurement_status is not None
    assert flag_names(m.measurement_status) == ("measurement_ongoing",)


def test_continuous_full() -> None:
    # PLXTests.testFullMeasurementCoding: 99/97, fast 97/137, slow 98/69, measurement
    # ongoing + fully qualified, PAI 8.9.
    data = bytes(
        [31, 222, 243, 202, 243, 202, 243, 90, 245, 212, 243, 178, 242, 32, 1, 0, 0, 0, 122, 227]
    )
    m = decode_plx_continuous(data)
    assert m == PlxContinuous(
        flags=0x1F,
        spo2=MedFloat(990, -1),
        pulse_rate=MedFloat(970, -1),
        spo2_fast=MedFloat(970, -1),
        pulse_rate_fast=MedFloat(1370, -1),
        spo2_slow=MedFloat(980, -1),
        pulse_rate_slow=MedFloat(690, -1),
        measurement_status=PlxMeasurementStatus(0x0120),
        device_and_sensor_status=PlxDeviceSensorStatus(0x000000),
        pulse_amplitude_index=MedFloat(890, -2),
    )
    assert m.measurement_status is not None
    assert flag_names(m.measurement_status) == ("measurement_ongoing", "fully_qualified_data")
    assert (m.pulse_rate_fast and m.pulse_rate_fast.value) == 137.0


def test_spot_check() -> None:
    # PLXTests.testSpotCheckMeasurementCoding: 94 %, 147 /min, 2024-11-29 23:08:57,
    # measurement ongoing + questionable, equipment malfunction + low perfusion, PAI 8.7.
    data = bytes([15, 172, 243, 190, 245, 232, 7, 11, 29, 23, 8, 57, 32, 64, 34, 0, 0, 102, 227])
    m = decode_plx_spot_check(data)
    assert m == PlxSpotCheck(
        flags=0x0F,
        spo2=MedFloat(940, -1),
        pulse_rate=MedFloat(1470, -1),
        timestamp=DateTime(year=2024, month=11, day=29, hours=23, minutes=8, seconds=57),
        measurement_status=PlxMeasurementStatus(0x4020),
        device_and_sensor_status=PlxDeviceSensorStatus(0x000022),
        pulse_amplitude_index=MedFloat(870, -2),
        device_clock_not_set=False,
    )
    assert m.measurement_status is not None and m.device_and_sensor_status is not None
    assert flag_names(m.measurement_status) == ("measurement_ongoing", "questionable_measurement")
    assert flag_names(m.device_and_sensor_status) == ("equipment_malfunction", "low_perfusion")


def test_spot_check_device_clock_not_set() -> None:
    # The Spezi spot-check vector with flags bit4 (device clock is not set) added; PLXS 1.0.
    data = bytes([31, 172, 243, 190, 245, 232, 7, 11, 29, 23, 8, 57, 32, 64, 34, 0, 0, 102, 227])
    assert decode_plx_spot_check(data).device_clock_not_set is True


def test_device_sensor_status_names_and_reserved_bits() -> None:
    # Built from the PLXS 1.0 Device and Sensor Status table: bit13 sensor displaced,
    # bit15 sensor disconnected, bit20 reserved (kept in the value, not named).
    data = bytes.fromhex("08 62 00 48 00 00 a0 10")
    m = decode_plx_continuous(data)
    assert m.device_and_sensor_status == PlxDeviceSensorStatus(0x10A000)
    assert flag_names(m.device_and_sensor_status) == ("sensor_displaced", "sensor_disconnected")


def test_features() -> None:
    # PLXTests.testPLXFeaturesCoding: measurement status + device/sensor status support,
    # SpO2PR-Slow, multiple bonds; supports calibration ongoing + early estimated data, and
    # nonpulsatile signal + questionable pulse.
    f = decode_plx_features(bytes([163, 0, 64, 16, 128, 1, 0]))
    assert f == PlxFeatures(
        supported_features=PlxSupportedFeatures(0x00A3),
        measurement_status_support=PlxMeasurementStatus(0x1040),
        device_and_sensor_status_support=PlxDeviceSensorStatus(0x000180),
    )
    assert flag_names(f.supported_features) == (
        "measurement_status_support",
        "device_and_sensor_status_support",
        "spo2pr_slow",
        "multiple_bonds",
    )
    assert f.measurement_status_support is not None
    assert f.device_and_sensor_status_support is not None
    assert flag_names(f.measurement_status_support) == (
        "early_estimated_data",
        "calibration_ongoing",
    )
    assert flag_names(f.device_and_sensor_status_support) == (
        "nonpulsatile_signal",
        "questionable_pulse",
    )


@pytest.mark.parametrize(
    ("decoder", "uuid", "hex_", "offset"),
    [
        (decode_plx_spot_check, "2A5E", "00 62 00", 3),
        (decode_plx_spot_check, "2A5E", "04 62 00 48 00 00 00", 5),  # u24 cut short
        (decode_plx_continuous, "2A5F", "01 62 00 48 00 62 00", 7),  # fast pair cut short
        (decode_plx_continuous, "2A5F", "00 62 00 48 00 ff", 5),  # trailing byte
        (decode_plx_features, "2A60", "03 00 00 00", 4),  # status support, no DSS support
    ],
)
def test_malformed(decoder: object, uuid: str, hex_: str, offset: int) -> None:
    assert callable(decoder)
    with pytest.raises(GattDecodeError) as err:
        decoder(bytes.fromhex(hex_))
    assert (err.value.characteristic, err.value.offset) == (uuid, offset)
