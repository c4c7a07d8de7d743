"""Playwright drives Debian's chromium against the home screen of a real agent: a reading goes
through the real spool and Uplink to the broker (PUBACK), the backend's "stored" receipt comes
back over the broker, and a 7-inch-sized page shows "Modtaget" in large, high-contrast type."""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import pytest

from edge_agent.screen.server import ScreenServer, snapshot_of
from edge_agent.spool import Spool
from edge_agent.uplink import Uplink
from vitals.wire import Receipt

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def _luminance(css: str) -> float:
    r, g, b = (int(x) / 255 for x in re.findall(r"\d+", css)[:3])

    def lin(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b)


def _contrast(fg: str, bg: str) -> float:
    a, b = sorted((_luminance(fg), _luminance(bg)), reverse=True)
    return (a + 0.05) / (b + 0.05)


def _backend_sends_stored(broker, topics, agent_id: str, receipt: Receipt) -> None:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.connect(broker.host, broker.port)
    c.loop_start()
    try:
        c.publish(topics.receipts(agent_id), receipt.to_json(), qos=1).wait_for_publish(5)
    finally:
        c.disconnect()
        c.loop_stop()


@pytest.mark.browser
def test_citizen_sees_modtaget_after_a_real_reading_and_receipt(
    tmp_path: Path, broker, topics, agent_id: str, make_measurement
) -> None:
    from playwright.sync_api import sync_playwright

    spool = Spool(tmp_path / "spool.sqlite")
    uplink = Uplink(agent_id=agent_id, broker=broker, topics=topics, spool=spool, reconnect_min_s=0.2,
                    reconnect_max_s=1.0).start()
    server = ScreenServer(snapshot_of(spool, connected=lambda: uplink.connected, zone=ZoneInfo("Europe/Copenhagen")),
                          port=0).start()
    try:
        assert uplink.wait_connected(10)
        m = make_measurement(96.0)
        spool.append(m)
        assert uplink.wait_sent(10), "the broker never acknowledged the reading"
        _backend_sends_stored(broker, topics, agent_id,
                              Receipt(agent_id=agent_id, status="stored", ids=(m.id,), at=datetime.now(UTC)))
        deadline = time.monotonic() + 10
        while "stored" not in spool.receipts_for(m.id) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "stored" in spool.receipts_for(m.id)

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            try:
                page = browser.new_page(viewport={"width": 800, "height": 480}, locale="da-DK")
                page.goto(server.url)
                state = page.get_by_text("Modtaget", exact=True)
                state.wait_for(state="visible", timeout=5000)
                assert page.locator("#headline").inner_text() == "Alt er modtaget"
                assert page.locator("#today .val").inner_text() == "96 %"
                assert page.get_by_text("Forbundet", exact=True).is_visible()
                box = state.bounding_box()
                assert box is not None and box["y"] + box["height"] <= 480, "the state is below the fold"
                style = page.evaluate(
                    "() => { const h = getComputedStyle(document.querySelector('#headline'));"
                    " const b = getComputedStyle(document.body);"
                    " const s = getComputedStyle(document.querySelector('#today .state'));"
                    " return {h: parseFloat(h.fontSize), body: parseFloat(b.fontSize), fg: b.color,"
                    " bg: b.backgroundColor, state: s.color, stateSize: parseFloat(s.fontSize)}; }")
                assert style["h"] >= 36 and style["body"] >= 24 and style["stateSize"] >= 20, style
                assert _contrast(style["fg"], style["bg"]) >= 7 and _contrast(style["state"], style["bg"]) >= 7, style
                png = page.screenshot(path=str(tmp_path / "home-screen.png"))
                assert png[:8] == b"\x89PNG\r\n\x1a\n"
                if os.environ.get("NEARCARE_SCREENSHOTS"):  # for a human to look at; never committed
                    page.screenshot(path=str(Path(os.environ["NEARCARE_SCREENSHOTS"]) / "home-screen.png"))
            finally:
                browser.close()
    finally:
        server.stop()
        uplink.stop()
        spool.close()
