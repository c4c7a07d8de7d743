"""The web app against the real app under uvicorn: login, CSRF, scoping with audit, worklist
kvittering, patient page, Min Log, admin audit view, language."""

from __future__ import annotations

import re
from typing import Any

import psycopg

from tests.backend.web._support import (
    PASSWORD,
    add_readings,
    open_alert_id,
    store_reading,
    web_login,
)


def test_login_wrong_password_is_refused_and_pages_need_login(client: Any, world: Any) -> None:
    r = client.get("/worklist", headers={"accept": "text/html"})
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    page = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token
    r = client.post("/login", data={"username": world.nurse, "password": "wrong-password", "csrf": token.group(1)})
    assert r.status_code == 401
    assert "Forkert brugernavn eller adgangskode" in r.text
    assert "nearcare_session" not in client.cookies


def test_login_form_without_its_csrf_cookie_token_is_refused(client: Any, world: Any) -> None:
    client.get("/login")
    r = client.post("/login", data={"username": world.nurse, "password": PASSWORD, "csrf": "forged"})
    assert r.status_code == 403


def test_session_cookie_flags_and_csrf_on_writes(client: Any, world: Any) -> None:
    # The session cookie is HttpOnly and SameSite.
    page = client.get("/login")
    tok = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert tok
    r = client.post("/login", data={"username": world.nurse, "password": PASSWORD, "csrf": tok.group(1)})
    set_cookie = r.headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=lax" in set_cookie
    m = re.search(r'<meta name="csrf-token" content="([^"]+)"', client.get("/worklist").text)
    assert m
    csrf = m.group(1)
    # A write without the CSRF token is refused; with it, it goes through.
    r = client.post("/worklist/kvitter-green", data={"team": ""})
    assert r.status_code == 403
    r = client.post("/worklist/kvitter-green", data={"team": "", "csrf": csrf})
    assert r.status_code == 303


def test_other_municipality_is_403_and_audited_own_is_200_and_audited(client: Any, world: Any, db: Any) -> None:
    web_login(client, world.nurse)
    r = client.get(f"/patients/{world.other_patient_id}", headers={"accept": "text/html"})
    assert r.status_code == 403
    assert "Ingen adgang" in r.text
    row = db.execute(
        "SELECT allowed, actor_role, action, detail FROM audit_log WHERE patient_id = %s ORDER BY id DESC LIMIT 1",
        (world.other_patient_id,),
    ).fetchone()
    assert row is not None and row[0] is False and row[1] == "nurse" and "refused" in row[3]
    r = client.get(f"/patients/{world.patient_id}", headers={"accept": "text/html"})
    assert r.status_code == 200
    row = db.execute(
        "SELECT allowed, actor, action, remote_addr FROM audit_log WHERE patient_id = %s ORDER BY id DESC LIMIT 1",
        (world.patient_id,),
    ).fetchone()
    assert row[0] is True and row[1].startswith(world.nurse) and row[2] == "patient page" and row[3] == "127.0.0.1"


def test_specialist_sees_department_patients_only(client: Any, world: Any) -> None:
    web_login(client, world.specialist)
    assert client.get(f"/patients/{world.hospital_patient_id}", headers={"accept": "text/html"}).status_code == 200
    assert client.get(f"/patients/{world.patient_id}", headers={"accept": "text/html"}).status_code == 403


def test_admin_sees_no_clinical_data_but_the_audit_view(client: Any, world: Any) -> None:
    web_login(client, world.admin)
    assert client.get(f"/patients/{world.patient_id}", headers={"accept": "text/html"}).status_code == 403
    assert client.get("/worklist", headers={"accept": "text/html"}).status_code == 403
    r = client.get("/audit", params={"actor": world.admin, "refused": "1"})
    assert r.status_code == 200
    assert "patient page" in r.text and "admins see no clinical data" in r.text


