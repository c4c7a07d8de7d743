"""Issue 13, print and export in Debian's chromium: printed (print media), the worklist and the
patient page lose navigation, forms and buttons and keep their content within the page width,
with who printed it and when; the patient page's export link downloads the readings as CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.backend.web._support import add_readings, sign_in
from tests.browser.test_worklist_browser import ARGS, CHROMIUM, _wait_ready

pytestmark = pytest.mark.browser

_HIDDEN_IN_PRINT = (".topbar", "form", "button", "#worklist-tools", "a.what-if", "a.export-link")


def test_worklist_and_patient_page_print_cleanly_and_readings_export(
    live: Any, world: Any, module_settings: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    _wait_ready(live.url)
    with psycopg.connect(module_settings.database_url, autocommit=True) as db:
        add_readings(db, patient_id=world.patient_id, agent_id=world.agent_id, device_id=world.device_id, days=3)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            ctx = browser.new_context(viewport={"width": 1280, "height": 900}, locale="da-DK", accept_downloads=True)
            page = ctx.new_page()
            sign_in(page, live.url, world.nurse)
            page.wait_for_url(f"{live.url}/worklist")
            pages = (("/worklist", "table.worklist"), (f"/patients/{world.patient_id}", "#readings table"))
            for path, content in pages:
                page.goto(f"{live.url}{path}")
                page.wait_for_selector(content)
                assert page.is_visible("button[data-print]") and not page.is_visible(".print-stamp")
                page.emulate_media(media="print")
                try:
                    for sel in _HIDDEN_IN_PRINT:
                        shown = page.eval_on_selector_all(
                            sel, "els => els.filter(e => e.offsetParent !== null || e.getClientRects().length)"
                                 ".length")
                        assert shown == 0, f"{path}: {sel} still shows in print ({shown})"
                    assert page.is_visible(content)
                    stamp = page.inner_text(".print-stamp")
                    assert "udskrevet" in stamp and page.inner_text(".print-stamp").strip()
                    # Nothing wider than the printed page (A4 at 96 dpi less the margins: ~700 px).
                    page.set_viewport_size({"width": 700, "height": 1000})
                    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
                    assert overflow <= 2, f"{path}: {overflow} px wider than the printed page"
                    pdf = page.pdf(format="A4")
                    assert pdf.startswith(b"%PDF") and len(pdf) > 5000
                finally:
                    page.emulate_media(media="screen")
                    page.set_viewport_size({"width": 1280, "height": 900})

            page.goto(f"{live.url}/patients/{world.patient_id}")
            with page.expect_download() as info:
                page.click("a.export-link")
            download = info.value
            target = tmp_path / download.suggested_filename
            download.save_as(target)
            text = target.read_text(encoding="utf-8-sig")
            lines = text.strip().splitlines()
            assert download.suggested_filename.startswith("maalinger-") and lines[0].startswith("Målt (")
            assert len(lines) > 3 * 4 and "Blodtryk" in text
        finally:
            browser.close()
