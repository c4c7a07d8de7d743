"""UUID dispatch (edge_agent.gatt.registry)."""

from __future__ import annotations

import pytest

from edge_agent.gatt import GattDecodeError, decode, normalize_uuid
from edge_agent.gatt.blood_pressure import BloodPressureMeasurement
from edge_agent.gatt.codec import DateTime
from edge_agent.gatt.nonin import NoninContinuous

# Nordic BloodPressureMeasurementDataCallbackTest (_minimal) vector.
BPM = bytes.fromhex("00 bd f0 0b 00 9f f0")


@pytest.mark.parametrize(
    "uuid",
    [
        "2A35",
        "2a35",
        "0x2a35",
        "0X2A35",
        " 2a35 ",
        "00002a35",
        "00002a35-0000-1000-8000-00805f9b34fb",
        "00002A35-0000-1000-8000-00805F9B34FB",
        "00002a3500001000800000805f9b34fb",
        "{00002a35-0000-1000-8000-00805f9b34fb}",
    ],
)
def test_blood_pressure_uuid_spellings(uuid: str) -> None:
    assert normalize_uuid(uuid) == "2a35"
    assert isinstance(decode(uuid, BPM), BloodPressureMeasurement)


def test_nonin_full_uuid() -> None:
    data = bytes.fromhex("0a 16 1d 01 f4 00 2a 61 00 48")
    assert isinstance(decode("0AAD7EA0-0D60-11E2-8E3C-0002A5D5C51B", data), NoninContinuous)


def test_date_time_and_bytearray() -> None:
    # Source: Nordic DateTimeDataCallbackTest (_today).
    dt = decode("2A08", bytearray.fromhex("e2 07 04 11 0f 33 00"))
    assert dt == DateTime(2018, 4, 17, 15, 51, 0)


@pytest.mark.parametrize(
    "uuid",
    [
        "2a37",  # Heart Rate Measurement: known SIG UUID, no decoder here
        "0aad7ea0-0d60-11e2-8e3c-0002a5d5c51c",
        "49535343-1e4d-4bd9-ba61-23c647249616",  # ISSC UART: too generic to bind (BM1000)
        "",
        "2a3",
        "zz35",
        "0x",
        "00012a35",
    ],
)
def test_unknown_or_malformed_uuid(uuid: str) -> None:
    with pytest.raises(GattDecodeError) as err:
        decode(uuid, BPM)
    assert err.value.offset == 0


def test_malformed_payload_names_characteristic() -> None:
    with pytest.raises(GattDecodeError) as err:
        decode("0x2A35", BPM[:-1])
    assert (err.value.characteristic, err.value.offset) == ("2A35", 5)
