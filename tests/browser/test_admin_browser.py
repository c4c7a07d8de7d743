"""Issue 13, the operator in Debian's chromium, and issue 12's four-eyes: a device with a bad
address is not sent, a good one is registered, corrected and removed from the device list; the
gateway table has "Seneste måling" and "Seneste kontakt"; an account one admin creates logs in
only after the other approves it and then sets her own password; the login page warns before the
delay sets in."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import psycopg
import pytest

from backend.accounts.store import create_user
from tests.backend.web._support import PASSWORD, sign_in
from tests.browser.test_worklist_browser import ARGS, CHROMIUM, _keep, _wait_ready

pytestmark = pytest.mark.browser


def test_the_operator_registers_corrects_and_removes_a_device_and_a_second_admin_approves(
    live: Any, world: Any, module_settings: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    _wait_ready(live.url)
    second = f"admin-b-{secrets.token_hex(3)}"
    with psycopg.connect(module_settings.database_url, autocommit=True) as db:
        create_user(db, username=second, display_name="Bo Browser", role="admin", password=PASSWORD)
    nurse = f"ny-{secrets.token_hex(3)}"
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, args=ARGS, headless=True,
            viewport={"width": 1280, "height": 900}, locale="da-DK",
        )
        try:
            page = ctx.new_page()
            sign_in(page, live.url, world.admin, lang="da")
            page.wait_for_url(f"{live.url}/admin")
            assert page.inner_text("#gateways thead").split("\t")[3:5] == ["Seneste måling", "Seneste kontakt"]

            form = page.locator("#register-device")
            form.locator("input[name=agent_id]").fill(world.agent_id)
            form.locator("input[name=address]").fill("not-a-mac")
            form.locator("button").click()
            assert page.url.endswith("/admin")  # not sent: the address field is invalid
            assert form.locator("input[name=address]:invalid").count() == 1
            form.locator("input[name=address]").fill("00:1c:05:aa:bb:01")
            form.locator("select[name=model]").select_option("Nonin 3230")
            form.locator("input[name=serial]").fill("SN-B1")
            form.locator("button").click()
            page.wait_for_selector("p[role=status]")
            assert page.inner_text("p[role=status]") == "Apparat registreret."
            row = page.locator("#devices tr", has=page.locator("input[value='00:1C:05:AA:BB:01']"))
            assert row.count() == 1
            row.locator("select[name=model]").select_option("Nonin WristOx2 3150")
            row.locator("button", has_text="Gem").click()
            page.wait_for_selector("p[role=status]")
            assert page.inner_text("p[role=status]") == "Apparat ændret."
            row = page.locator("#devices tr", has=page.locator("input[value='00:1C:05:AA:BB:01']"))
            assert row.locator("select[name=model]").input_value() == "Nonin WristOx2 3150"
            row.locator("button", has_text="Fjern").click()
            page.wait_for_selector("p[role=status]")
            assert page.inner_text("p[role=status]") == "Apparat fjernet fra gatewayen."
            assert page.locator("#devices input[value='00:1C:05:AA:BB:01']").count() == 0
            _keep(page, "admin-devices")

            # Four-eyes: the new nurse waits for the other admin.
            user_form = page.locator("#create-user")
            user_form.locator("input[name=username]").fill(nurse)
            user_form.locator("input[name=display_name]").fill("Ny Browser")
            user_form.locator("select[name=role]").select_option("nurse")
            user_form.locator("input[name=password]").fill("browser-pass-12")
            user_form.locator("input[name=team_key]").fill(f"sygepleje-{world.tag}")
            user_form.locator("button").click()
            page.wait_for_selector("#awaiting-approval")
            waiting = page.locator(f"#awaiting-approval tr[data-user='{nurse}']")
            assert "skal godkendes af en anden administrator" in waiting.inner_text()
            assert waiting.locator("button").count() == 0
            _keep(page, "admin-awaiting")
            page.click("form[action='/logout'] button")

            sign_in(page, live.url, nurse, "browser-pass-12", lang="da")
            assert page.inner_text("p[role=alert]") == "Kontoen afventer godkendelse af en anden administrator."

            sign_in(page, live.url, second, lang="da")
            page.wait_for_url(f"{live.url}/admin")
            page.locator(f"#awaiting-approval tr[data-user='{nurse}'] button", has_text="Godkend").click()
            page.wait_for_selector("p[role=status]")
            assert page.inner_text("p[role=status]") == f"Bruger {nurse} godkendt."
            page.click("form[action='/logout'] button")

            # The nurse logs in; a wrong password first is warned about before any delay.
            sign_in(page, live.url, nurse, "wrong-password", lang="da")
            assert "2 forsøg tilbage" in page.inner_text("p[role=alert]")
            sign_in(page, live.url, nurse, "browser-pass-12", lang="da")
            # The password the admin chose is not the nurse's own: she sets hers first (ASVS 2.3.1).
            assert "Vælg din egen" in page.inner_text("p[role=alert]")
            change = page.locator("#change-password")
            change.locator("input[name=password]").fill("browser-pass-12")
            change.locator("input[name=new_password]").fill("nurse-own-pass-1")
            change.locator("input[name=repeat]").fill("nurse-own-pass-1")
            change.locator("button").click()
            page.wait_for_url(f"{live.url}/worklist")
        finally:
            ctx.close()
