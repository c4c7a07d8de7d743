"""Weight Measurement 0x2A9D and Weight Scale Feature 0x2A9E."""

from __future__ import annotations

import pytest

from edge_agent.gatt.codec import DateTime
from edge_agent.gatt.errors import GattDecodeError
from edge_agent.gatt.weight import (
    WeightMeasurement,
    WeightScaleFeature,
    WeightUnit,
    decode_weight_measurement,
    decode_weight_scale_feature,
)


def test_weight_unsuccessful() -> None:
    # Source: im97mori-github/JavaBLEUtil characteristic/u2a9d/src/test/java/org/im97mori/
    # ble/characteristic/u2a9d/WeightMeasurementTest.java (test_constructor002): 0xFFFF.
    assert decode_weight_measurement(bytes.fromhex("00 ff ff")) == WeightMeasurement(
        flags=0x00,
        unit=WeightUnit.KG,
        weight_raw=0xFFFF,
        weight=None,
        timestamp=None,
        user_id=None,
        bmi=None,
        height=None,
    )


def test_weight_imperial_zero() -> None:
    # Source: same file (test_constructor003): imperial, weight 0.
    m = decode_weight_measurement(bytes.fromhex("01 00 00"))
    assert m == WeightMeasurement(
        flags=0x01,
        unit=WeightUnit.LB,
        weight_raw=0,
        weight=0.0,
        timestamp=None,
        user_id=None,
        bmi=None,
        height=None,
    )
    assert m.successful


def test_weight_with_timestamp() -> None:
    # Source: same file (test_constructor102): timestamp 9999-01-01 23:59:59.
    data = bytes.fromhex("02 00 00 0f 27 01 01 17 3b 3b")
    assert decode_weight_measurement(data) == WeightMeasurement(
        flags=0x02,
        unit=WeightUnit.KG,
        weight_raw=0,
        weight=0.0,
        timestamp=DateTime(year=9999, month=1, day=1, hours=23, minutes=59, seconds=59),
        user_id=None,
        bmi=None,
        height=None,
    )


def test_weight_full_si() -> None:
    # Built from the WSS 1.0 / GATT Specification Supplement "Weight Measurement" field table:
    # 15000 x 0.005 kg = 75.0 kg, 2024-01-15 07:30:00, user 1, BMI 245 x 0.1 = 24.5,
    # height 1750 x 0.001 m = 1.75 m (flags bit3 covers BMI and height together).
    data = bytes.fromhex("0e 98 3a e8 07 01 0f 07 1e 00 01 f5 00 d6 06")
    assert decode_weight_measurement(data) == WeightMeasurement(
        flags=0x0E,
        unit=WeightUnit.KG,
        weight_raw=15000,
        weight=75.0,
        timestamp=DateTime(year=2024, month=1, day=15, hours=7, minutes=30, seconds=0),
        user_id=1,
        bmi=24.5,
        height=1.75,
    )


def test_weight_imperial_with_bmi_height_and_unknown_user() -> None:
    # Built from the same table: 16535 x 0.01 lb = 165.35 lb, user 0xFF (unknown user),
    # BMI 24.5, height 690 x 0.1 in = 69.0 in.
    data = bytes.fromhex("0d 97 40 ff f5 00 b2 02")
    assert decode_weight_measurement(data) == WeightMeasurement(
        flags=0x0D,
        unit=WeightUnit.LB,
        weight_raw=16535,
        weight=165.35,
        timestamp=None,
        user_id=0xFF,
        bmi=24.5,
        height=69.0,
    )


@pytest.mark.parametrize(
    ("hex_", "offset"),
    [
        ("00 98", 1),  # weight cut in half
        ("08 98 3a f5 00", 5),  # BMI without height: one flag bit means both
        ("04 98 3a", 3),  # user id flagged, missing
        ("00 98 3a 00", 3),  # trailing byte
    ],
)
def test_weight_malformed(hex_: str, offset: int) -> None:
    with pytest.raises(GattDecodeError) as err:
        decode_weight_measurement(bytes.fromhex(hex_))
    assert (err.value.characteristic, err.value.offset) == ("2A9D", offset)


def test_weight_scale_feature_options() -> None:
    # Source: StanfordSpezi/SpeziBluetooth Tests/SpeziBluetoothServicesTests/
    # WeightScaleTests.swift (testWeightScaleFeatureStrings): timestamp, multiple users and
    # BMI supported is rawValue 0x07.
    f = decode_weight_scale_feature(bytes.fromhex("07 00 00 00"))
    assert f == WeightScaleFeature(
        raw=0x07,
        timestamp_supported=True,
        multiple_users_supported=True,
        bmi_supported=True,
        weight_resolution_code=0,
        height_resolution_code=0,
    )
    assert f.weight_resolution_kg is None
    assert f.height_resolution_m is None


def test_weight_scale_feature_resolutions() -> None:
    # Built from SpeziBluetooth WeightScaleTests.swift (testWeightScaleFeature, features2):
    # BMI supported, weight resolution 20 g (code 5, bits 3-6), height 5 mm (code 2, bits 7-9)
    # -> 0x04 | 5 << 3 | 2 << 7 = 0x012C.
    f = decode_weight_scale_feature(bytes.fromhex("2c 01 00 00"))
    assert f == WeightScaleFeature(
        raw=0x012C,
        timestamp_supported=False,
        multiple_users_supported=False,
        bmi_supported=True,
        weight_resolution_code=5,
        height_resolution_code=2,
    )
    assert (f.weight_resolution_kg, f.weight_resolution_lb) == (0.02, 0.05)
    assert (f.height_resolution_m, f.height_resolution_in) == (0.005, 0.5)


def test_weight_scale_feature_wrong_size() -> None:
    with pytest.raises(GattDecodeError) as err:
        decode_weight_scale_feature(bytes.fromhex("07 00 00"))
    assert (err.value.characteristic, err.value.offset) == ("2A9E", 0)