def test_patient_page_shows_trends_readings_detail_and_rejected(client: Any, world: Any, db: Any) -> None:
    add_readings(db, patient_id=world.patient_id, agent_id=world.agent_id, device_id=world.device_id, days=40)
    db.execute(
        """INSERT INTO rejected_readings (id, measured_at, patient_id, agent_id, kind, components, unit, reason,
                                              envelope)
           VALUES (gen_random_uuid(), now(), %s, %s, 'spo2', '{"spo2": 140}', '%%', 'implausible: spo2 140 > 100',
                   '{}')""",
        (world.patient_id, world.agent_id),
    )
    web_login(client, world.nurse)
    for rng in ("7d", "30d", "1y"):
        r = client.get(f"/patients/{world.patient_id}", params={"range": rng}, headers={"accept": "text/html"})
        assert r.status_code == 200
        charts = re.findall(r'<script type="application/json" data-chart>(.*?)</script>', r.text, re.S)
        assert len(charts) == 5  # one per series: SpO2, pulse, weight, systolic, diastolic (issue 13)
        import json

        first = json.loads(charts[0])
        assert first["resolution"] == ("raw" if rng == "7d" else "daily")
        assert first["points"] >= (7 if rng == "7d" else 30)
        assert [s["unit"] for s in first["series"]] == ["%"]
    assert "implausible: spo2 140 &gt; 100" in r.text
    reading = re.search(rf"/patients/{world.patient_id}/readings/([0-9a-f-]+)", r.text)
    assert reading
    rid = db.execute(
        "SELECT id FROM measurements WHERE patient_id = %s AND kind = 'blood_pressure' AND raw IS NOT NULL LIMIT 1",
        (world.patient_id,),
    ).fetchone()[0]
    r = client.get(f"/patients/{world.patient_id}/readings/{rid}", headers={"accept": "text/html"})
    assert r.status_code == 200
    assert "1e8000" in r.text and "UA-651BLE" in r.text and "+40 s" in r.text


def test_red_alert_on_worklist_kvittering_with_note_and_min_log(client: Any, world: Any, live: Any) -> None:
    with psycopg.connect(live.app.state.settings.database_url, autocommit=True) as conn:
        store_reading(
            conn,
            live,
            patient_id=world.patient_id,
            agent_id=world.agent_id,
            kind="spo2",
            components={"spo2": 80.0},
            unit="%",
        )
        alert_id = open_alert_id(conn, world.patient_id)
        csrf = web_login(client, world.nurse)
        r = client.get("/worklist", headers={"accept": "text/html"})
        assert f'data-alert="{alert_id}"' in r.text and 'data-severity="red"' in r.text
        r = client.post(f"/alerts/{alert_id}/kvitter", data={"csrf": csrf, "note": "Ringet op, har det godt"})
        assert r.status_code == 303
        state, by, note = conn.execute(
            "SELECT state, acknowledged_by, ack_note FROM alerts WHERE id = %s", (alert_id,)
        ).fetchone()
        assert state == "acknowledged" and world.nurse in by and note == "Ringet op, har det godt"
        # Twice is refused clearly, not a server error.
        r = client.post(f"/alerts/{alert_id}/kvitter", data={"csrf": csrf, "note": "igen"})
        assert r.status_code == 409
        r = client.get(f"/patients/{world.patient_id}", headers={"accept": "text/html"})
        assert "acknowledged" in r.text and "Ringet op, har det godt" in r.text
    # The citizen's Min Log names the nurse who looked.
    client.cookies.clear()
    web_login(client, world.citizen)
    r = client.get("/min-log")
    assert r.status_code == 200 and "Sara Test" in r.text and "kvitterede for en alarm" in r.text
    assert client.get(f"/patients/{world.other_patient_id}", headers={"accept": "text/html"}).status_code == 403


def test_threshold_edit_needs_reason_and_is_listed(client: Any, world: Any) -> None:
    csrf = web_login(client, world.specialist)
    pid = world.hospital_patient_id
    r = client.post(
        f"/patients/{pid}/thresholds",
        data={"csrf": csrf, "rule_id": "copd.spo2.absolute", "field": "red_low", "value": "84", "reason": ""},
    )
    assert r.status_code == 422 or r.status_code == 400
    r = client.post(
        f"/patients/{pid}/thresholds",
        data={
            "csrf": csrf,
            "rule_id": "copd.spo2.absolute",
            "field": "red_low",
            "value": "84",
            "reason": "Habituel 86-88 %",
        },
    )
    assert r.status_code == 303
    page = client.get(f"/patients/{pid}", headers={"accept": "text/html"}).text
    assert "Habituel 86-88 %" in page and 'value="84"' in page and 'value="84.0"' not in page


