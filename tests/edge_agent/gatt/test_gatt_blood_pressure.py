"""Blood Pressure Measurement 0x2A35 and Intermediate Cuff Pressure 0x2A36."""

from __future__ import annotations

import pytest

from edge_agent.gatt.blood_pressure import (
    BloodPressureMeasurement,
    BloodPressureStatus,
    IntermediateCuffPressure,
    PressureUnit,
    PulseRateRange,
    decode_blood_pressure_measurement,
    decode_intermediate_cuff_pressure,
)
from edge_agent.gatt.codec import DateTime, MedFloat
from edge_agent.gatt.errors import GattDecodeError

# Vectors: NordicSemiconductor/Android-BLE-Common-Library, ble-common/src/test/java/no/
# nordicsemi/android/ble/common/callback/bps/BloodPressureMeasurementDataCallbackTest.java
# and .../bps/IntermediateCuffPressureDataCallbackTest.java.

FULL_STATUS = BloodPressureStatus(
    raw=0x0027,
    body_movement=True,
    cuff_loose=True,
    irregular_pulse=True,
    pulse_rate_range=PulseRateRange.WITHIN_RANGE,
    improper_position=True,
)
SOME_STATUS = BloodPressureStatus(
    raw=0x0012,
    body_movement=False,
    cuff_loose=True,
    irregular_pulse=False,
    pulse_rate_range=PulseRateRange.BELOW_LOWER_LIMIT,
    improper_position=False,
)


def test_bpm_full() -> None:
    # Nordic onBloodPressureMeasurementReceived_full: 138/88 MAP 120 mmHg, timestamp with
    # year 0 (unknown), pulse 60, user 1, status 0b100111.
    data = bytes.fromhex("1e 8a 00 58 00 78 00 00 00 04 11 14 29 3b 3c 00 01 27 00")
    assert decode_blood_pressure_measurement(data) == BloodPressureMeasurement(
        flags=0x1E,
        unit=PressureUnit.MMHG,
        systolic=MedFloat(138, 0),
        diastolic=MedFloat(88, 0),
        mean_arterial_pressure=MedFloat(120, 0),
        timestamp=DateTime(year=0, month=4, day=17, hours=20, minutes=41, seconds=59),
        pulse_rate=MedFloat(60, 0),
        user_id=1,
        status=FULL_STATUS,
    )


def test_bpm_some_kpa() -> None:
    # Nordic onBloodPressureMeasurementReceived_some: 18.9/11.0 MAP 15.9 kPa, pulse 60,
    # status 0b010010 (cuff loose, pulse rate below lower limit).
    data = bytes.fromhex("15 bd f0 0b 00 9f f0 3c 00 12 00")
    assert decode_blood_pressure_measurement(data) == BloodPressureMeasurement(
        flags=0x15,
        unit=PressureUnit.KPA,
        systolic=MedFloat(189, -1),
        diastolic=MedFloat(11, 0),
        mean_arterial_pressure=MedFloat(159, -1),
        timestamp=None,
        pulse_rate=MedFloat(60, 0),
        user_id=None,
        status=SOME_STATUS,
    )


def test_bpm_minimal() -> None:
    # Nordic onBloodPressureMeasurementReceived_minimal.
    data = bytes.fromhex("00 bd f0 0b 00 9f f0")
    assert decode_blood_pressure_measurement(data) == BloodPressureMeasurement(
        flags=0x00,
        unit=PressureUnit.MMHG,
        systolic=MedFloat(189, -1),
        diastolic=MedFloat(11, 0),
        mean_arterial_pressure=MedFloat(159, -1),
        timestamp=None,
        pulse_rate=None,
        user_id=None,
        status=None,
    )


def test_bpm_pulse_rate_exceeds_upper_limit_and_reserved_bits_kept() -> None:
    # Built from the BPS 1.0 Measurement Status table: bit3 set = pulse rate exceeds upper
    # limit; bit15 is reserved and must survive in raw.
    data = bytes.fromhex("10 8a 00 58 00 78 00 08 80")
    assert decode_blood_pressure_measurement(data).status == BloodPressureStatus(
        raw=0x8008,
        body_movement=False,
        cuff_loose=False,
        irregular_pulse=False,
        pulse_rate_range=PulseRateRange.EXCEEDS_UPPER_LIMIT,
        improper_position=False,
    )


@pytest.mark.parametrize(
    ("hex_", "offset"),
    [
        # Nordic onInvalidDataReceived_toShort: 6 bytes, MAP cut off at byte 5.
        ("01 02 03 04 05 06", 5),
        # Nordic onInvalidDataReceived_noTimestamp: flag bit1 set, no Date Time at byte 7.
        ("03 02 03 04 05 06 07", 7),
        # Status flag set but only one status byte: fails at byte 7.
        ("10 8a 00 58 00 78 00 08", 7),
        # Trailing byte after every promised field.
        ("00 bd f0 0b 00 9f f0 00", 7),
        ("", 0),
    ],
)
def test_bpm_malformed(hex_: str, offset: int) -> None:
    with pytest.raises(GattDecodeError) as err:
        decode_blood_pressure_measurement(bytes.fromhex(hex_))
    assert (err.value.characteristic, err.value.offset) == ("2A35", offset)


def test_icp_full() -> None:
    # Nordic onIntermediateCuffPressureReceived_full: cuff 4 mmHg.
    data = bytes.fromhex("1e 04 00 00 00 00 00 00 00 04 11 14 29 3b 3c 00 01 27 00")
    assert decode_intermediate_cuff_pressure(data) == IntermediateCuffPressure(
        flags=0x1E,
        unit=PressureUnit.MMHG,
        cuff_pressure=MedFloat(4, 0),
        timestamp=DateTime(year=0, month=4, day=17, hours=20, minutes=41, seconds=59),
        pulse_rate=MedFloat(60, 0),
        user_id=1,
        status=FULL_STATUS,
    )


def test_icp_some_kpa() -> None:
    # Nordic onIntermediateCuffPressureReceived_some: 11.1 kPa, pulse 60.
    data = bytes.fromhex("15 6f f0 00 00 00 00 3c 00 12 00")
    assert decode_intermediate_cuff_pressure(data) == IntermediateCuffPressure(
        flags=0x15,
        unit=PressureUnit.KPA,
        cuff_pressure=MedFloat(111, -1),
        timestamp=None,
        pulse_rate=MedFloat(60, 0),
        user_id=None,
        status=SOME_STATUS,
    )


def test_icp_minimal() -> None:
    # Nordic onIntermediateCuffPressureReceived_minimal: 21.5 mmHg.
    data = bytes.fromhex("00 d7 f0 00 00 00 00")
    assert decode_intermediate_cuff_pressure(data) == IntermediateCuffPressure(
        flags=0x00,
        unit=PressureUnit.MMHG,
        cuff_pressure=MedFloat(215, -1),
        timestamp=None,
        pulse_rate=None,
        user_id=None,
        status=None,
    )


def test_icp_too_short() -> None:
    # Nordic IntermediateCuffPressure onInvalidDataReceived_toShort.
    with pytest.raises(GattDecodeError) as err:
        decode_intermediate_cuff_pressure(bytes.fromhex("01 02 03 04 05 06"))
    assert (err.value.characteristic, err.value.offset) == ("2A36", 5)
