"""Glucose Measurement 0x2A18."""

from __future__ import annotations

from datetime import datetime

import pytest

from edge_agent.gatt.codec import DateTime, MedFloat
from edge_agent.gatt.errors import GattDecodeError
from edge_agent.gatt.glucose import (
    GlucoseMeasurement,
    GlucoseSensorStatus,
    GlucoseUnit,
    decode_glucose_measurement,
)


def test_glucose_full() -> None:
    # Source: NordicSemiconductor/Android-BLE-Common-Library, ble-common/src/test/java/no/
    # nordicsemi/android/ble/common/callback/glucose/GlucoseMeasurementDataCallbackTest.java:
    # seq 1, 2019-02-27 11:10:30 with offset -5 min, 30 kg/L, capillary plasma at finger,
    # status 0x0105 (battery low, sample size insufficient, sensor temperature too low),
    # context follows.
    data = bytes.fromhex("1b 01 00 e3 07 02 1b 0b 0a 1e fb ff 1e 00 12 05 01")
    assert decode_glucose_measurement(data) == GlucoseMeasurement(
        flags=0x1B,
        sequence_number=1,
        base_time=DateTime(year=2019, month=2, day=27, hours=11, minutes=10, seconds=30),
        time_offset=-5,
        timestamp=datetime(2019, 2, 27, 11, 5, 30),
        concentration=MedFloat(30, 0),
        unit=GlucoseUnit.KG_PER_L,
        type=2,
        sample_location=1,
        sensor_status=GlucoseSensorStatus(0x0105),
        context_information_follows=True,
    )


def test_glucose_mol_per_litre_no_offset() -> None:
    # Built from GLS 1.0: flags bit1 (concentration) + bit2 (mol/L); 0xC036 is 54 x 10^-4
    # mol/L = 5.4 mmol/L; type 1 (capillary whole blood), location 1 (finger).
    data = bytes.fromhex("06 02 00 e3 07 02 1b 0b 0a 1e 36 c0 11")
    assert decode_glucose_measurement(data) == GlucoseMeasurement(
        flags=0x06,
        sequence_number=2,
        base_time=DateTime(year=2019, month=2, day=27, hours=11, minutes=10, seconds=30),
        time_offset=None,
        timestamp=datetime(2019, 2, 27, 11, 10, 30),
        concentration=MedFloat(54, -4),
        unit=GlucoseUnit.MOL_PER_L,
        type=1,
        sample_location=1,
        sensor_status=None,
        context_information_follows=False,
    )


def test_glucose_missing_time_offset() -> None:
    # Source: Nordic GlucoseMeasurementDataCallbackTest.onInvalidDataReceived ("time offset
    # missing"): flags promise 17 bytes, 15 arrive.
    data = bytes.fromhex("1b 00 00 e2 07 04 1a 0b 09 1e 1e 00 12 05 01")
    with pytest.raises(GattDecodeError) as err:
        decode_glucose_measurement(data)
    assert err.value.characteristic == "2A18"


def test_glucose_offset_past_end_of_calendar() -> None:
    # 9999-12-31 23:59:59 + 32767 min does not exist; an error, not an OverflowError.
    data = bytes.fromhex("01 00 00 0f 27 0c 1f 17 3b 3b ff 7f")
    with pytest.raises(GattDecodeError) as err:
        decode_glucose_measurement(data)
    assert (err.value.characteristic, err.value.offset) == ("2A18", 3)
