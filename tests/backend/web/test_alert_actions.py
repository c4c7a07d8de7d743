"""The patient page's alert history (what matters per alert, repeats folded, ``?all=1`` for every
transition) and the clinician's resolve and snooze, with CSRF, scoping and audit. The folding
itself is unit-tested in tests/backend/alerting/test_views.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from tests.backend.web._support import World, build_world, open_alert_id, store_reading, web_login


def _red_alert(conn: psycopg.Connection, live: Any) -> tuple[World, int]:
    """A fresh world (own patient and users) whose patient has an open red alert."""
    w = build_world(conn)
    store_reading(
        conn, live, patient_id=w.patient_id, agent_id=w.agent_id, kind="spo2", components={"spo2": 80.0}, unit="%"
    )
    return w, open_alert_id(conn, w.patient_id)


def test_patient_page_folds_repeated_updates_and_all_lists_every_one(client: Any, live: Any) -> None:
    with psycopg.connect(live.app.state.settings.database_url, autocommit=True) as conn:
        w, alert_id = _red_alert(conn, live)
        team = conn.execute("SELECT team_key FROM alerts WHERE id = %s", (alert_id,)).fetchone()[0]
        start = datetime.now(UTC) - timedelta(hours=1)
        for i in range(40):
            conn.execute(
                "INSERT INTO alert_transitions (alert_id, at, action, actor, to_state, team_key, severity, value)"
                " VALUES (%s, %s, 'updated', 'system', 'open', %s, 'red', %s)",
                (alert_id, start + timedelta(minutes=i), team, 80.0 - i / 10),
            )
        total = conn.execute("SELECT count(*) FROM alert_transitions WHERE alert_id = %s", (alert_id,)).fetchone()[0]
    web_login(client, w.nurse)
    page = client.get(f"/patients/{w.patient_id}", headers={"accept": "text/html"}).text
    history = page[page.index('id="alert-history"') : page.index('id="thresholds"')]
    assert history.count('class="tr-updated"') == 1
    assert "gentaget 40 gange" in history and "seneste værdi 76,1" in history  # Danish decimal comma
    assert history.count('class="tr-opened"') == 1
    assert f"Vis alle {total} hændelser" in history
    full = client.get(f"/patients/{w.patient_id}?all=1", headers={"accept": "text/html"}).text
    full_history = full[full.index('id="alert-history"') : full.index('id="thresholds"')]
    assert full_history.count("Fortsat overskredet") == 40
    # The API keeps every transition (it is for machines).
    api = client.get(f"/api/v1/patients/{w.patient_id}/alerts").json()
    assert len(api) == total and sum(1 for r in api if r["transition"] == "updated") == 40


def test_nurse_snoozes_then_resolves_from_the_patient_page(client: Any, live: Any) -> None:
    with psycopg.connect(live.app.state.settings.database_url, autocommit=True) as conn:
        w, alert_id = _red_alert(conn, live)
        csrf = web_login(client, w.nurse)
        page = client.get(f"/patients/{w.patient_id}", headers={"accept": "text/html"}).text
        assert f'action="/alerts/{alert_id}/resolve"' in page and f'action="/alerts/{alert_id}/snooze"' in page
        tz = ZoneInfo(live.app.state.settings.timezone)
        until = (datetime.now(tz) + timedelta(hours=4)).replace(second=0, microsecond=0)
        form = {"until": until.strftime("%Y-%m-%dT%H:%M"), "reason": "Indlagt til i aften"}
        # No CSRF token: refused before anything changes.
        assert client.post(f"/alerts/{alert_id}/snooze", data=form).status_code == 403
        back = f"/patients/{w.patient_id}#alert-{alert_id}"
        r = client.post(f"/alerts/{alert_id}/snooze", data={**form, "csrf": csrf, "back": back})
        assert r.status_code == 303 and r.headers["location"] == back
        snoozed_until, reason = conn.execute(
            "SELECT snoozed_until, snooze_reason FROM alerts WHERE id = %s", (alert_id,)
        ).fetchone()
        assert snoozed_until == until and reason == "Indlagt til i aften"
        # An expiry that is not a time, or is already past, is refused with a clear page.
        r = client.post(f"/alerts/{alert_id}/snooze", data={**form, "until": "i morgen", "csrf": csrf})
        assert r.status_code == 400 and "i morgen" in r.text
        past = (datetime.now(tz) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
        r = client.post(f"/alerts/{alert_id}/snooze", data={**form, "until": past, "csrf": csrf})
        assert r.status_code == 409 and "future" in r.text

        r = client.post(f"/alerts/{alert_id}/resolve", data={"csrf": csrf, "note": "Målt igen: 95 %", "back": back})
        assert r.status_code == 303
        state, by, note = conn.execute(
            "SELECT state, resolved_by, resolve_note FROM alerts WHERE id = %s", (alert_id,)
        ).fetchone()
        assert state == "resolved" and w.nurse in by and note == "Målt igen: 95 %"
        assert client.post(f"/alerts/{alert_id}/resolve", data={"csrf": csrf, "note": "igen"}).status_code == 409
        actions = [
            r[0]
            for r in conn.execute(
                "SELECT action FROM audit_log WHERE actor LIKE %s AND patient_id = %s AND allowed ORDER BY id",
                (f"%{w.nurse}%", w.patient_id),
            ).fetchall()
        ]
        assert "snooze alert" in actions and "resolve alert" in actions
        history = client.get(f"/patients/{w.patient_id}", headers={"accept": "text/html"}).text
        assert "Udsat" in history and "Indlagt til i aften" in history and "Målt igen: 95 %" in history
        # A resolved alert offers no more actions.
        assert f'action="/alerts/{alert_id}/resolve"' not in history


def test_nurse_of_another_municipality_cannot_resolve_or_snooze(client: Any, live: Any) -> None:
    with psycopg.connect(live.app.state.settings.database_url, autocommit=True) as conn:
        w, alert_id = _red_alert(conn, live)
        csrf = web_login(client, w.other_nurse)
        until = (datetime.now(UTC) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")
        r = client.post(f"/alerts/{alert_id}/resolve", data={"csrf": csrf, "note": "ikke min"})
        assert r.status_code == 403
        r = client.post(f"/alerts/{alert_id}/snooze", data={"csrf": csrf, "until": until, "reason": "ikke min"})
        assert r.status_code == 403
        row = conn.execute("SELECT state, snoozed_until FROM alerts WHERE id = %s", (alert_id,)).fetchone()
        assert row == ("open", None)
        refused = conn.execute(
            "SELECT action FROM audit_log WHERE actor LIKE %s AND patient_id = %s AND NOT allowed ORDER BY id",
            (f"%{w.other_nurse}%", w.patient_id),
        ).fetchall()
        assert [r[0] for r in refused] == ["resolve alert", "snooze alert"]
    # An unknown alert answers as a forbidden one does (issue 12: no id oracle).
    assert client.post("/alerts/999999999/resolve", data={"csrf": csrf, "note": "x"}).status_code == 403
