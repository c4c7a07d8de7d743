"""Issue 13, the citizen's own pages in Debian's chromium: readings in words (no "blood_pressure",
no "mm[Hg]", no ".0"), the team's phone number and phone hours from the routing schedule, and
the clinician page of their own record is not theirs to see (they are sent to /me)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.backend.web._support import add_readings, sign_in
from tests.browser.test_worklist_browser import ARGS, CHROMIUM, _keep, _wait_ready

pytestmark = pytest.mark.browser


def test_citizen_sees_readings_in_words_and_whom_to_call_and_not_the_clinician_page(
    live: Any, world: Any, module_settings: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    _wait_ready(live.url)
    with psycopg.connect(module_settings.database_url, autocommit=True) as db:
        add_readings(db, patient_id=world.patient_id, agent_id=world.agent_id, device_id=world.device_id, days=2)
        db.execute("UPDATE teams SET phone = '87 13 00 00' WHERE municipality = %s", (world.municipality,))
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, args=ARGS, headless=True,
            viewport={"width": 1280, "height": 900}, locale="da-DK",
        )
        try:
            page = ctx.new_page()
            sign_in(page, live.url, world.citizen)
            page.wait_for_url(f"{live.url}/me")
            text = page.inner_text("main")
            assert "Blodtryk 1" in text and " mmHg" in text and "Iltmætning 9" in text and "Vægt 80" in text, text
            for code in ("blood_pressure", "mm[Hg]", "spo2:", ".0 ", "mean_arterial"):
                assert code not in text, code
            contact = page.inner_text("#team-contact")
            assert "87 13 00 00" in contact and "alle dage 07:00–22:00" in contact, contact
            assert page.get_attribute("#team-contact a[href^='tel:']", "href") == "tel:87130000"
            _keep(page, "citizen-me")

            page.goto(f"{live.url}/patients/{world.patient_id}")
            assert page.url == f"{live.url}/me"  # not the clinician page with nurse notes and forms
            assert page.locator("form[action*='/thresholds']").count() == 0

            page.goto(f"{live.url}/me?lang=en")
            text_en = page.inner_text("main")
            assert "Blood pressure 1" in text_en and "Call your team" in text_en and "every day" in text_en
        finally:
            ctx.close()
