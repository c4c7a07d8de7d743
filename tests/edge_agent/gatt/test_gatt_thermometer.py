"""Temperature Measurement 0x2A1C."""

from __future__ import annotations

import pytest

from edge_agent.gatt.codec import DateTime, MedFloat, Special
from edge_agent.gatt.errors import GattDecodeError
from edge_agent.gatt.thermometer import (
    TemperatureMeasurement,
    TemperatureUnit,
    decode_temperature_measurement,
)


def test_temperature_full() -> None:
    # Source: NordicSemiconductor/Android-BLE-Common-Library, ble-common/src/test/java/no/
    # nordicsemi/android/ble/common/callback/ht/TemperatureMeasurementDataCallbackTest.java:
    # 37.60 Cel, 2012-12-05 11:50:27, type 4 (finger).
    data = bytes.fromhex("06 b0 0e 00 fe dc 07 0c 05 0b 32 1b 04")
    m = decode_temperature_measurement(data)
    assert m == TemperatureMeasurement(
        flags=0x06,
        unit=TemperatureUnit.CELSIUS,
        temperature=MedFloat(3760, -2),
        timestamp=DateTime(year=2012, month=12, day=5, hours=11, minutes=50, seconds=27),
        temperature_type=4,
    )
    assert m.temperature_type_name == "finger"


def test_temperature_fahrenheit_nan() -> None:
    # Built from HTS 1.0: flags bit0 Fahrenheit, FLOAT NaN 0x007FFFFF (CLINICAL.md).
    m = decode_temperature_measurement(bytes.fromhex("01 ff ff 7f 00"))
    assert m == TemperatureMeasurement(
        flags=0x01,
        unit=TemperatureUnit.FAHRENHEIT,
        temperature=MedFloat(0x7FFFFF, 0, Special.NAN),
        timestamp=None,
        temperature_type=None,
    )


def test_temperature_missing_type() -> None:
    # Source: Nordic TemperatureMeasurementDataCallbackTest.onInvalidDataReceived: the type
    # byte promised by flags bit2 is missing.
    with pytest.raises(GattDecodeError) as err:
        decode_temperature_measurement(bytes.fromhex("06 b0 0e 00 fe dc 07 0c 05 0b 32 1b"))
    assert (err.value.characteristic, err.value.offset) == ("2A1C", 12)
