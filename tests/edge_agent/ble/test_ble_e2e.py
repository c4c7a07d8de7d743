"""End to end: real bleak scans, connects, pairs, sets the clock and receives indications from
emulated 0x1810, 0x181D and 0x1822 peripherals on BlueZoo; the readings arrive as vitals
envelopes on the real Mosquitto."""

import asyncio
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from dbus_fast import BusType
from dbus_fast.aio import MessageBus

from edge_agent.ble import BleLoop
from edge_agent.devices import encode
from edge_agent.devices.registry import DeviceRegistry
from edge_agent.gatt import decode
from edge_agent.recorder import Recorder
from edge_agent.spool import Spool
from edge_agent.uplink import Uplink
from vitals.wire import parse_envelope

CPH = ZoneInfo("Europe/Copenhagen")


def _clock(data: bytes) -> datetime:
    value = decode("2A08", data[:7]).value
    assert value is not None
    return value


def bp_cuff(d, event: str, uuid: str, data: bytes) -> None:  # type: ignore[no-untyped-def]
    """A&D UA-651BLE: once the indication is enabled, send the new reading stamped with the
    clock the agent has just set, then hang up."""
    if event == "subscribe" and uuid == "2A35":
        stamp = _clock(d.writes["2A08"]) if "2A08" in d.writes else None
        payload = encode.blood_pressure(128, 82, 97, at=stamp, pulse=72, user=1, status=0)
        d.later(0.2, lambda: d.chars["2A35"].send(payload))
        d.later(1.0, d.disconnect_itself)


def scale(d, event: str, uuid: str, data: bytes) -> None:  # type: ignore[no-untyped-def]
    if event == "subscribe" and uuid == "2A9D":
        stamp = _clock(d.writes["2A2B"]) if "2A2B" in d.writes else None
        d.later(0.2, lambda: d.chars["2A9D"].send(encode.weight(82.35, at=stamp, user=1)))
        d.later(1.0, d.disconnect_itself)


def oximeter(d, event: str, uuid: str, data: bytes) -> None:  # type: ignore[no-untyped-def]
    """PLX with stored records: RACP "report all" sends two spot-checks, then the response."""
    if event == "write" and uuid == "2A52" and data == b"\x01\x01":
        now = _clock(d.writes["2A08"])
        d.later(0.1, lambda: d.chars["2A5E"].send(encode.plx_spot_check(94, 81, at=now - timedelta(hours=2))))
        d.later(0.3, lambda: d.chars["2A5E"].send(encode.plx_spot_check(96, 77, at=now - timedelta(hours=1))))
        d.later(0.5, lambda: d.chars["2A52"].send(bytes.fromhex("06000101")))
        d.later(1.2, d.disconnect_itself)


