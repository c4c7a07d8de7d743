from __future__ import annotations

import asyncio
import time
from zoneinfo import ZoneInfo

import pytest
from dbus_fast import DBusError

from edge_agent.ble import BleLoop, full_uuid
from edge_agent.devices.registry import DeviceRegistry
from edge_agent.pairing import PairingAgent, address_from_path


def test_uuid_and_path_helpers() -> None:
    assert full_uuid("2A35") == "00002a35-0000-1000-8000-00805f9b34fb"
    assert full_uuid("0AAD7EA0-0D60-11E2-8E3C-0002A5D5C51B") == "0aad7ea0-0d60-11e2-8e3c-0002a5d5c51b"
    assert address_from_path("/org/bluez/hci0/dev_00_09_1F_8A_12_34") == "00:09:1F:8A:12:34"


def test_pairing_agent_accepts_only_registered_devices() -> None:
    agent = PairingAgent(lambda a: a == "00:09:1F:8A:12:34")
    agent._check("/org/bluez/hci0/dev_00_09_1F_8A_12_34", "confirmation")
    with pytest.raises(DBusError, match="not registered"):
        agent._check("/org/bluez/hci0/dev_66_66_66_66_66_66", "confirmation")
    assert agent.accepted == ["00:09:1F:8A:12:34"]


def test_a_missing_bluetooth_stack_is_retried_with_backoff_not_fatal(tmp_path, monkeypatch, caplog) -> None:
    # No BlueZ at all: the system bus address leads nowhere.
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path / 'no-bus'}")
    registry = DeviceRegistry.from_mapping({"devices": [{"address": "00:09:1F:8A:12:34", "model": "A&D UA-651BLE"}]})
    loop = BleLoop(registry=registry, sink_for=lambda d: lambda c: None, zone=ZoneInfo("Europe/Copenhagen"),
                   backoff_max_s=0.5)

    async def run() -> float:
        stop = asyncio.Event()
        task = asyncio.create_task(loop.run(stop))
        await asyncio.sleep(2.0)
        assert not task.done()  # still alive, backing off
        t0 = time.monotonic()
        stop.set()
        await asyncio.wait_for(task, 5)
        return time.monotonic() - t0

    stopped_in = asyncio.run(run())
    assert loop.stats.faults >= 2 and stopped_in < 1.5
    assert "bluetooth fault" in caplog.text and "retrying in" in caplog.text
