"""``nearcare agent run``: the long-running agent with the real devices.

Spool first, then the uplink thread, then the Bluetooth loop on asyncio. SIGTERM/SIGINT stop
it cleanly (a retained "offline" status); SIGKILL or a power cut lose nothing that was spooled.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from edge_agent.ble import BleLoop
from edge_agent.devices.registry import load_registry
from edge_agent.recorder import Recorder
from edge_agent.screen.server import start_screen
from edge_agent.settings import AgentSettings
from edge_agent.spool import Spool
from edge_agent.uplink import Uplink

log = logging.getLogger(__name__)


def open_spool_and_uplink(settings: AgentSettings) -> tuple[Spool, Uplink]:
    spool = Spool(settings.spool_path, capacity=settings.spool_capacity)
    uplink = Uplink(
        agent_id=settings.agent_id,
        broker=settings.broker,
        topics=settings.topics,
        spool=spool,
        batch_size=settings.batch_size,
        status_interval_s=settings.status_interval_s,
        reconnect_min_s=settings.reconnect_min_s,
        reconnect_max_s=settings.reconnect_max_s,
        keepalive_s=settings.keepalive_s,
        resend_after_s=settings.resend_after_s,
        resend_max_s=settings.resend_max_s,
    )
    return spool, uplink


def run_agent(settings: AgentSettings) -> None:
    registry = load_registry(settings.devices_file)
    spool, uplink = open_spool_and_uplink(settings)
    fill = spool.fill()
    log.info("agent %s: %d registered device(s); spool %s holds %d reading(s) of %d",
             settings.agent_id, len(registry), settings.spool_path, fill.rows, fill.capacity)
    uplink.start()
    screen = start_screen(spool, connected=lambda: uplink.connected, zone=settings.zone,
                          host=settings.screen_host, port=settings.screen_port)
    recorder = Recorder(spool, zone=settings.zone, on_full=lambda _exc: uplink.publish_status_soon())
    ble = BleLoop(
        registry=registry,
        sink_for=recorder.sink_for,
        zone=settings.zone,
        adapter=settings.adapter,
        session_timeout_s=settings.session_timeout_s,
        cooldown_s=settings.reconnect_cooldown_s,
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await ble.run(stop)

    try:
        asyncio.run(main())
    finally:
        if screen is not None:
            screen.stop()
        uplink.stop()
        spool.close()
        log.info("agent %s stopped", settings.agent_id)
