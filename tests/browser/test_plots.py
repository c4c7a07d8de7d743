"""Issue 13, the specialist's plots in Debian's chromium: checked from what each plot drew (the
plot element's data-drawn/data-x-max/data-bands, written by static/trends.js from uPlot's own
scales) and from its pixels.

- every point in range is drawn, today's daily point included (it sits at 12:00 UTC, which is
  after "now" before 13:00 Danish time and was clipped);
- each band belongs to its own series: the systolic zones are on the systolic plot only, and the
  diastolic plot (no diastolic rule) has no red pixel under its normal line, where the systolic
  "red below 90 mmHg" zone used to be painted;
- SpO2's red zone is on the SpO2 axis and visible;
- alert openings and rejected readings are marked.
"""

from __future__ import annotations

import json
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.backend.web._support import add_readings, sign_in
from tests.browser.test_worklist_browser import ARGS, CHROMIUM, _keep, _wait_ready, decode_png

pytestmark = pytest.mark.browser


def _red_pixels(png: bytes) -> int:
    _, _, pixels = decode_png(png)
    # The red zone, rgba(200, 30, 30, 0.10) on white, is about (250, 230, 230): not a grey.
    return sum(1 for p in pixels if p[0] > 240 and 200 < p[1] < 238 and 200 < p[2] < 238 and p[0] - p[2] > 12)


@pytest.mark.parametrize("range_key", ["30d", "1y", "7d"])
def test_plots_draw_every_point_and_each_band_on_its_own_series(
    live: Any, world: Any, module_settings: Any, tmp_path: Path, range_key: str
) -> None:
    from playwright.sync_api import sync_playwright

    _wait_ready(live.url)
    now = datetime.now(UTC)
    tag = secrets.token_hex(3)
    with psycopg.connect(module_settings.database_url, autocommit=True) as db:
        pid = db.execute(
            "INSERT INTO patients (external_ref, name, programme, municipality) VALUES (%s, %s, 'heart_failure', %s)"
            " RETURNING id", (f"ref-{tag}", f"Hans Hjerte {tag}", world.municipality),
        ).fetchone()[0]
        agent = f"agent-{tag}"
        db.execute("INSERT INTO agents (id, patient_id) VALUES (%s, %s)", (agent, pid))
        # The shipped systolic limits (yellow <= 80, red >= 200, issue 11) lie outside these readings'
        # range; this citizen's own red limit of 135 puts a red zone inside it.
        from backend.alerting.thresholds import set_threshold_override

        set_threshold_override(db, patient_id=pid, rule_id="heart_failure.bp.systolic", field="red_high", value=135.0,
                               by="test", reason="a red zone inside the plotted range",
                               config=live.app.state.runtime.config)
        # Today's readings one minute ago: today's daily point (12:00 UTC) may lie after "now".
        add_readings(db, patient_id=pid, agent_id=agent, device_id=None, days=20, per_day=2,
                     now=now + timedelta(hours=2, minutes=59))
        db.execute(
            "INSERT INTO rejected_readings (id, measured_at, patient_id, agent_id, kind, components, unit, reason,"
            " envelope) VALUES (%s, %s, %s, %s, 'spo2', '{\"spo2\": 140}', '%%', 'implausible', '{}')",
            (uuid.uuid4(), now - timedelta(days=2), pid, agent),
        )
        db.execute(
            "INSERT INTO alerts (patient_id, rule_id, rule_kind, measurement, severity, state, title, opened_at,"
            " updated_at, team_key, owner_since) VALUES (%s, 'heart_failure.spo2.absolute', 'absolute', 'spo2',"
            " 'yellow', 'resolved', 'Lav iltmætning', %s, %s,"
            " (SELECT key FROM teams WHERE municipality = %s LIMIT 1), %s)",
            (pid, now - timedelta(days=3), now - timedelta(days=3), world.municipality, now - timedelta(days=3)),
        )
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, args=ARGS, headless=True,
            viewport={"width": 1280, "height": 1000}, locale="da-DK",
        )
        try:
            page = ctx.new_page()
            sign_in(page, live.url, world.nurse)
            page.wait_for_url(f"{live.url}/worklist")
            page.goto(f"{live.url}/patients/{pid}?range={range_key}")
            page.wait_for_selector('#plot-bp_diastolic[data-rendered="1"]', timeout=15_000)
            specs = {s["key"]: s for s in (json.loads(t) for t in page.eval_on_selector_all(
                "script[data-chart]", "ns => ns.map(n => n.textContent)"))}
            assert set(specs) == {"spo2", "pulse", "weight", "bp_systolic", "bp_diastolic"}
            newest_x = 0.0
            for key, spec in specs.items():
                el = page.locator(f"#plot-{key}")
                values = [v for s in spec["series"] for v in s["values"] if v is not None]
                assert values, key
                assert int(el.get_attribute("data-drawn")) == len(values), (key, el.get_attribute("data-drawn"))
                assert float(el.get_attribute("data-x-max")) >= max(spec["x"]), key
                newest_x = max(newest_x, max(spec["x"]))
                bands = json.loads(el.get_attribute("data-bands"))
                component = spec["series"][0]["component"]
                assert all(b["series"] == component for b in bands), (key, bands)
            if range_key != "7d":  # daily points: today's is at 12:00 UTC and is drawn
                today_noon = datetime(now.year, now.month, now.day, 12, tzinfo=UTC).timestamp()
                assert newest_x >= today_noon
            systolic = json.loads(page.get_attribute("#plot-bp_systolic", "data-bands"))
            zones = {(b["level"], b["from"], b["to"]) for b in systolic}
            assert zones >= {("yellow", None, 80.0), ("red", 135.0, None)}
            assert json.loads(page.get_attribute("#plot-bp_diastolic", "data-bands")) == []
            spo2 = json.loads(page.get_attribute("#plot-spo2", "data-bands"))
            assert spo2 and all(b["visible"] for b in spo2 if b["level"] == "red"), spo2
            assert len(specs["spo2"]["markers"]) == 2  # the alert's opening and the rejected reading
            assert {m["level"] for m in specs["spo2"]["markers"]} == {"yellow", "rejected"}

            _keep(page, f"plots-{range_key}")
            dia = _red_pixels(page.locator("#plot-bp_diastolic canvas").screenshot())
            sys_red = _red_pixels(page.locator("#plot-bp_systolic canvas").screenshot())
            assert dia == 0, dia  # no systolic zone under the diastolic line
            assert sys_red > 1000, sys_red  # the systolic red zones are drawn
        finally:
            ctx.close()
