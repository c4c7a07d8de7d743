"""BerryMed BM1000 5-byte BCI frames."""

from __future__ import annotations

import pytest

from edge_agent.gatt.berrymed import (
    Bm1000Frame,
    Bm1000Packet,
    decode_bm1000,
    split_bm1000_stream,
)
from edge_agent.gatt.errors import GattDecodeError

# Bit layout: BCI Protocol V1.2 (zh2x/BCI_Protocol) as decoded by
# adafruit/Adafruit_CircuitPython_BLE_BerryMed_Pulse_Oximeter,
# adafruit_ble_berrymed_pulse_oximeter/__init__.py (values property), and the datagram
# "1BPNSSSS|0LLLLLLL|0PRCGGGG|0ppppppp|0XXXXXXX" in ScheindorfHyenetics/
# berrymedBluetoothOxymeter parser/sp02.py. Vectors are built from that layout.

NORMAL = bytes.fromhex("c5 32 0a 48 62")
NORMAL_FRAME = Bm1000Frame(
    signal_strength=5,
    no_signal=False,
    probe_unplugged=False,
    pulse_beep=True,
    pleth=50,
    bargraph=10,
    no_finger=False,
    pulse_searching=False,
    pulse_rate=72,
    spo2=98,
)


def test_frame() -> None:
    assert decode_bm1000(NORMAL) == Bm1000Packet((NORMAL_FRAME,))


def test_pulse_rate_high_bit_lives_in_byte2() -> None:
    # byte2 bit6 is pulse-rate bit 7 (Adafruit: data[2] | (data[1] & 0x40) << 1): 128 + 5.
    frame = decode_bm1000(bytes.fromhex("85 20 43 05 5f")).latest
    assert (frame.pulse_rate, frame.spo2, frame.bargraph) == (133, 95, 3)


def test_no_finger_frame() -> None:
    # Pulse 255 and SpO2 127 are "no value"; no signal, probe unplugged, no finger, searching.
    assert decode_bm1000(bytes.fromhex("bf 00 7f 7f 7f")).latest == Bm1000Frame(
        signal_strength=15,
        no_signal=True,
        probe_unplugged=True,
        pulse_beep=False,
        pleth=0,
        bargraph=15,
        no_finger=True,
        pulse_searching=True,
        pulse_rate=None,
        spo2=None,
    )


def test_several_frames_per_notification() -> None:
    packet = decode_bm1000(NORMAL + bytes.fromhex("85 20 43 05 5f"))
    assert len(packet.frames) == 2
    assert packet.frames[0] == NORMAL_FRAME
    assert packet.latest.pulse_rate == 133


@pytest.mark.parametrize(
    ("hex_", "offset"),
    [
        ("45 32 0a 48 62", 0),  # no sync bit
        ("c5 32 8a 48 62", 2),  # sync bit inside the frame
        ("c5 32 0a 48", 0),  # not whole frames
        ("c5 32 0a 48 62 c5", 5),
        ("", 0),
    ],
)
def test_malformed(hex_: str, offset: int) -> None:
    with pytest.raises(GattDecodeError) as err:
        decode_bm1000(bytes.fromhex(hex_))
    assert (err.value.characteristic, err.value.offset) == ("bm1000", offset)


def test_split_stream_realigns() -> None:
    # A notification starting mid-frame, a frame broken by a new sync byte, and a tail.
    stream = bytes.fromhex("48 62") + NORMAL + bytes.fromhex("c5 32") + NORMAL + bytes.fromhex(
        "c5 32 0a"
    )
    frames, rest = split_bm1000_stream(stream)
    assert frames == NORMAL + NORMAL
    assert rest == bytes.fromhex("c5 32 0a")
    assert split_bm1000_stream(rest + bytes.fromhex("48 62")) == (NORMAL, b"")
