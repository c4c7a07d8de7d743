"""Nonin 3230 proprietary Continuous Oximetry characteristic (big-endian)."""

from __future__ import annotations

import pytest

from edge_agent.gatt.errors import GattDecodeError
from edge_agent.gatt.nonin import NoninContinuous, NoninStatus, decode_nonin_continuous

# Layout: CLINICAL.md "Nonin 3230 / WristOx2 3150"; offsets cross-checked with
# andreasdri/nonin-3230-ble index.js (readInt16BE(5) counter, readInt8(7) SpO2,
# readInt16BE(8) pulse) and the status bits with Nonin's "NONIN3230 Mini iOS Application"
# sample PulseOximeterClass.m (parseData). The vectors are built from that layout.


def test_nonin_reading() -> None:
    # status 0x16: weak signal, SmartPoint, CorrectCheck; 2.9 V; PAI 500 -> 5.00 %;
    # counter 42 s; SpO2 97; pulse 72.
    data = bytes.fromhex("0a 16 1d 01 f4 00 2a 61 00 48")
    assert decode_nonin_continuous(data) == NoninContinuous(
        length=10,
        status=NoninStatus(0x16),
        battery_voltage=2.9,
        pulse_amplitude_index=5.0,
        counter=42,
        spo2=97,
        pulse_rate=72,
    )


def test_nonin_big_endian_pulse_above_255() -> None:
    # Pulse 0x0104 = 260 /min: big-endian, so a little-endian reader would say 1025.
    m = decode_nonin_continuous(bytes.fromhex("0a 11 1e 00 32 01 00 5a 01 04"))
    assert (m.pulse_rate, m.counter, m.pulse_amplitude_index) == (260, 256, 0.5)


def test_nonin_missing_values() -> None:
    # SpO2 127 and pulse 511 mean "missing"; status 0x08 searching.
    data = bytes.fromhex("0a 08 1d 00 00 00 01 7f 01 ff")
    assert decode_nonin_continuous(data) == NoninContinuous(
        length=10,
        status=NoninStatus(0x08),
        battery_voltage=2.9,
        pulse_amplitude_index=0.0,
        counter=1,
        spo2=None,
        pulse_rate=None,
    )


@pytest.mark.parametrize(
    ("hex_", "offset"),
    [
        ("0a 16 1d 01 f4 00 2a 61 00", 9),  # 9 bytes
        ("0b 16 1d 01 f4 00 2a 61 00 48", 0),  # length byte disagrees
        ("", 0),
    ],
)
def test_nonin_malformed(hex_: str, offset: int) -> None:
    with pytest.raises(GattDecodeError) as err:
        decode_nonin_continuous(bytes.fromhex(hex_))
    assert (err.value.characteristic, err.value.offset) == ("nonin-continuous", offset)
