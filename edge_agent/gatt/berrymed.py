"""BerryMed BM1000 (BM1000B/C/E) pulse oximeter: the "BCI protocol" 5-byte frames.

The BM1000 streams over a Microchip ISSC transparent-UART characteristic
(49535343-1E4D-4BD9-BA61-23C647249616). That UUID is shared by many unrelated UART
gadgets, so the registry does not bind it; callers that know they are talking to a BM1000
decode under the pseudo-UUID ``"bm1000"`` instead.

Each frame is 5 bytes, ~100 frames a second; only the first byte has bit 7 (sync) set.
Bit layout per the BCI Protocol V1.2 (github.com/zh2x/BCI_Protocol) as implemented by
Adafruit_CircuitPython_BLE_BerryMed_Pulse_Oximeter (adafruit_ble_berrymed_pulse_oximeter):

    byte0  1 | beep | probe unplugged | no signal | signal strength (4 bits)
    byte1  0 | pleth (7 bits)
    byte2  0 | pulse rate bit 7 | pulse searching | no finger | bargraph (4 bits)
    byte3  0 | pulse rate bits 0-6
    byte4  0 | SpO2 (7 bits)

Pulse rate 255 and SpO2 127 mean "no value".
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.gatt.errors import GattDecodeError

__all__ = [
    "BM1000",
    "BM1000_FRAME_SIZE",
    "Bm1000Frame",
    "Bm1000Packet",
    "decode_bm1000",
    "split_bm1000_stream",
]

BM1000 = "bm1000"
BM1000_FRAME_SIZE = 5
_PULSE_MISSING = 255
_SPO2_MISSING = 127


@dataclass(frozen=True, slots=True)
class Bm1000Frame:
    signal_strength: int
    """0-15, the optical signal, not the radio link."""
    no_signal: bool
    probe_unplugged: bool
    pulse_beep: bool
    pleth: int
    """Plethysmogram sample, 0-100."""
    bargraph: int
    no_finger: bool
    pulse_searching: bool
    pulse_rate: int | None
    """Beats per minute; None when the device sends 255."""
    spo2: int | None
    """Percent; None when the device sends 127."""


@dataclass(frozen=True, slots=True)
class Bm1000Packet:
    """One notification: one or more whole frames, oldest first."""

    frames: tuple[Bm1000Frame, ...]

    @property
    def latest(self) -> Bm1000Frame:
        return self.frames[-1]


def _frame(data: bytes, at: int) -> Bm1000Frame:
    b0, b1, b2, b3, b4 = data[at : at + BM1000_FRAME_SIZE]
    if not b0 & 0x80:
        raise GattDecodeError(BM1000, at, "frame does not start with the sync bit")
    for i, b in enumerate((b1, b2, b3, b4), start=1):
        if b & 0x80:
            raise GattDecodeError(BM1000, at + i, "sync bit set inside a frame")
    pulse = b3 | (b2 & 0x40) << 1
    return Bm1000Frame(
        signal_strength=b0 & 0x0F,
        no_signal=bool(b0 & 0x10),
        probe_unplugged=bool(b0 & 0x20),
        pulse_beep=bool(b0 & 0x40),
        pleth=b1,
        bargraph=b2 & 0x0F,
        no_finger=bool(b2 & 0x10),
        pulse_searching=bool(b2 & 0x20),
        pulse_rate=None if pulse == _PULSE_MISSING else pulse,
        spo2=None if b4 == _SPO2_MISSING else b4,
    )


def decode_bm1000(data: bytes) -> Bm1000Packet:
    """Decode whole, aligned frames; use :func:`split_bm1000_stream` to align a stream."""
    data = bytes(data)
    if not data:
        raise GattDecodeError(BM1000, 0, "no frame")
    if len(data) % BM1000_FRAME_SIZE:
        whole = len(data) - len(data) % BM1000_FRAME_SIZE
        raise GattDecodeError(BM1000, whole, f"{len(data)} bytes is not whole 5-byte frames")
    return Bm1000Packet(
        tuple(_frame(data, at) for at in range(0, len(data), BM1000_FRAME_SIZE))
    )


def split_bm1000_stream(buffer: bytes) -> tuple[bytes, bytes]:
    """Split a byte stream into (whole aligned frames, remainder to prepend next time).

    Bytes before the first sync byte, and frames broken by a sync byte in their middle,
    are dropped: BLE notifications need not start on a frame boundary.
    """
    frames = bytearray()
    i = 0
    n = len(buffer)
    while i < n:
        if not buffer[i] & 0x80:
            i += 1
            continue
        if n - i < BM1000_FRAME_SIZE:
            return bytes(frames), bytes(buffer[i:])
        body = buffer[i + 1 : i + BM1000_FRAME_SIZE]
        broken = next((k for k, b in enumerate(body) if b & 0x80), None)
        if broken is not None:
            i += 1 + broken
            continue
        frames += buffer[i : i + BM1000_FRAME_SIZE]
        i += BM1000_FRAME_SIZE
    return bytes(frames), b""
