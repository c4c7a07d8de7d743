"""The bleak adapter: scan for this home's devices, connect, pair, run the device's recipe.

- Scanning uses a detection callback (registered before the scan starts) and reacts only to
  addresses in the device registry.
- Each session connects through ``bleak_retry_connector.establish_connection`` with a fresh
  ``BleakClient`` and a ``disconnected_callback`` (A&D devices hang up themselves).
- Pairing: connect first, then ``pair()``, with this agent's NoInputNoOutput BlueZ agent.
- Any Bluetooth fault (adapter gone, D-Bus error, BlueZ restarted) is logged and retried with
  a doubling back-off. The agent never dies of a Bluetooth fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak_retry_connector import establish_connection

from edge_agent.devices.recipes import (
    FIRMWARE_REVISION,
    MANUFACTURER_NAME,
    SERIAL_NUMBER,
    Capture,
    SessionReport,
    run_recipe,
)
from edge_agent.devices.registry import DeviceEntry, DeviceRegistry
from edge_agent.devices.transport import NotifyCallback
from vitals.wire import Device

log = logging.getLogger(__name__)

_SIG_BASE = "-0000-1000-8000-00805f9b34fb"


def full_uuid(uuid: str) -> str:
    u = uuid.strip().lower().removeprefix("0x")
    if len(u) == 4:
        return f"0000{u}{_SIG_BASE}"
    if len(u) == 8:
        return f"{u}{_SIG_BASE}"
    return u


class BleakTransport:
    """:class:`edge_agent.devices.transport.Transport` over a connected ``BleakClient``."""

    def __init__(self, client: BleakClient, disconnected: asyncio.Event) -> None:
        self.client = client
        self._disconnected = disconnected

    @property
    def address(self) -> str:
        return str(self.client.address).upper()

    @property
    def is_connected(self) -> bool:
        return bool(self.client.is_connected)

    def _char(self, uuid: str) -> BleakGATTCharacteristic | None:
        return self.client.services.get_characteristic(full_uuid(uuid))

    def has(self, uuid: str) -> bool:
        return self._char(uuid) is not None

    def properties(self, uuid: str) -> frozenset[str]:
        c = self._char(uuid)
        return frozenset(c.properties) if c is not None else frozenset()

    async def read(self, uuid: str) -> bytes:
        return bytes(await self.client.read_gatt_char(full_uuid(uuid)))

    async def write(self, uuid: str, data: bytes, *, response: bool = True) -> None:
        await self.client.write_gatt_char(full_uuid(uuid), data, response=response)

    async def start_notify(self, uuid: str, callback: NotifyCallback) -> None:
        def on_notify(_char: BleakGATTCharacteristic, data: bytearray) -> None:
            callback(bytes(data))

        await self.client.start_notify(full_uuid(uuid), on_notify)

    async def wait_disconnected(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._disconnected.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def disconnect(self) -> None:
        await self.client.disconnect()


@dataclass(slots=True)
class BleStats:
    sessions: int = 0
    failures: int = 0
    faults: int = 0
    last_report: SessionReport | None = None


class BleLoop:
    def __init__(
        self,
        *,
        registry: DeviceRegistry,
        sink_for: Callable[[Device], Callable[[Capture], None]],
        zone: tzinfo,
        adapter: str | None = None,
        session_timeout_s: float = 60.0,
        cooldown_s: float = 20.0,
        backoff_max_s: float = 60.0,
        pairing_agent: bool = True,
        on_session: Callable[[SessionReport], None] | None = None,
    ) -> None:
        self.registry = registry
        self.sink_for = sink_for
        self.zone = zone
        self.adapter = adapter
        self.session_timeout_s = session_timeout_s
        self.cooldown_s = cooldown_s
        self.backoff_max_s = backoff_max_s
        self.pairing_agent = pairing_agent
        self.on_session = on_session
        self.stats = BleStats()
        self._cooldown: dict[str, float] = {}
        self._agent_bus: Any = None
        self.pairing: Any = None
        """The exported :class:`edge_agent.pairing.PairingAgent`, once registered."""

    async def run(self, stop: asyncio.Event) -> None:
        """Scan and serve until ``stop``; every Bluetooth fault ends in a back-off, not a crash."""
        backoff = 1.0
        while not stop.is_set():
            try:
                await self._ensure_pairing_agent()
                await self._scan_and_serve(stop)
                backoff = 1.0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.stats.faults += 1
                await self._close_bus(self._agent_bus)
                self._agent_bus = None
                log.warning("bluetooth fault: %s: %s; retrying in %.0f s", type(exc).__name__, exc, backoff)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
                backoff = min(backoff * 2, self.backoff_max_s)
        await self._close_bus(self._agent_bus)
        self._agent_bus = None

    @staticmethod
    async def _close_bus(bus: Any) -> None:
        if bus is not None:
            try:
                bus.disconnect()
                await asyncio.wait_for(bus.wait_for_disconnect(), 5)
            except Exception:  # already gone
                log.debug("pairing agent bus already closed", exc_info=True)

    async def _ensure_pairing_agent(self) -> None:
        if not self.pairing_agent or self._agent_bus is not None:
            return
        from edge_agent.pairing import register_agent

        self._agent_bus, self.pairing = await register_agent(
            lambda address: self.registry.lookup(address) is not None
        )

    async def _scan_and_serve(self, stop: asyncio.Event) -> None:
        queue: asyncio.Queue[tuple[BLEDevice, DeviceEntry]] = asyncio.Queue()
        pending: set[str] = set()

        def detected(device: BLEDevice, adv: AdvertisementData) -> None:
            entry = self.registry.lookup(device.address)
            if entry is None or entry.address in pending:
                return
            if self._cooldown.get(entry.address, 0.0) > time.monotonic():
                return
            pending.add(entry.address)
            queue.put_nowait((device, entry))

        kwargs: dict[str, Any] = {"bluez": {"adapter": self.adapter}} if self.adapter else {}
        scanner = BleakScanner(detection_callback=detected, **kwargs)
        await scanner.start()
        log.info("scanning for %d registered device(s)", len(self.registry))
        try:
            while not stop.is_set():
                try:
                    device, entry = await asyncio.wait_for(queue.get(), 1.0)
                except TimeoutError:
                    continue
                try:
                    await self.session(device, entry)
                finally:
                    self._cooldown[entry.address] = time.monotonic() + self.cooldown_s
                    pending.discard(entry.address)
        finally:
            try:
                await scanner.stop()
            except Exception as exc:  # the adapter may already be gone
                log.debug("scanner stop failed: %s", exc)

    async def session(self, ble_device: BLEDevice, entry: DeviceEntry) -> SessionReport | None:
        """One connection to one device; failures are logged and counted, never raised."""
        disconnected = asyncio.Event()
        self.stats.sessions += 1
        try:
            client = await establish_connection(
                BleakClient, ble_device, entry.address,
                disconnected_callback=lambda _c: disconnected.set(), max_attempts=3,
            )
        except Exception as exc:
            self.stats.failures += 1
            log.warning("%s (%s): could not connect: %s", entry.address, entry.model, exc)
            return None
        try:
            if entry.pair:
                await client.pair()
            transport = BleakTransport(client, disconnected)
            device = Device(
                address=entry.address,
                model=entry.model,
                manufacturer=await _text(transport, MANUFACTURER_NAME),
                serial=await _text(transport, SERIAL_NUMBER),
                firmware=await _text(transport, FIRMWARE_REVISION),
            )
            report = await run_recipe(
                entry.recipe, transport, self.sink_for(device),
                device_now=datetime.now(UTC).astimezone(self.zone).replace(tzinfo=None),
                timeout=self.session_timeout_s,
            )
            log.info("%s (%s): session %s, %d capture(s), clock %s", entry.address, entry.model,
                     report.ended, report.captures, report.clock_set or "not set")
            self.stats.last_report = report
            if self.on_session is not None:
                self.on_session(report)
            return report
        except Exception as exc:
            self.stats.failures += 1
            log.warning("%s (%s): session failed: %s: %s", entry.address, entry.model, type(exc).__name__, exc)
            return None
        finally:
            # Also after the device hung up: bleak releases the session's D-Bus connection only
            # in disconnect(), and an agent that runs for months must not leak one per session.
            try:
                await client.disconnect()
            except Exception as exc:
                log.debug("%s: disconnect failed: %s", entry.address, exc)


async def _text(t: BleakTransport, uuid: str) -> str | None:
    if not t.has(uuid) or "read" not in t.properties(uuid):
        return None
    try:
        raw = await t.read(uuid)
    except Exception as exc:
        log.debug("%s: reading %s failed: %s", t.address, uuid, exc)
        return None
    return raw.decode("utf-8", errors="replace").strip("\x00 ")[:64] or None
