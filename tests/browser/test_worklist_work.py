"""Issue 13, the nurse's worklist in Debian's chromium against the live app (ingest and rules
running): each finding reproduced and shown fixed.

- a half-typed note and its focus survive three live refresh cycles and a change to the same
  row, and the live badge never says "offline" across the stream's reconnects;
- handled rows (kvitteret, snoozed with "udsat til") sit muted below the rows needing action,
  without a Kvittér button; counts say "1 røde";
- "Kvittér alle grønne" acts on exactly the rows shown (search applied), says how many and asks
  once; a patient whose yellow alert is kvitteret is never marked seen by it;
- an empty note and a note over 2,000 characters are refused in Danish and the text is kept;
  a 400-character word does not widen the page;
- an alert line says the value with its unit, the limit crossed and when it was measured;
- a manual handover to another team is one action, recorded per alert and in the audit log.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.backend.web._support import PASSWORD, add_readings, open_alert_id, store_reading
from tests.browser.test_worklist_browser import ARGS, CHROMIUM, _keep, _wait_ready

pytestmark = pytest.mark.browser


@dataclass
class Ward:
    red: int
    snoozed: int
    acked_yellow: int
    greens: dict[str, int]
    """name -> patient id."""
    team2: str
    tag: str


def _patient(db: psycopg.Connection, municipality: str, name: str, programme: str = "copd") -> tuple[int, str]:
    tag = secrets.token_hex(3)
    row = db.execute(
        "INSERT INTO patients (external_ref, name, programme, municipality) VALUES (%s, %s, %s, %s) RETURNING id",
        (f"ref-{tag}", name, programme, municipality),
    ).fetchone()
    assert row
    agent = f"agent-{tag}"
    db.execute("INSERT INTO agents (id, patient_id) VALUES (%s, %s)", (agent, row[0]))
    return int(row[0]), agent


@pytest.fixture(scope="module")
def ward(live: Any, world: Any, module_settings: Any) -> Ward:
    """In the nurse's municipality: a red SpO2 alert, a snoozed yellow, a kvitteret yellow (with
    new readings since), four green citizens, and a second team to hand over to."""
    from backend.alerting import service

    _wait_ready(live.url)
    tag = world.tag
    with psycopg.connect(module_settings.database_url, autocommit=True) as db:
        team2 = f"akut-{tag}"
        db.execute(
            "INSERT INTO teams (key, name, sector, municipality) VALUES (%s, %s, 'municipal', %s)",
            (team2, f"Akutteam {tag}", world.municipality),
        )
        red, red_agent = _patient(db, world.municipality, f"Alma Rød {tag}")
        store_reading(db, live, patient_id=red, agent_id=red_agent, kind="spo2", components={"spo2": 80.0}, unit="%")
        # one reading that opens a yellow alert under the shipped rules: SpO2 92 % in heart failure
        # (NEWS2 scale 1 band; a COPD citizen's watch band is personal, issue 11)
        snoozed, s_agent = _patient(db, world.municipality, f"Bent Udsat {tag}", "heart_failure")
        store_reading(db, live, patient_id=snoozed, agent_id=s_agent, kind="spo2", components={"spo2": 92.0},
                      unit="%")
        acked, a_agent = _patient(db, world.municipality, f"Cille Kvitteret {tag}", "heart_failure")
        store_reading(db, live, patient_id=acked, agent_id=a_agent, kind="spo2", components={"spo2": 92.0}, unit="%")
        open_alert_id(db, red, "red", timeout=30)
        s_alert = open_alert_id(db, snoozed, "yellow", timeout=30)
        a_alert = open_alert_id(db, acked, "yellow", timeout=30)
        db.execute(
            "UPDATE alerts SET snoozed_until = now() + interval '4 hours', snooze_reason = 'ring i eftermiddag'"
            " WHERE id = %s", (s_alert,),
        )
        with psycopg.connect(module_settings.database_url) as tx:
            service.acknowledge(tx, alert_id=a_alert, by="Sara Test (sara)", note="set", topics=module_settings.topics)
            tx.commit()
        add_readings(db, patient_id=acked, agent_id=a_agent, device_id=None, days=1, per_day=1)
        greens: dict[str, int] = {}
        for name in ("Grøn A1", "Grøn A2", "Grøn B1", "Grøn B2"):
            pid, agent = _patient(db, world.municipality, f"{name} {tag}")
            add_readings(db, patient_id=pid, agent_id=agent, device_id=None, days=1, per_day=1)
            greens[name] = pid
    return Ward(red=red, snoozed=snoozed, acked_yellow=acked, greens=greens, team2=team2, tag=tag)


@pytest.fixture
def page(live: Any, world: Any, tmp_path: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, args=ARGS, headless=True,
            viewport={"width": 1280, "height": 800}, locale="da-DK",
        )
        try:
            pg = ctx.new_page()
            pg.goto(f"{live.url}/login")
            pg.fill("input[name=username]", world.nurse)
            pg.fill("input[name=password]", PASSWORD)
            pg.click("button[type=submit]")
            pg.wait_for_url(f"{live.url}/worklist")
            pg.wait_for_selector("#live-status.on", timeout=15_000)
            yield pg
        finally:
            ctx.close()


def _row(page: Any, pid: int) -> Any:
    return page.locator(f'tr[data-patient="{pid}"]')


def test_a_typed_note_and_its_focus_survive_three_refreshes_and_a_change_to_the_row(
    live: Any, ward: Ward, world: Any, module_settings: Any, page: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backend.web import routes

    # Streams end every 2 s instead of 25 s: three reconnects (each re-reads the rows) in seconds.
    monkeypatch.setattr(routes, "SSE_LIFETIME_S", 2.0)
    page.reload()
    page.wait_for_selector("#live-status.on", timeout=15_000)
    page.evaluate("""() => {
        window.__status = [];
        new MutationObserver(() => window.__status.push(document.getElementById('live-status').className))
            .observe(document.getElementById('live-status'), {attributes: true, childList: true});
        window.__refreshes = 0;
        new MutationObserver(() => window.__refreshes++)
            .observe(document.getElementById('worklist-rows'), {attributes: true, attributeFilter: ['data-refreshed']});
    }""")
    note = _row(page, ward.red).locator(".alert-line input[name=note]").first
    note.click()
    page.keyboard.type("Ringet op, iltmætning ")
    page.wait_for_function("() => window.__refreshes >= 3", timeout=30_000)

    # A new red reading for the same citizen changes the row while the nurse types.
    with psycopg.connect(module_settings.database_url, autocommit=True) as db:
        agent = db.execute("SELECT id FROM agents WHERE patient_id = %s", (ward.red,)).fetchone()[0]
        before = db.execute("SELECT updated_at FROM alerts WHERE patient_id = %s AND state = 'open'",
                            (ward.red,)).fetchone()[0]
        store_reading(db, live, patient_id=ward.red, agent_id=agent, kind="spo2", components={"spo2": 84.0},
                      unit="%")
        deadline = time.monotonic() + 30
        while db.execute("SELECT updated_at FROM alerts WHERE patient_id = %s AND state = 'open'",
                         (ward.red,)).fetchone()[0] == before:
            assert time.monotonic() < deadline, "the second red reading was not evaluated"
            time.sleep(0.1)
    page.wait_for_function(
        f"() => document.querySelector('tr[data-patient=\"{ward.red}\"] .alert-line').textContent.includes('84')",
        timeout=20_000,
    )
    page.keyboard.type("bekræftet")  # the caret is still where it was
    assert note.input_value() == "Ringet op, iltmætning bekræftet"
    assert page.evaluate("document.activeElement.name") == "note"
    assert page.evaluate("window.__refreshes") >= 4
    assert "live off" not in page.evaluate("window.__status"), page.evaluate("window.__status")
    assert page.get_attribute("#live-status", "class") == "live on"

    # The line explains the alert: worst value with unit, the limit crossed, the measurement time.
    line = _row(page, ward.red).locator(".alert-line").first.inner_text()
    assert "værst 80 %, senest 84 %" in line and "under grænsen 85 %" in line, line
    assert "målt" in line and "alarm oprettet" in line, line
    assert ".0" not in line
    _keep(page, "worklist-typing")

    page.keyboard.press("Enter")  # submits the note's form
    page.wait_for_selector(f'tr[data-patient="{ward.red}"][data-handled="1"]', timeout=15_000)
    with psycopg.connect(module_settings.database_url, autocommit=True) as db:
        row = db.execute("SELECT state, ack_note FROM alerts WHERE patient_id = %s AND severity = 'red'",
                         (ward.red,)).fetchone()
    assert row == ("acknowledged", "Ringet op, iltmætning bekræftet")


def test_handled_rows_are_muted_below_with_udsat_til_and_no_kvitter(ward: Ward, page: Any) -> None:
    order = page.eval_on_selector_all(
        "#worklist-rows tr[data-patient]", "rs => rs.map(r => [+r.dataset.patient, r.dataset.handled])"
    )
    handled_at = [i for i, (_, h) in enumerate(order) if h == "1"]
    pending_at = [i for i, (pid, h) in enumerate(order) if h == "0" and pid not in ward.greens.values()]
    assert handled_at and max(pending_at, default=-1) < min(handled_at), order
    snoozed = _row(page, ward.snoozed)
    assert snoozed.get_attribute("data-handled") == "1"
    assert "udsat til" in snoozed.inner_text()
    assert snoozed.locator("form.kvitter-form").count() == 0
    acked = _row(page, ward.acked_yellow)
    assert acked.get_attribute("data-handled") == "1" and acked.locator("form.kvitter-form").count() == 0
    opacity = float(acked.locator("td").first.evaluate("td => getComputedStyle(td).opacity"))
    assert opacity < 1
    counts = page.inner_text("#worklist-counts")
    assert "håndteret" in counts and "grønne" in counts, counts


def test_kvitter_alle_groenne_acts_on_exactly_the_rows_shown(
    ward: Ward, page: Any, module_settings: Any
) -> None:
    page.fill("#wl-search", "grøn a")
    shown = page.eval_on_selector_all('#worklist-rows tr[data-severity="green"]:not([hidden])',
                                      "rs => rs.map(r => +r.dataset.patient)")
    assert sorted(shown) == sorted([ward.greens["Grøn A1"], ward.greens["Grøn A2"]]), shown
    assert page.inner_text("#green-shown") == "2"
    dialogs: list[str] = []

    def accept(d: Any) -> None:
        dialogs.append(d.message)
        d.accept()

    page.on("dialog", accept)
    page.click("#kvitter-green")
    page.wait_for_selector("#worklist-flash:not([hidden])", timeout=10_000)
    assert dialogs == ["Kvittér 2 grønne borgere som set?"]
    assert page.inner_text("#worklist-flash") == "2 grønne borgere kvitteret."
    with psycopg.connect(module_settings.database_url, autocommit=True) as db:
        seen = {r[0] for r in db.execute("SELECT patient_id FROM reading_reviews WHERE patient_id = ANY(%s)",
                                           ([*ward.greens.values(), ward.acked_yellow],))}
    assert seen == {ward.greens["Grøn A1"], ward.greens["Grøn A2"]}


def test_notes_refused_in_danish_keep_the_text_and_long_words_wrap(
    live: Any, ward: Ward, world: Any, page: Any, module_settings: Any
) -> None:
    import re

    import httpx

    from tests.backend.web._support import web_login

    with psycopg.connect(module_settings.database_url, autocommit=True) as db:
        pid, agent = _patient(db, world.municipality, f"Dorte Notat {ward.tag}")
        store_reading(db, live, patient_id=pid, agent_id=agent, kind="spo2", components={"spo2": 82.0}, unit="%")
        alert = open_alert_id(db, pid, "red", timeout=30)
    page.reload()  # a citizen new to the nurse's scope: the live stream learns of them at its next reconnect
    row = _row(page, pid)
    row.wait_for(timeout=20_000)
    note = row.locator(".alert-line input[name=note]").first

    note.fill("   ")
    row.locator(".alert-line button").first.click()
    page.wait_for_selector("#worklist-flash.bad", timeout=10_000)
    assert page.inner_text("#worklist-flash") == "Skriv et notat før du kvitterer."

    long_note = "Borgeren fortæller " + "meget " * 450  # > 2,000 characters
    note.evaluate("n => n.removeAttribute('maxlength')")  # as a paste into an old browser would
    note.fill(long_note)
    row.locator(".alert-line button").first.click()
    page.wait_for_function("() => document.getElementById('worklist-flash').textContent.includes('for langt')")
    assert "Teksten er bevaret" in page.inner_text("#worklist-flash")
    assert note.input_value() == long_note
    with psycopg.connect(module_settings.database_url, autocommit=True) as db:
        assert db.execute("SELECT state FROM alerts WHERE id = %s", (alert,)).fetchone()[0] == "open"

    # Without the page's script: a Danish page with the note, not a JSON 422.
    with httpx.Client(base_url=live.url, timeout=30) as c:
        csrf = web_login(c, world.nurse)
        r = c.post("/worklist/kvitter", data={"csrf": csrf, "alert_id": str(alert), "note": long_note})
    assert r.status_code == 400 and r.headers["content-type"].startswith("text/html")
    assert "for langt" in r.text and re.search(r"<textarea[^>]*>Borgeren fortæller meget", r.text)

    word = "x" * 400
    note.fill(word)
    row.locator(".alert-line button").first.click()
    page.wait_for_selector(f'tr[data-patient="{pid}"] .alert-line[data-state="acknowledged"]', timeout=15_000)
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280


def test_handover_to_another_team_is_one_recorded_action(ward: Ward, world: Any, page: Any,
                                                          module_settings: Any) -> None:
    row = _row(page, ward.snoozed)
    row.locator("details.handover summary").click()
    row.locator("select[name=team]").select_option(ward.team2)
    row.locator("form.handover-form input[name=note]").fill("akutteamet kører ud")
    row.locator("form.handover-form button").click()
    page.wait_for_function("() => document.getElementById('worklist-flash').textContent.includes('overdraget')",
                           timeout=10_000)
    with psycopg.connect(module_settings.database_url, autocommit=True) as db:
        teams = {r[0] for r in db.execute("SELECT team_key FROM alerts WHERE patient_id = %s AND state <> 'resolved'",
                                          (ward.snoozed,))}
        moves = db.execute(
            "SELECT t.actor, t.note, t.team_key FROM alert_transitions t JOIN alerts a ON a.id = t.alert_id"
            " WHERE a.patient_id = %s AND t.action = 'rerouted'", (ward.snoozed,)).fetchall()
        audited = db.execute("SELECT count(*) FROM audit_log WHERE patient_id = %s AND action = 'handover'",
                             (ward.snoozed,)).fetchone()[0]
    assert teams == {ward.team2}
    assert moves and all(m[0].startswith("Sara Test") and m[1] == "akutteamet kører ud" and m[2] == ward.team2
                         for m in moves)
    assert audited == 1
    page.wait_for_function(
        f"() => document.querySelector('tr[data-patient=\"{ward.snoozed}\"]').textContent.includes('Akutteam')",
        timeout=15_000,
    )


def test_the_worklist_is_usable_at_1280x800_with_a_row_per_citizen(ward: Ward, page: Any) -> None:
    """The page does not scroll sideways, and the countdown and counts are filled in."""
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    assert page.inner_text("#worklist-counts").strip()


def test_patient_page_explains_the_alert_kvitters_there_and_shows_a_resolved_one_as_afsluttet(
    live: Any, ward: Ward, world: Any, page: Any, module_settings: Any
) -> None:
    from backend.alerting import service

    with psycopg.connect(module_settings.database_url, autocommit=True) as db:
        pid, agent = _patient(db, world.municipality, f"Erik Side {ward.tag}", "heart_failure")
        store_reading(db, live, patient_id=pid, agent_id=agent, kind="spo2", components={"spo2": 92.0}, unit="%")
        yellow = open_alert_id(db, pid, "yellow", timeout=30)
        store_reading(db, live, patient_id=pid, agent_id=agent, kind="pulse", components={"pulse": 135.0},
                      unit="/min")
        pulse = open_alert_id(db, pid, "red", timeout=30)
    page.goto(f"{live.url}/patients/{pid}")
    box = page.locator("#current-alerts")
    text = box.inner_text()
    assert "92 %" in text and "under grænsen 93 %" in text, text
    assert "135 slag/min" in text and "over grænsen 131 slag/min" in text, text
    lines = box.locator(".alert-line").count()
    assert lines >= 2 and box.locator("form.kvitter-form").count() == lines + 1  # one per line, and "kvittér alle"
    assert "eskaleres om" in text and "…" not in text  # the countdown is filled in
    line = box.locator(f'.alert-line[data-alert="{yellow}"]')
    line.locator("input[name=note]").fill("Talt med borgeren")
    line.locator("button").click()
    page.wait_for_url(f"{live.url}/patients/{pid}#current-alerts")
    assert box.locator(f'.alert-line[data-alert="{yellow}"][data-state="acknowledged"]').count() == 1

    with psycopg.connect(module_settings.database_url) as tx:
        service.resolve(tx, alert_id=pulse, by="Sara Test (sara)", note="faldet til ro",
                        config=live.app.state.runtime.config)
        tx.commit()
    page.goto(f"{live.url}/patients/{pid}")
    story = page.locator(f"#alert-{pulse}")
    assert "Afsluttet" in story.locator("h3").inner_text()
    assert story.locator("form.resolve-form").count() == 0
    assert page.locator(f'#current-alerts .alert-line[data-alert="{pulse}"]').count() == 0
