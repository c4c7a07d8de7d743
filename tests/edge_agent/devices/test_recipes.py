"""Session recipes against a fake peripheral built from byte vectors (there is no real device here)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from edge_agent.devices.recipes import (
    Capture,
    and_session,
    encode_current_time,
    encode_date_time,
    nonin_session,
    standard_session,
)
from edge_agent.errors import SessionError

NONIN = "0aad7ea0-0d60-11e2-8e3c-0002a5d5c51b"
# A&D UA-651BLE style: flags 0x1E (timestamp, pulse, user, status), 128/82/97 mmHg, 2026-11-22 07:30:00,
# pulse 72, user 1, status 0.
BP = bytes.fromhex("1e" "8000" "5200" "6100" "ea070b16071e00" "4800" "01" "0000")


class FakePeripheral:
    """Records every GATT operation in order; plays scripted notifications after start_notify."""

    def __init__(self, chars: dict[str, set[str]], *, reads: dict[str, bytes] | None = None,
                 on_subscribe: dict[str, list[bytes]] | None = None, on_write: dict[str, list[tuple[str, bytes]]] |
                 None = None, disconnect_after_s: float | None = None) -> None:
        self.address = "00:09:1F:00:00:01"
        self.chars = chars
        self.reads = reads or {}
        self.on_subscribe = on_subscribe or {}
        self.on_write = on_write or {}
        self.disconnect_after_s = disconnect_after_s
        self.log: list[tuple[str, str, bytes]] = []
        self.callbacks: dict[str, Callable[[bytes], None]] = {}
        self._gone = asyncio.Event()

    @property
    def is_connected(self) -> bool:
        return not self._gone.is_set()

    def has(self, uuid: str) -> bool:
        return uuid in self.chars

    def properties(self, uuid: str) -> frozenset[str]:
        return frozenset(self.chars.get(uuid, set()))

    async def read(self, uuid: str) -> bytes:
        self.log.append(("read", uuid, b""))
        return self.reads[uuid]

    async def write(self, uuid: str, data: bytes, *, response: bool = True) -> None:
        self.log.append(("write", uuid, data))
        for target, value in self.on_write.get(uuid, []):
            self.callbacks[target](value)

    async def start_notify(self, uuid: str, callback: Callable[[bytes], None]) -> None:
        self.log.append(("notify", uuid, b""))
        self.callbacks[uuid] = callback
        for value in self.on_subscribe.get(uuid, []):
            asyncio.get_running_loop().call_soon(callback, value)
        if self.disconnect_after_s is not None and uuid in ("2A35", "2A9D"):
            asyncio.get_running_loop().call_later(self.disconnect_after_s, self._gone.set)

    async def wait_disconnected(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._gone.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def disconnect(self) -> None:
        self.log.append(("disconnect", "", b""))
        self._gone.set()


NOW = datetime(2026, 11, 22, 7, 31, 5)


def test_and_reads_firmware_writes_clock_then_enables_indication_and_waits_for_hangup() -> None:
    dev = FakePeripheral({"2A26": {"read"}, "2A08": {"read", "write"}, "2A35": {"indicate"}},
                         reads={"2A26": b"1.07\x00"}, on_subscribe={"2A35": [BP]}, disconnect_after_s=0.05)
    got: list[Capture] = []
    report = asyncio.run(and_session(dev, got.append, device_now=NOW, timeout=5))
    assert [(op, u) for op, u, _ in dev.log] == [("read", "2A26"), ("write", "2A08"), ("notify", "2A35")]
    assert dev.log[1][2] == bytes.fromhex("ea070b16071f05") == encode_date_time(NOW)
    assert report.ended == "disconnected" and report.firmware == "1.07" and report.captures == 1
    (cap,) = got
    assert cap.data == BP and cap.characteristic == "2A35"
    bp, pulse = cap.readings
    assert bp.values == {"systolic": 128.0, "diastolic": 82.0, "mean_arterial": 97.0}
    assert bp.device_time == datetime(2026, 11, 22, 7, 30) and bp.clock_trusted and bp.user_index == 1
    assert pulse.values == {"pulse": 72.0}


def test_and_without_date_time_is_a_session_error() -> None:
    dev = FakePeripheral({"2A26": {"read"}, "2A35": {"indicate"}}, reads={"2A26": b"1"})
    with pytest.raises(SessionError, match="Date Time"):
        asyncio.run(and_session(dev, lambda c: None, device_now=NOW))


def test_standard_prefers_current_time_and_downloads_stored_records_with_racp() -> None:
    weight = bytes.fromhex("06" "3c3a" "ea070b16071e00" "02")  # 74.9 kg (14908 * 0.005)... user 2
    dev = FakePeripheral(
        {"2A2B": {"read", "write"}, "2A08": {"write"}, "2A9D": {"indicate"}, "2A52": {"write", "indicate"}},
        on_write={"2A52": [("2A9D", weight), ("2A52", bytes.fromhex("06000101"))]},
        disconnect_after_s=None,
    )
    got: list[Capture] = []

    async def run():
        task = asyncio.create_task(standard_session(dev, got.append, device_now=NOW, timeout=0.5))
        return await task

    report = asyncio.run(run())
    ops = [(op, u) for op, u, _ in dev.log]
    assert ops == [("write", "2A2B"), ("notify", "2A9D"), ("notify", "2A52"), ("write", "2A52")]
    assert dev.log[0][2] == encode_current_time(NOW)
    assert dev.log[3][2] == b"\x01\x01"  # report all stored records
    assert report.racp == "success" and report.ended == "timeout" and report.clock_set == "2A2B"
    (cap,) = got
    assert cap.readings[0].values == {"weight": 74.54} and cap.readings[0].user_index == 2


def test_undecodable_bytes_are_logged_with_their_hex_not_sunk(caplog) -> None:
    dev = FakePeripheral({"2A35": {"indicate"}}, on_subscribe={"2A35": [b"\x1e\x01"]}, disconnect_after_s=0.05)
    got: list[Capture] = []
    report = asyncio.run(standard_session(dev, got.append, device_now=NOW, timeout=2))
    assert got == [] and report.undecodable == 1 and "1e01" in caplog.text


def _nonin(spo2: int, pulse: int, status: int = 0x10) -> bytes:
    return bytes([10, status, 30, 0, 200, 0, 1, spo2, pulse >> 8, pulse & 0xFF])


class _Clock:
    def __init__(self) -> None:
        self.t = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.t += timedelta(seconds=1)  # one frame a second, like the 3230
        return self.t


def test_nonin_waits_for_a_stable_reading_with_the_sensor_placed() -> None:
    frames = ([_nonin(127, 511, 0x08)] * 3           # searching
              + [_nonin(93, 80), _nonin(97, 95)]      # placed but jumping
              + [_nonin(94, 81, 0x00)]                # finger out (CorrectCheck clear) resets the window
              + [_nonin(95, 78), _nonin(95, 79), _nonin(96, 78), _nonin(95, 80), _nonin(95, 79), _nonin(95, 79)])
    dev = FakePeripheral({NONIN: {"notify"}}, on_subscribe={NONIN: frames})
    got: list[Capture] = []
    report = asyncio.run(nonin_session(dev, got.append, stable_s=4, timeout=5, clock=_Clock()))
    assert report.ended == "stable" and ("disconnect", "", b"") in dev.log
    (cap,) = got
    # Window opens at the first 95/78 (t=7) and is stable 4 s later (t=11): the fifth good frame.
    assert cap.data == _nonin(95, 79)
    assert [r.values for r in cap.readings] == [{"spo2": 95.0}, {"pulse": 79.0}]


def test_nonin_without_stable_reading_times_out_and_sinks_nothing() -> None:
    frames = [_nonin(90 + (i % 2) * 5, 80) for i in range(10)]
    dev = FakePeripheral({NONIN: {"notify"}}, on_subscribe={NONIN: frames})
    got: list[Capture] = []
    report = asyncio.run(nonin_session(dev, got.append, stable_s=3, timeout=0.3, clock=_Clock()))
    assert report.ended == "no_stable_reading" and got == []
