"""Device session recipes: what to do, in which order, once a peripheral is connected.

Every value that carries health data is handed to ``sink`` as a :class:`Capture` the moment
it arrives; the sink appends it to the spool before the recipe does anything else. A recipe
never decides that bytes are unimportant: bytes that do not decode are logged with their hex.

- :func:`standard_session`: the Bluetooth SIG profiles (0x1810, 0x181D, 0x1822, 0x1809,
  0x1808): set the clock where the device has one (Current Time 0x2A2B, else Date Time
  0x2A08), enable every measurement characteristic, fetch stored records with RACP where
  supported, then collect until the device disconnects or the timeout.
- :func:`and_session`: A&D UA-651BLE / UC-352BLE per A&D's sample code: read the firmware
  (0x2A26), write Date Time (0x2A08), only then enable the indication; the device sends what
  it has not sent before and disconnects itself.
- :func:`nonin_session`: Nonin 3230: continuous notifications about once a second; the reading
  is taken once SpO2 and pulse have been stable for ``stable_s`` seconds with the sensor
  correctly placed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from edge_agent.devices.transport import Transport
from edge_agent.errors import SessionError
from edge_agent.gatt import GattError, Reading, decode, readings_from
from edge_agent.gatt.nonin import NONIN_CONTINUOUS_UUID
from edge_agent.gatt.racp import RACP_RESPONSE_CODES, RacpMessage

log = logging.getLogger(__name__)

FIRMWARE_REVISION = "2A26"
MODEL_NUMBER = "2A24"
MANUFACTURER_NAME = "2A29"
SERIAL_NUMBER = "2A25"
DATE_TIME = "2A08"
CURRENT_TIME = "2A2B"
RACP = "2A52"
MEASUREMENTS = ("2A35", "2A9D", "2A5E", "2A5F", "2A1C", "2A18")
"""Blood pressure, weight, PLX spot-check, PLX continuous, temperature, glucose."""
AND_MEASUREMENTS = ("2A35", "2A9D")

Clock = Callable[[], datetime]
Sink = Callable[["Capture"], None]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Capture:
    """Health data as received: the raw bytes, when, and what they decode to."""

    characteristic: str
    data: bytes
    received_at: datetime
    readings: tuple[Reading, ...]


@dataclass(slots=True)
class SessionReport:
    address: str
    recipe: str
    firmware: str | None = None
    clock_set: str | None = None
    """Which characteristic the clock was written to (2A2B or 2A08), if any."""
    subscribed: list[str] = field(default_factory=list)
    racp: str | None = None
    """The RACP response to "report all stored records", by name."""
    captures: int = 0
    undecodable: int = 0
    ended: str = "running"
    """disconnected (by the device), timeout, stable (Nonin: reading taken) or no_stable_reading."""


def encode_date_time(at: datetime) -> bytes:
    """Date Time (0x2A08): year u16 LE, month, day, hours, minutes, seconds; device-local time."""
    return bytes([at.year & 0xFF, at.year >> 8, at.month, at.day, at.hour, at.minute, at.second])


def encode_current_time(at: datetime) -> bytes:
    """Current Time (0x2A2B): Date Time, day of week (Monday = 1), fractions256, adjust reason."""
    return encode_date_time(at) + bytes([at.isoweekday(), at.microsecond * 256 // 1_000_000, 0x01])


class _Collector:
    """Decodes notified bytes and hands every health value to the sink at once."""

    def __init__(self, report: SessionReport, sink: Sink, clock: Clock) -> None:
        self.report = report
        self.sink = sink
        self.clock = clock
        self.racp_response: asyncio.Future[RacpMessage] | None = None

    def capture(self, uuid: str) -> Callable[[bytes], None]:
        def on_value(data: bytes) -> None:
            received = self.clock()
            data = bytes(data)
            try:
                readings = readings_from(decode(uuid, data))
            except GattError as exc:
                self.report.undecodable += 1
                log.error("%s: undecodable %s value %s: %s", self.report.address, uuid, data.hex(), exc)
                return
            if readings:
                self.report.captures += 1
                self.sink(Capture(uuid, data, received, readings))

        return on_value

    def racp(self, data: bytes) -> None:
        try:
            msg = decode(RACP, bytes(data))
        except GattError as exc:
            log.error("%s: undecodable RACP value %s: %s", self.report.address, bytes(data).hex(), exc)
            return
        if (isinstance(msg, RacpMessage) and msg.response_code is not None
                and self.racp_response is not None and not self.racp_response.done()):
            self.racp_response.set_result(msg)


async def _read_text(t: Transport, uuid: str) -> str | None:
    if not t.has(uuid):
        return None
    raw = await t.read(uuid)
    return raw.decode("utf-8", errors="replace").strip("\x00 ") or None


async def _set_clock(t: Transport, report: SessionReport, device_now: datetime) -> None:
    for uuid, encode in ((CURRENT_TIME, encode_current_time), (DATE_TIME, encode_date_time)):
        if t.has(uuid) and t.properties(uuid) & {"write", "write-without-response"}:
            try:
                await t.write(uuid, encode(device_now), response="write" in t.properties(uuid))
            except Exception as exc:  # the session goes on; the reading's clock is judged later
                log.warning("%s: could not set the clock via %s: %s", t.address, uuid, exc)
                continue
            report.clock_set = uuid
            return


async def standard_session(
    t: Transport,
    sink: Sink,
    *,
    device_now: datetime,
    timeout: float = 60.0,
    racp_timeout: float = 30.0,
    clock: Clock = _utcnow,
) -> SessionReport:
    """``device_now`` is the agent's local wall time (naive) to write into the device clock."""
    report = SessionReport(t.address, "standard")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    collector = _Collector(report, sink, clock)
    report.firmware = await _read_text(t, FIRMWARE_REVISION)
    await _set_clock(t, report, device_now)
    for uuid in MEASUREMENTS:
        if t.has(uuid):
            await t.start_notify(uuid, collector.capture(uuid))
            report.subscribed.append(uuid)
    if not report.subscribed:
        raise SessionError(t.address, "no measurement characteristic found")
    if t.has(RACP):
        collector.racp_response = loop.create_future()
        await t.start_notify(RACP, collector.racp)
        await t.write(RACP, b"\x01\x01")
        try:
            msg = await asyncio.wait_for(collector.racp_response, min(racp_timeout, timeout))
            report.racp = RACP_RESPONSE_CODES.get(msg.response_code or 0, str(msg.response_code))
        except TimeoutError:
            report.racp = "no_response"
            log.warning("%s: no RACP response within %.0f s", t.address, racp_timeout)
    remaining = max(0.0, deadline - loop.time())
    report.ended = "disconnected" if await t.wait_disconnected(remaining) else "timeout"
    return report


