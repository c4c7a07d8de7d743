"""Issue 13: one plain vocabulary. Every page, as every role, in Danish and in English, is read as
a person sees it (chromium's visible text) and fails on a code name (snake_case such as
``red_low`` or ``clock_not_set``, a UCUM unit such as ``mm[Hg]``), an untranslated catalogue key,
a raw JSON body or a Python repr; error pages are pages."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.backend.web._support import PASSWORD, add_readings, open_alert_id, sign_in, store_reading
from tests.browser.test_worklist_browser import ARGS, CHROMIUM, _wait_ready

pytestmark = pytest.mark.browser

CODE_NAME = re.compile(r"\b[a-z][a-z0-9]*_[a-z0-9_]+\b")
UCUM = re.compile(r"mm\[Hg\]|\[[a-z_]+\]|\{[a-z]+\}")
PY_REPR = re.compile(r"\bNone\b|\bTrue\b|\bFalse\b|datetime\.|UUID\(|\{'|\['")
ALLOWED = {"nearcare"}  # the product's name


@pytest.fixture(scope="module")
def database_url(pg_admin_url: str) -> Iterator[str]:
    """The crawl's own database: it reads every page as a person sees it, so what other tests
    (schemathesis among them) typed into the session's database must not be read as the
    product's words. The live app and the world of this module are built on it."""
    from backend.store import migrate
    from tests.conftest import create_database, drop_database

    name, url = create_database(pg_admin_url, "nearcare_crawl")
    try:
        migrate(url)
        yield url
    finally:
        drop_database(pg_admin_url, name)


def _problems(text: str, data: frozenset[str] = frozenset()) -> list[str]:
    out = []
    stripped = text.strip()
    if stripped.startswith(("{", "[")):
        try:
            json.loads(stripped)
            out.append("raw JSON body")
        except ValueError:
            pass
    out += [f"code name {m!r}" for m in CODE_NAME.findall(text) if m not in ALLOWED and m not in data and "@" not in m]
    out += [f"unit code {m!r}" for m in UCUM.findall(text)]
    out += [f"python repr {m!r}" for m in PY_REPR.findall(text)]
    return out


def _pages(world: Any, role: str, reading_id: str) -> list[str]:
    clinician = [
        "/worklist", "/patients", f"/patients/{world.patient_id}", f"/patients/{world.patient_id}?range=30d",
        f"/patients/{world.patient_id}?range=1y", f"/patients/{world.patient_id}?all=1",
        f"/patients/{world.patient_id}/readings/{reading_id}", "/population",
        "/patients/abc", "/patients/99999999", "/no-such-page",
    ]
    return {
        "nurse": clinician,
        "specialist": [*clinician[:2], f"/patients/{world.hospital_patient_id}", "/population", "/patients/abc"],
        "citizen": ["/me", "/min-log", "/worklist", f"/patients/{world.other_patient_id}", "/no-such-page"],
        "admin": ["/admin", "/audit", "/worklist", "/no-such-page"],
    }[role]


def test_every_page_as_every_role_in_both_languages_speaks_plain_words(
    live: Any, world: Any, module_settings: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    _wait_ready(live.url)
    with psycopg.connect(module_settings.database_url, autocommit=True) as db:
        add_readings(db, patient_id=world.patient_id, agent_id=world.agent_id, device_id=world.device_id, days=3)
        store_reading(db, live, patient_id=world.patient_id, agent_id=world.agent_id, kind="spo2",
                      components={"spo2": 80.0}, unit="%")
        open_alert_id(db, world.patient_id, "red", timeout=30)
        reading_id = str(db.execute(
            "SELECT id FROM measurements WHERE patient_id = %s AND kind = 'blood_pressure' LIMIT 1",
            (world.patient_id,)).fetchone()[0])
        db.execute(
            "INSERT INTO rejected_readings (id, measured_at, patient_id, agent_id, kind, components, unit, reason,"
            " envelope) VALUES (gen_random_uuid(), now(), %s, %s, 'spo2', '{\"spo2\": 140}', '%%',"
            " 'implausible: spo2 140 > 100', '{}')", (world.patient_id, world.agent_id))
        # A message from the nurse, so the citizen's page and the patient page show one.
        db.execute(
            "INSERT INTO citizen_messages (patient_id, body, sent_by_name, sent_by_role)"
            " VALUES (%s, 'Husk at måle i morgen.', 'Sara Test', 'nurse')", (world.patient_id,))
        # Names people chose (usernames, team keys, agent ids, patient references) are data, not
        # code names: other tests in the session (schemathesis among them) create them freely.
        data = frozenset(r[0] for r in db.execute(
            "SELECT username FROM users UNION SELECT key FROM teams UNION SELECT id FROM agents"
            " UNION SELECT external_ref FROM patients").fetchall())
    users = {"nurse": world.nurse, "specialist": world.specialist, "citizen": world.citizen, "admin": world.admin}
    found: dict[str, list[str]] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            for role, username in users.items():
                for lang in ("da", "en"):
                    ctx = browser.new_context(locale="da-DK", viewport={"width": 1280, "height": 900})
                    page = ctx.new_page()
                    page.goto(f"{live.url}/login?lang={lang}")
                    page.fill("input[name=username]", username)
                    page.fill("input[name=password]", PASSWORD)
                    page.click("button[type=submit]")
                    page.wait_for_load_state()
                    for path in _pages(world, role, reading_id):
                        resp = page.goto(f"{live.url}{path}")
                        assert resp is not None
                        ctype = resp.headers.get("content-type", "")
                        key = f"{role}/{lang} {path} ({resp.status})"
                        if not ctype.startswith("text/html"):
                            found[key] = [f"not a page: {ctype}"]
                            continue
                        text = page.evaluate(
                            "() => { document.querySelectorAll('details').forEach(d => d.open = true);"
                            " return document.body.innerText; }"
                        )
                        problems = _problems(text, data)
                        if problems:
                            found[key] = sorted(set(problems))
                    ctx.close()
        finally:
            browser.close()
    assert not found, "\n".join(f"{k}: {v}" for k, v in found.items())


def test_the_thresholds_form_speaks_plain_words(live: Any, world: Any, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    _wait_ready(live.url)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page()
            sign_in(page, live.url, world.nurse)
            page.wait_for_load_state()
            page.goto(f"{live.url}/patients/{world.patient_id}")
            text = page.inner_text("#thresholds")
            assert _problems(text) == []
            for code in ("red_low", "yellow_high", "min_sd", "window_hours"):
                assert code not in text
            # Whole numbers without ".0", in the form's inputs too; units beside the values.
            values = page.eval_on_selector_all("#thresholds input[name=value]", "els => els.map(e => e.value)")
            assert values and not [v for v in values if v.endswith(".0") or v.endswith(",0")], values
            assert not re.search(r"\b\d+\.0\b", text), text
            assert "%" in text and "Rød alarm under" in text
            # A value that is not a number is refused in Danish, with what was typed.
            form = page.locator("#thresholds form.threshold-form").first
            form.locator("input[name=value]").fill("abc")
            form.locator("input[name=reason]").fill("prøver")
            form.locator("button[value=set]").click()
            page.wait_for_load_state()
            body = page.inner_text("body")
            assert "Ikke et tal: 'abc'" in body, body
            assert "Not a number" not in body
        finally:
            browser.close()
