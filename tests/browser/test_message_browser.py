"""Issue 13, a message to the citizen in Debian's chromium: the nurse follows the worklist row's
"Besked" link to the patient page, writes a message and sends it; the citizen reads it on their
own page, and Min Log says who sent it. A too long message is refused with the text kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from backend.messages.service import MAX_LENGTH
from tests.backend.web._support import sign_in, store_reading
from tests.browser.test_worklist_browser import ARGS, CHROMIUM, _wait_ready

pytestmark = pytest.mark.browser


def test_nurse_writes_from_the_worklist_and_the_citizen_reads_it(
    live: Any, world: Any, module_settings: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    _wait_ready(live.url)
    with psycopg.connect(module_settings.database_url, autocommit=True) as db:
        # An alert puts the citizen on the worklist.
        store_reading(db, live, patient_id=world.patient_id, agent_id=world.agent_id, kind="spo2",
                      components={"spo2": 80.0}, unit="%")
    text = "Vi ringer dig op i eftermiddag.\nMål gerne igen kl. 14."
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            nurse = browser.new_context(viewport={"width": 1280, "height": 900}, locale="da-DK").new_page()
            sign_in(nurse, live.url, world.nurse)
            nurse.wait_for_load_state()
            nurse.goto(f"{live.url}/worklist")
            nurse.click(f"#row-{world.patient_id} a.message-link", timeout=30_000)
            nurse.wait_for_url(f"**/patients/{world.patient_id}#messages")
            # Too long: the browser's maxlength stops typing, so the server's refusal is shown via a
            # form without it; the text comes back with the reason.
            nurse.eval_on_selector("#messages textarea", "e => e.removeAttribute('maxlength')")
            nurse.fill("#messages textarea", "x" * (MAX_LENGTH + 5))
            nurse.click("#messages button")
            nurse.wait_for_load_state()
            assert "Beskeden er for lang" in nurse.inner_text("main")
            assert nurse.input_value("textarea.kept-note") == "x" * (MAX_LENGTH + 5)
            nurse.goto(f"{live.url}/patients/{world.patient_id}#messages")
            nurse.fill("#messages textarea", text)
            nurse.click("#messages button")
            nurse.wait_for_url(f"**/patients/{world.patient_id}#messages")
            shown = nurse.inner_text("#messages table")
            assert "Vi ringer dig op i eftermiddag." in shown and "Ikke læst endnu" in shown

            citizen = browser.new_context(viewport={"width": 1280, "height": 900}, locale="da-DK").new_page()
            sign_in(citizen, live.url, world.citizen)
            citizen.wait_for_load_state()
            citizen.wait_for_url(f"{live.url}/me")
            box = citizen.inner_text("#messages")
            assert "Beskeder fra dit team" in box and "Mål gerne igen kl. 14." in box and "sygeplejerske" in box
            citizen.goto(f"{live.url}/min-log")
            assert "sendte dig en besked" in citizen.inner_text("main")

            nurse.reload()
            assert "Ikke læst endnu" not in nurse.inner_text("#messages table")  # read by the citizen
        finally:
            browser.close()