@pytest.mark.ble
def test_agent_reads_emulated_devices_over_real_bleak_and_publishes(
    bluezoo, emulation, tmp_path: Path, broker, topics, collect, agent_id: str
) -> None:
    bp_addr, scale_addr, oxi_addr = bluezoo.peripherals
    devices = [
        emulation.device(1, bp_addr, "A&D_UA-651", {
            "1810": {"2A35": (["indicate"], b""), "2A08": (["read", "write"], bytes(7))},
            "180A": {"2A26": (["read"], b"BLP008_d_017"), "2A29": (["read"], b"A&D Medical")},
        }, bp_cuff),
        emulation.device(2, scale_addr, "Scale", {
            "181D": {"2A9D": (["indicate"], b"")},
            "1805": {"2A2B": (["read", "write"], bytes(10))},
        }, scale),
        emulation.device(3, oxi_addr, "Oximeter", {
            "1822": {"2A5E": (["indicate"], b""), "2A52": (["write", "indicate"], b""),
                     "2A08": (["read", "write"], bytes(7))},
        }, oximeter),
    ]
    registry = DeviceRegistry.from_mapping({"devices": [
        {"address": bp_addr, "model": "A&D UA-651BLE", "users": {1: "Karen Jensen"}},
        {"address": scale_addr, "model": "Generic weight scale"},
        {"address": oxi_addr, "model": "PLX spot-check oximeter"},
    ]})
    col = collect(broker, topics.measurements(agent_id))
    spool = Spool(tmp_path / "spool.sqlite")
    uplink = Uplink(agent_id=agent_id, broker=broker, topics=topics, spool=spool, reconnect_min_s=0.2).start()
    recorder = Recorder(spool, zone=CPH)
    ble = BleLoop(registry=registry, sink_for=recorder.sink_for, zone=CPH, adapter="hci0",
                  session_timeout_s=15, cooldown_s=600)
    expected = 2 + 1 + 4  # bp + its pulse, weight, two stored spot-checks (spo2 + pulse each)

    async def scenario() -> tuple[object, object]:
        bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        for d in devices:
            await d.register(bus)
        stop = asyncio.Event()
        task = asyncio.create_task(ble.run(stop))
        deadline = time.monotonic() + 60
        while len(set(col.measurement_ids())) < expected and time.monotonic() < deadline and not task.done():
            await asyncio.sleep(0.2)
        stop.set()
        await asyncio.wait_for(task, 20)
        paired = await emulation.device_property(bp_addr, "Paired")
        scale_paired = await emulation.device_property(scale_addr, "Paired")
        bus.disconnect()
        await bus.wait_for_disconnect()
        return paired, scale_paired

    try:
        paired, scale_paired = asyncio.run(scenario())
        assert col.wait_for(lambda: len(set(col.measurement_ids())) >= expected, 10), (
            f"got {len(set(col.measurement_ids()))} of {expected}; ble stats {ble.stats}")
        assert uplink.wait_sent(10)
    finally:
        uplink.stop()
        spool.close()

    assert paired is True and scale_paired is False  # only the A&D cuff bonds (registry: pair)
    assert ble.pairing is not None and ble.stats.faults == 0
    bp_dev, scale_dev, oxi_dev = devices
    # A&D order: firmware read, Date Time written, and only then the indication enabled.
    log = bp_dev.log
    assert log.index(("read", "2A26")) < log.index(("write", "2A08")) < log.index(("notify", "2A35"))
    assert bp_dev.confirmations >= 1  # indications were confirmed
    assert ("write", "2A2B") in scale_dev.log and ("write", "2A52") in oxi_dev.log

    ms = {}
    for topic, payload, _ in col.messages:
        for m in parse_envelope(payload, topic=topic, topics=topics).measurements:
            ms.setdefault((m.device.address, m.kind.value, m.values.get("spo2")), m)
    bp = ms[(bp_addr, "blood_pressure", None)]
    assert bp.values == {"systolic": 128.0, "diastolic": 82.0, "mean_arterial": 97.0}
    assert bp.device_clock_trusted and bp.user_index == 1
    assert bp.device.firmware == "BLP008_d_017" and bp.device.manufacturer == "A&D Medical"
    # The cuff stamped the reading with the clock the agent wrote: local time in the agent's zone.
    assert bp.measured_at == _clock(bp_dev.writes["2A08"]).replace(tzinfo=CPH)
    assert abs((bp.received_at - bp.measured_at).total_seconds()) < 10
    assert bp.raw is not None and bp.raw.characteristic == "2A35"
    weight = ms[(scale_addr, "weight", None)]
    assert weight.values == {"weight": 82.35} and weight.device_clock_trusted
    spot = sorted((m for (a, k, _), m in ms.items() if a == oxi_addr and k == "spo2"), key=lambda m: m.measured_at)
    assert [m.values["spo2"] for m in spot] == [94.0, 96.0]
    assert all(m.device_clock_trusted for m in spot)
    assert spot[1].measured_at - spot[0].measured_at == timedelta(hours=1)
