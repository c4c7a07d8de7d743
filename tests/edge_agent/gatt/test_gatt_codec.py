"""SFLOAT, FLOAT and Date Time: the shared wire types (edge_agent.gatt.codec)."""

from __future__ import annotations

from datetime import datetime

import pytest

from edge_agent.gatt.codec import (
    DateTime,
    MedFloat,
    Special,
    decode_date_time,
    decode_float,
    decode_sfloat,
)
from edge_agent.gatt.errors import GattDecodeError, GattError

# --- SFLOAT ---------------------------------------------------------------------------


def test_sfloat_negative_exponent() -> None:
    # Source: NordicSemiconductor/Android-BLE-Common-Library, ble-common/src/test/java/no/
    # nordicsemi/android/ble/common/callback/bps/BloodPressureMeasurementDataCallbackTest.java
    # (_some): bytes BD F0 are systolic 18.9 kPa. A decoder that biases the exponent by 8
    # instead of sign-extending it reads this as 189e7.
    f = decode_sfloat(0xF0BD)
    assert f == MedFloat(mantissa=189, exponent=-1)
    assert f.value == 18.9


def test_sfloat_two_digit_negative_exponent() -> None:
    # Source: StanfordSpezi/SpeziBluetooth Tests/SpeziBluetoothServicesTests/PLXTests.swift
    # (testSpotCheckMeasurementCoding): bytes AC F3 are SpO2 94.
    f = decode_sfloat(0xF3AC)
    assert f == MedFloat(mantissa=940, exponent=-1)
    assert f.value == 94.0


def test_sfloat_positive_exponent() -> None:
    # Source: StanfordSpezi/SpeziBluetooth Tests/SpeziBluetoothTests/MedFloatTests.swift
    # (testBasicRepresentations): exponent 2, mantissa 1230 is 123000.0; raw 0x24CE per the
    # IEEE 11073-20601 layout (exponent nibble 0x2, mantissa 0x4CE).
    f = decode_sfloat(0x24CE)
    assert f == MedFloat(mantissa=1230, exponent=2)
    assert f.value == 123000.0


def test_sfloat_negative_mantissa() -> None:
    # Source: SpeziBluetooth MedFloatTests.swift: exponent -2, mantissa -1234 is -12.34
    # (raw: exponent 0xE, mantissa 0x1000 - 1234 = 0xB2E).
    f = decode_sfloat(0xEB2E)
    assert f == MedFloat(mantissa=-1234, exponent=-2)
    assert f.value == -12.34


def test_sfloat_most_negative_exponent() -> None:
    # Source: SpeziBluetooth MedFloatTests.swift: exponent -8, mantissa 120 is 0.0000012.
    # Exponent nibble 0x8 is -8 in two's complement; a biased decoder would say 0.
    f = decode_sfloat(0x8078)
    assert f == MedFloat(mantissa=120, exponent=-8)
    assert f.value == 0.0000012


@pytest.mark.parametrize(
    ("raw", "special"),
    [
        # Source: IEEE 11073-20601 reserved SFLOAT values, as listed in CLINICAL.md
        # ("Bluetooth LE facts") and Nordic's Data.java getFloatValue().
        (0x07FF, Special.NAN),
        (0x0800, Special.NRES),
        (0x07FE, Special.POSITIVE_INFINITY),
        (0x0802, Special.NEGATIVE_INFINITY),
        (0x0801, Special.RESERVED),
    ],
)
def test_sfloat_specials_are_not_numbers(raw: int, special: Special) -> None:
    f = decode_sfloat(raw)
    assert f == MedFloat(mantissa=raw & 0x0FFF, exponent=0, special=special)
    assert f.value is None
    assert f.is_special


def test_sfloat_special_mantissa_with_exponent_is_a_number() -> None:
    # Specials are defined with exponent 0 only: 0x17FF is 2047 x 10.
    assert decode_sfloat(0x17FF) == MedFloat(mantissa=2047, exponent=1)
    assert decode_sfloat(0x17FF).value == 20470.0


# --- FLOAT ----------------------------------------------------------------------------


def test_float_temperature() -> None:
    # Source: NordicSemiconductor/Android-BLE-Common-Library, ble-common/src/test/java/no/
    # nordicsemi/android/ble/common/callback/ht/TemperatureMeasurementDataCallbackTest.java:
    # bytes B0 0E 00 FE are 37.60.
    f = decode_float(0xFE000EB0)
    assert f == MedFloat(mantissa=3760, exponent=-2)
    assert f.value == 37.6


