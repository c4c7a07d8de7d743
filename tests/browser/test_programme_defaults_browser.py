"""Issue 11 item 5 in Debian's chromium, the programme side: an admin opens the COPD programme's
settings, follows a threshold's what-if link, proposes a value, sees the figures (those the API
gives for the same proposal), saves it as the programme default with a reason, and lands on the
settings page with the new value in force and the change in the programme's threshold audit."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest

from alert_rules.loader import load_ruleset
from backend.web.threshold_form import value_text
from tests.backend.web._support import add_readings, api_token, sign_in
from tests.browser.test_worklist_browser import ARGS, CHROMIUM, _wait_ready

RULE, FIELD = "copd.spo2.absolute", "red_low"


@pytest.mark.browser
def test_an_admin_saves_a_programme_default_after_its_what_if(live: Any, world: Any, module_settings: Any) -> None:
    from playwright.sync_api import sync_playwright

    packaged = float(load_ruleset().by_id[RULE].default_thresholds()[FIELD])  # the rule files change: read it
    new = packaged + 2
    _wait_ready(live.url)
    with psycopg.connect(module_settings.database_url, autocommit=True) as db:
        add_readings(db, patient_id=world.patient_id, agent_id=world.agent_id, device_id=world.device_id, days=10)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            try:
                page = browser.new_context(viewport={"width": 1280, "height": 1000}, locale="da-DK").new_page()
                sign_in(page, live.url, world.admin)
                page.wait_for_load_state()
                page.goto(f"{live.url}/programmes/copd/thresholds")
                row = f'tr[data-rule="{RULE}"][data-field="{FIELD}"]'
                assert page.inner_text(f"{row} .in-force").startswith(value_text(packaged, "da"))
                page.click(f"{row} a.what-if")
                page.wait_for_url("**/programmes/copd/what-if?**")
                page.fill("input[name=value]", value_text(new, "da"))
                page.click("#what-if-run")
                page.wait_for_selector("#what-if-result", timeout=30_000)
                shown = {side: {k: int(page.inner_text(f"#{side}-{k.replace('_', '-')}"))
                                for k in ("alerts", "alert_days", "red")} for side in ("current", "proposed")}
                with httpx.Client(base_url=live.url, timeout=60) as client:
                    api = client.post("/api/v1/programmes/copd/thresholds/what-if",
                                      headers={"Authorization": f"Bearer {api_token(client, world.admin)}"},
                                      json={"changes": [{"rule_id": RULE, "field": FIELD, "value": new}]})
                assert api.status_code == 200, api.text
                assert shown == {"current": api.json()["current"], "proposed": api.json()["proposed"]}
                assert page.inner_text("#proposal-words").endswith(f"{value_text(new, 'da')} %")
                page.fill("#save-programme-default input[name=reason]", "regional instruks, skærpet")
                page.click("#save-programme-default-button")
                page.wait_for_url("**/programmes/copd/thresholds#programme-threshold-audit")
                assert page.inner_text(f"{row} .in-force").startswith(value_text(new, "da"))
                first = page.locator("#programme-threshold-audit tbody tr").first
                cells = [c.strip() for c in first.locator("td").all_inner_texts()]
                assert world.admin in cells[1] and cells[5] == "regional instruks, skærpet"
                assert cells[3].startswith(value_text(packaged, "da")) and cells[4].startswith(value_text(new, "da"))
            finally:
                browser.close()
        with psycopg.connect(module_settings.database_url, autocommit=True) as db:
            saved = db.execute("SELECT value, reason FROM alert_programme_defaults WHERE programme = 'copd'"
                               " AND rule_id = %s AND field = %s", (RULE, FIELD)).fetchone()
        assert saved == (new, "regional instruks, skærpet")
    finally:
        with psycopg.connect(module_settings.database_url, autocommit=True) as db:
            db.execute("DELETE FROM alert_programme_defaults WHERE programme = 'copd'")