async def and_session(
    t: Transport,
    sink: Sink,
    *,
    device_now: datetime,
    timeout: float = 120.0,
    clock: Clock = _utcnow,
) -> SessionReport:
    """A&D: firmware, then Date Time, only then the indication; the device hangs up itself."""
    report = SessionReport(t.address, "and")
    collector = _Collector(report, sink, clock)
    if not t.has(FIRMWARE_REVISION) or not t.has(DATE_TIME):
        raise SessionError(t.address, "A&D device without Firmware Revision or Date Time characteristic")
    report.firmware = await _read_text(t, FIRMWARE_REVISION)
    await t.write(DATE_TIME, encode_date_time(device_now), response=True)
    report.clock_set = DATE_TIME
    uuid = next((u for u in AND_MEASUREMENTS if t.has(u)), None)
    if uuid is None:
        raise SessionError(t.address, "A&D device without Blood Pressure or Weight Measurement")
    await t.start_notify(uuid, collector.capture(uuid))
    report.subscribed.append(uuid)
    if await t.wait_disconnected(timeout):
        report.ended = "disconnected"
    else:
        report.ended = "timeout"
        log.warning("%s: A&D device did not disconnect within %.0f s", t.address, timeout)
    return report


_NONIN_NOT_READY = {"sensor_displaced", "searching", "weak_signal"}