def test_float_negative_mantissa_positive_exponent() -> None:
    # Built from the IEEE 11073-20601 FLOAT layout: exponent 0x01, mantissa 0xFFFFFF (-1).
    f = decode_float(0x01FFFFFF)
    assert f == MedFloat(mantissa=-1, exponent=1)
    assert f.value == -10.0


@pytest.mark.parametrize(
    ("raw", "special"),
    [
        # Source: CLINICAL.md "Bluetooth LE facts" (IEEE 11073-20601 FLOAT specials).
        (0x007FFFFF, Special.NAN),
        (0x00800000, Special.NRES),
        (0x007FFFFE, Special.POSITIVE_INFINITY),
        (0x00800002, Special.NEGATIVE_INFINITY),
        (0x00800001, Special.RESERVED),
    ],
)
def test_float_specials_are_not_numbers(raw: int, special: Special) -> None:
    f = decode_float(raw)
    assert f == MedFloat(mantissa=raw & 0xFFFFFF, exponent=0, special=special)
    assert f.value is None


# --- Date Time ------------------------------------------------------------------------


def test_date_time() -> None:
    # Source: NordicSemiconductor/Android-BLE-Common-Library, ble-common/src/test/java/no/
    # nordicsemi/android/ble/common/callback/DateTimeDataCallbackTest.java (_today).
    dt = decode_date_time(bytes.fromhex("e2 07 04 11 0f 33 00"))
    assert dt == DateTime(year=2018, month=4, day=17, hours=15, minutes=51, seconds=0)
    assert dt.value == datetime(2018, 4, 17, 15, 51, 0)


def test_date_time_date_not_known() -> None:
    # Source: same file (_dateNotKnown): year, month and day 0 -> no timestamp.
    dt = decode_date_time(bytes.fromhex("00 00 00 00 12 1a 20"))
    assert dt == DateTime(year=0, month=0, day=0, hours=18, minutes=26, seconds=32)
    assert dt.value is None
    assert not dt.known


def test_date_time_year_unknown_only() -> None:
    # Source: Nordic BloodPressureMeasurementDataCallbackTest.java (_full) timestamp bytes:
    # year 0, April 17 20:41:59 -> the date is not known, so no timestamp.
    dt = decode_date_time(bytes.fromhex("00 00 04 11 14 29 3b"))
    assert dt == DateTime(year=0, month=4, day=17, hours=20, minutes=41, seconds=59)
    assert dt.value is None


def test_date_time_too_short() -> None:
    # Source: Nordic DateTimeDataCallbackTest.java (_dataTooShort): 6 bytes.
    with pytest.raises(GattDecodeError) as err:
        decode_date_time(bytes.fromhex("e2 07 04 11 0f 33"))
    assert (err.value.characteristic, err.value.offset) == ("2A08", 0)
    assert isinstance(err.value, GattError)


@pytest.mark.parametrize(
    ("hex_", "offset", "reason"),
    [
        # Built from the Date Time field ranges (GATT Specification Supplement, Date Time):
        ("e8070d01000000", 2, "month 13"),
        ("e807011f180000", 4, "hours 24"),
        ("e807011f173c00", 5, "minutes 60"),
        ("e807011f17003c", 6, "seconds 60"),
        ("0100011f000000", 0, "year 1"),
        # Source: im97mori-github/JavaBLEUtil characteristic/u2a9d/src/test/java/org/im97mori/
        # ble/characteristic/u2a9d/WeightMeasurementTest.java (test_constructor103) sends
        # 9999-02-31, which that library accepts; 31 February is not a date, so we refuse it.
        ("0f27021f000000", 3, "does not exist"),
    ],
)
def test_date_time_out_of_range(hex_: str, offset: int, reason: str) -> None:
    with pytest.raises(GattDecodeError) as err:
        decode_date_time(bytes.fromhex(hex_))
    assert err.value.offset == offset
    assert reason in err.value.reason


def test_error_message_names_characteristic_offset_and_reason() -> None:
    err = GattDecodeError("2A35", 7, "Date Time needs 7 bytes, 0 left")
    assert str(err) == "2A35 at byte 7: Date Time needs 7 bytes, 0 left"
