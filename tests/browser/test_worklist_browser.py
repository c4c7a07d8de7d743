"""Playwright drives Debian's chromium against the live app with ingest and alerting running:
a nurse logs in, a red alert from a reading published on the broker appears live (no reload),
she gives kvittering, opens the trend (the plot is checked in a screenshot), and is refused
another municipality's patient, which lands in the audit log."""

from __future__ import annotations

import json
import struct
import time
import uuid
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.backend.web._support import add_readings, sign_in

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SERIES_BLUE = (0x1F, 0x5F, 0xA8)  # the first series' stroke in static/trends.js


def decode_png(data: bytes) -> tuple[int, int, list[tuple[int, ...]]]:
    """(width, height, pixels) of an 8-bit RGB/RGBA PNG, as Chromium writes them."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    height = depth = color = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        ctype = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if ctype == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
        elif ctype == b"IDAT":
            idat += body
        pos += 12 + length
    assert depth == 8 and color in (2, 6), (depth, color)
    bpp = 3 if color == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytearray] = []
    prev = bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 0xFF
            elif f == 2:
                line[i] = (line[i] + b) & 0xFF
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(line)
        prev = line
    pixels = [tuple(r[x * bpp : x * bpp + 3]) for r in rows for x in range(width)]
    return width, height, pixels


def _publish_red_spo2(settings: Any, agent_id: str) -> str:
    import paho.mqtt.client as mqtt

    now = datetime.now(UTC).isoformat()
    mid = str(uuid.uuid4())
    env = {
        "schema": "1.0",
        "agent_id": agent_id,
        "sent_at": now,
        "measurements": [
            {
                "id": mid,
                "kind": "spo2",
                "values": {"spo2": 80.0},
                "unit": "%",
                "measured_at": now,
                "device_clock_trusted": True,
                "received_at": now,
                "device": {"address": "AA:BB:CC:DD:EE:01", "model": "UA-651BLE"},
                "quality": [],
            }
        ],
    }
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(settings.broker.host, settings.broker.port)
    client.loop_start()
    try:
        info = client.publish(settings.topics.measurements(agent_id), json.dumps(env), qos=1)
        info.wait_for_publish(10)
        assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()
    return mid


def _keep(page: Any, name: str) -> None:
    """NEARCARE_SCREENSHOTS=dir keeps full-page screenshots for a human to look at."""
    import os

    where = os.environ.get("NEARCARE_SCREENSHOTS")
    if where:
        page.screenshot(path=str(Path(where) / f"{name}.png"), full_page=True)


def _wait_ready(url: str) -> None:
    import httpx

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r = httpx.get(f"{url}/readyz")
        if r.status_code == 200:
            return
        time.sleep(0.2)
    raise AssertionError(f"app not ready: {r.text}")


@pytest.mark.browser
def test_nurse_sees_red_alert_live_kvitters_views_trend_and_is_refused_elsewhere(
    live: Any,
    world: Any,
    module_settings: Any,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import sync_playwright

    _wait_ready(live.url)
    with psycopg.connect(module_settings.database_url, autocommit=True) as db:
        add_readings(db, patient_id=world.patient_id, agent_id=world.agent_id, device_id=world.device_id, days=7)
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            args=ARGS,
            headless=True,
            viewport={"width": 1280, "height": 1000},
            locale="da-DK",
        )
        try:
            page = ctx.new_page()
            sign_in(page, live.url, world.nurse)
            page.wait_for_url(f"{live.url}/worklist")
            page.wait_for_selector("#live-status.on", timeout=10_000)
            assert page.locator('tr[data-severity="red"]').count() == 0
            page.evaluate("window.__noReload = 'still here'")

            _publish_red_spo2(module_settings, world.agent_id)
            t0 = time.monotonic()
            row = page.wait_for_selector(f'tr[data-severity="red"][data-patient="{world.patient_id}"]', timeout=20_000)
            arrived_s = time.monotonic() - t0
            assert arrived_s < 15
            assert page.evaluate("window.__noReload") == "still here"  # live, not a reload
            assert page.get_attribute("#worklist-rows", "data-refreshed")
            assert "Meget lav iltmætning" in row.inner_text() and "80" in row.inner_text()
            _keep(page, "worklist")

            # Kvittering with a note.
            form = page.locator(f'tr[data-patient="{world.patient_id}"] form.kvitter-form').first
            form.locator("input[name=note]").fill("Ringet op; iltmætning 80 bekræftet, læge orienteret")
            form.locator("button").click()
            page.wait_for_selector(
                f'tr[data-patient="{world.patient_id}"] .alert-line[data-state="acknowledged"]', timeout=10_000
            )
            with psycopg.connect(module_settings.database_url, autocommit=True) as db:
                state, note = db.execute(
                    "SELECT state, ack_note FROM alerts WHERE patient_id = %s AND severity = 'red'", (world.patient_id,)
                ).fetchone()
            assert state == "acknowledged" and note.startswith("Ringet op")

            # The trend: the plot is drawn (pixels of the series colour inside the plot canvas).
            page.click(f'tr[data-patient="{world.patient_id}"] a[href="/patients/{world.patient_id}"]')
            plot = page.wait_for_selector('#plot-spo2[data-rendered="1"] canvas', timeout=10_000)
            box = plot.bounding_box()
            assert box and box["width"] > 300 and box["height"] > 100
            _keep(page, "patient")
            png = page.screenshot(clip=box)
            w, h, pixels = decode_png(png)
            non_white = sum(1 for p in pixels if min(p) < 235)
            blue = sum(1 for p in pixels if all(abs(a - b) < 40 for a, b in zip(p, SERIES_BLUE, strict=True)))
            red_zone = sum(1 for p in pixels if p[0] > 230 and 200 < p[1] < 235 and 200 < p[2] < 235)
            assert non_white > 0.01 * w * h, non_white
            assert blue > 200, blue  # the SpO2 line and its points
            assert red_zone > 100, red_zone  # the red threshold band below 85 %
            marker = page.locator("figure", has=page.locator("#plot-spo2")).inner_text()
            assert "Iltmætning" in marker

            # Another municipality's patient: 403, and the attempt is in the audit log.
            resp = page.goto(f"{live.url}/patients/{world.other_patient_id}")
            assert resp is not None and resp.status == 403
            assert "Ingen adgang" in page.content()
        finally:
            ctx.close()
    with psycopg.connect(module_settings.database_url, autocommit=True) as db:
        row = db.execute(
            "SELECT actor, allowed, action, detail FROM audit_log WHERE patient_id = %s ORDER BY id DESC LIMIT 1",
            (world.other_patient_id,),
        ).fetchone()
    assert row[0].startswith(world.nurse) and row[1] is False and row[2] == "patient page" and "refused" in row[3]