@dataclass(slots=True)
class StableReading:
    """Nonin: the reading is stable when the last ``seconds`` of good frames agree."""

    seconds: float = 4.0
    spo2_tolerance: float = 1.0
    pulse_tolerance: float = 5.0
    _window: list[tuple[datetime, float, float]] = field(default_factory=list)

    def add(self, at: datetime, readings: tuple[Reading, ...]) -> bool:
        by_kind = {r.kind.value: r for r in readings}
        spo2 = by_kind.get("spo2")
        pulse = by_kind.get("pulse")
        sv = spo2.values.get("spo2") if spo2 else None
        pv = pulse.values.get("pulse") if pulse else None
        bad = spo2 is None or bool(_NONIN_NOT_READY & set(spo2.quality))
        if bad or sv is None or pv is None:
            self._window.clear()
            return False
        self._window.append((at, sv, pv))
        # Keep only the frames inside the window (plus the one that opens it).
        while len(self._window) > 2 and (at - self._window[1][0]).total_seconds() >= self.seconds:
            self._window.pop(0)
        span = (at - self._window[0][0]).total_seconds()
        if span < self.seconds:
            return False
        spo2s = [s for _, s, _ in self._window]
        pulses = [p for _, _, p in self._window]
        return (max(spo2s) - min(spo2s) <= self.spo2_tolerance
                and max(pulses) - min(pulses) <= self.pulse_tolerance)


async def nonin_session(
    t: Transport,
    sink: Sink,
    *,
    stable_s: float = 4.0,
    timeout: float = 90.0,
    clock: Clock = _utcnow,
) -> SessionReport:
    report = SessionReport(t.address, "nonin")
    if not t.has(NONIN_CONTINUOUS_UUID):
        raise SessionError(t.address, "Nonin device without the continuous oximetry characteristic")
    stable = StableReading(seconds=stable_s)
    done = asyncio.Event()

    def on_value(data: bytes) -> None:
        if done.is_set():
            return
        at = clock()
        data = bytes(data)
        try:
            readings = readings_from(decode(NONIN_CONTINUOUS_UUID, data))
        except GattError as exc:
            report.undecodable += 1
            log.error("%s: undecodable Nonin frame %s: %s", t.address, data.hex(), exc)
            return
        if stable.add(at, readings):
            # The frame that completes the stable window is the reading; its raw bytes match it.
            report.captures += 1
            sink(Capture(NONIN_CONTINUOUS_UUID, data, at, readings))
            done.set()

    await t.start_notify(NONIN_CONTINUOUS_UUID, on_value)
    report.subscribed.append(NONIN_CONTINUOUS_UUID)
    finished = asyncio.ensure_future(done.wait())
    gone = asyncio.ensure_future(t.wait_disconnected(timeout))
    try:
        await asyncio.wait({finished, gone}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        device_left = gone.done() and not gone.cancelled() and gone.result()
    finally:
        for task in (finished, gone):
            task.cancel()
    if done.is_set():
        report.ended = "stable"
        await t.disconnect()
    else:
        report.ended = "no_stable_reading"
        log.warning("%s: no stable oximetry reading (sensor placement?) before %s", t.address,
                    "the device disconnected" if device_left else "the timeout")
    return report


async def run_recipe(
    recipe: str, t: Transport, sink: Sink, *, device_now: datetime, timeout: float, clock: Clock = _utcnow
) -> SessionReport:
    if recipe == "and":
        return await and_session(t, sink, device_now=device_now, timeout=max(timeout, 120.0), clock=clock)
    if recipe == "nonin":
        return await nonin_session(t, sink, timeout=timeout, clock=clock)
    return await standard_session(t, sink, device_now=device_now, timeout=timeout, clock=clock)