def test_english_on_request(client: Any, world: Any) -> None:
    web_login(client, world.nurse)
    r = client.get("/worklist", params={"lang": "en"}, headers={"accept": "text/html"})
    assert "Triage worklist" in r.text and "Acknowledge all green" in r.text
    r = client.get("/worklist", headers={"accept": "text/html"})
    assert "Triage worklist" in r.text  # remembered by cookie
    r = client.get("/worklist", params={"lang": "da"}, headers={"accept": "text/html"})
    assert "Triagering" in r.text and "Kvittér alle grønne" in r.text


def test_kvitter_all_green_marks_new_readings_seen(client: Any, world: Any, db: Any, live: Any) -> None:
    csrf = web_login(client, world.specialist)
    # The hospital patient has fresh normal readings and no alert: a green row.
    add_readings(db, patient_id=world.hospital_patient_id, agent_id=world.agent_id, device_id=None, days=1)
    # Green rows are cached per scope for GREEN_CACHE_S; these readings bypassed ingest, so expire it.
    from backend.review.router import green_cache_of

    green_cache_of(live.app.state).forget()
    r = client.get("/worklist", headers={"accept": "text/html"})
    assert f'data-patient="{world.hospital_patient_id}" data-severity="green"' in r.text
    assert client.post("/worklist/kvitter-green", data={"csrf": csrf}).status_code == 303
    r = client.get("/worklist", headers={"accept": "text/html"})
    assert f'data-patient="{world.hospital_patient_id}" data-severity="green"' not in r.text
    row = db.execute(
        "SELECT seen_by FROM reading_reviews WHERE patient_id = %s", (world.hospital_patient_id,)
    ).fetchone()
    assert row and row[0] == world.specialist


def test_monitoring_plan_and_passive_interval_edits(client: Any, world: Any, db: Any) -> None:
    csrf = web_login(client, world.nurse)
    pid = world.patient_id
    r = client.post(
        f"/patients/{pid}/plan", data={"csrf": csrf, "kind": "weight", "times": "07:30, 19:00", "grace_minutes": "90"}
    )
    assert r.status_code == 303
    stored = db.execute(
        "SELECT measurements, updated_by FROM monitoring_plans WHERE patient_id = %s", (pid,)
    ).fetchone()
    weight = next(m for m in stored[0] if m["kind"] == "weight")
    assert weight["times"] == ["07:30", "19:00"] and weight["grace_minutes"] == 90 and world.nurse in stored[1]
    r = client.post(f"/patients/{pid}/plan", data={"csrf": csrf, "kind": "weight", "times": "25:00"})
    assert r.status_code == 400 and "HH:MM" in r.text
    r = client.post(f"/patients/{pid}/plan", data={"csrf": csrf, "kind": "weight", "action": "remove"})
    assert r.status_code == 303
    stored = db.execute("SELECT measurements FROM monitoring_plans WHERE patient_id = %s", (pid,)).fetchone()
    assert all(m["kind"] != "weight" for m in stored[0])
    r = client.post(
        f"/patients/{pid}/passive",
        data={"csrf": csrf, "starts": "2026-12-01", "ends": "2026-12-05", "reason": "Indlagt på AUH"},
    )
    assert r.status_code == 303
    page = client.get(f"/patients/{pid}", headers={"accept": "text/html"}).text
    assert "Indlagt på AUH" in page and "01-12-2026" in page
    # A nurse cannot change another municipality's patient's plan; the attempt is audited.
    r = client.post(f"/patients/{world.other_patient_id}/plan", data={"csrf": csrf, "kind": "spo2", "times": "08:00"})
    assert r.status_code == 403
    row = db.execute(
        "SELECT allowed, action FROM audit_log WHERE patient_id = %s ORDER BY id DESC LIMIT 1",
        (world.other_patient_id,),
    ).fetchone()
    assert row == (False, "monitoring plan change")
