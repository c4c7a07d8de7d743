"""Issue 13: the worklist with 40 citizens (a seeded scenario) at 1280x800 shows at least 15
rows without scrolling, never scrolls sideways at tablet width, and its screenshots are kept
for the README (NEARCARE_SCREENSHOTS=dir)."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.backend.web._support import sign_in
from tests.browser.test_worklist_browser import ARGS, CHROMIUM, _wait_ready

pytestmark = pytest.mark.browser

FIRST = ["Karen", "Ole", "Birthe", "Jens", "Inge", "Poul", "Hanne", "Erik", "Grethe", "Niels"]
LAST = ["Jensen", "Nielsen", "Hansen", "Pedersen", "Andersen", "Christensen", "Larsen", "Sørensen"]


def seed_forty(db: psycopg.Connection, municipality: str) -> None:
    """40 citizens: 4 red, 14 yellow, 4 blue, 2 technical, 6 handled, 10 green."""
    team = db.execute("SELECT key FROM teams WHERE municipality = %s ORDER BY id LIMIT 1",
                      (municipality,)).fetchone()[0]
    now = datetime.now(UTC)
    kinds = (["red"] * 4 + ["yellow"] * 14 + ["blue"] * 4 + ["technical"] * 2 + ["handled"] * 6 + ["green"] * 10)
    for i, kind in enumerate(kinds):
        tag = secrets.token_hex(3)
        pid = db.execute(
            "INSERT INTO patients (external_ref, name, programme, municipality) VALUES (%s, %s, %s, %s) RETURNING id",
            (f"R{tag}", f"{FIRST[i % 10]} {LAST[i % 8]}", "copd" if i % 3 else "heart_failure", municipality),
        ).fetchone()[0]
        db.execute("INSERT INTO agents (id, patient_id) VALUES (%s, %s)", (f"a-{tag}", pid))
        at = now - timedelta(minutes=7 * i + 3)
        if kind == "green":
            db.execute(
                "INSERT INTO measurements (id, measured_at, patient_id, agent_id, kind, value, components, unit,"
                " device_clock_trusted, agent_received_at) VALUES (gen_random_uuid(), %s, %s, %s, 'spo2', 95,"
                " '{\"spo2\": 95}', '%%', true, %s)", (at, pid, f"a-{tag}", at))
            continue
        sev = {"handled": "yellow"}.get(kind, kind)
        rule, title, value, th = {
            "red": ("copd.spo2.absolute", "Lav iltmætning", 84.0, {"red_low": 85, "yellow_low": 89}),
            "yellow": ("copd.spo2.absolute", "Lav iltmætning", 88.0, {"red_low": 85, "yellow_low": 89}),
            "blue": ("copd.missing", "Manglende måling", None, {}),
            "technical": ("technical.battery", "Lavt batteri i apparatet", None, {}),
        }[sev]
        db.execute(
            "INSERT INTO alerts (patient_id, rule_id, rule_kind, measurement, severity, state, title, opened_at,"
            " updated_at, last_value, thresholds, team_key, owner_since, escalation_due_at, acknowledged_by,"
            " acknowledged_at, ack_note) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (pid, rule, "absolute" if value else "missing", "spo2" if value else None, sev,
             "acknowledged" if kind == "handled" else "open", title, at, at, value, json.dumps(th), team, at,
             at + timedelta(minutes=30 if sev == "red" else 240),
             "Sara Test (sara)" if kind == "handled" else None, now if kind == "handled" else None,
             "Ringet op, aftalt ny måling" if kind == "handled" else None),
        )


def test_forty_citizens_fit_at_1280x800_and_at_tablet_width(
    live: Any, world: Any, module_settings: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    _wait_ready(live.url)
    with psycopg.connect(module_settings.database_url, autocommit=True) as db:
        seed_forty(db, world.municipality)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            for name, size in (("worklist-1280x800", (1280, 800)), ("worklist-tablet", (820, 1180))):
                page = browser.new_page(viewport={"width": size[0], "height": size[1]}, locale="da-DK")
                sign_in(page, live.url, world.nurse)
                page.wait_for_url(f"{live.url}/worklist")
                page.wait_for_selector("#live-status.on", timeout=15_000)
                rows = page.locator("#worklist-rows tr[data-patient]").count()
                assert rows >= 40, rows
                visible = page.evaluate(
                    "() => [...document.querySelectorAll('#worklist-rows tr[data-patient]')]"
                    ".filter(r => r.getBoundingClientRect().bottom <= window.innerHeight).length"
                )
                assert page.evaluate("document.documentElement.scrollWidth") <= size[0]
                _keep_viewport(page, name)
                if size == (1280, 800):
                    assert visible >= 15, visible
                page.close()
        finally:
            browser.close()


def _keep_viewport(page: Any, name: str) -> None:
    import os

    where = os.environ.get("NEARCARE_SCREENSHOTS")
    if where:
        page.screenshot(path=str(Path(where) / f"{name}.png"))
