"""Resolve and snooze over the JSON API: bearer token, scoping with audit, clear refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from tests.backend.web._support import api_token, build_world, open_alert_id, store_reading


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _red_alert(conn: psycopg.Connection, live: Any) -> tuple[Any, int]:
    w = build_world(conn)
    store_reading(
        conn, live, patient_id=w.patient_id, agent_id=w.agent_id, kind="spo2", components={"spo2": 80.0}, unit="%"
    )
    return w, open_alert_id(conn, w.patient_id)


def test_snooze_then_resolve_over_the_api(client: Any, live: Any) -> None:
    with psycopg.connect(live.app.state.settings.database_url, autocommit=True) as conn:
        w, alert_id = _red_alert(conn, live)
        h = _h(api_token(client, w.nurse))
        until = (datetime.now(UTC) + timedelta(hours=3)).replace(microsecond=0)
        # A time without a zone, an empty reason, or an empty note: 422 before anything changes.
        naive = until.replace(tzinfo=None).isoformat()
        assert (
            client.post(
                f"/api/v1/alerts/{alert_id}/snooze", json={"until": naive, "reason": "x"}, headers=h
            ).status_code
            == 422
        )
        body = {"until": until.isoformat(), "reason": "  "}
        assert client.post(f"/api/v1/alerts/{alert_id}/snooze", json=body, headers=h).status_code == 422
        assert client.post(f"/api/v1/alerts/{alert_id}/resolve", json={"note": ""}, headers=h).status_code == 422
        past = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
        r = client.post(f"/api/v1/alerts/{alert_id}/snooze", json={"until": past, "reason": "for sent"}, headers=h)
        assert r.status_code == 409 and "future" in r.json()["detail"]

        r = client.post(
            f"/api/v1/alerts/{alert_id}/snooze", json={"until": until.isoformat(), "reason": "Til kontrol"}, headers=h
        )
        assert r.status_code == 200, r.text
        assert r.json()["snoozed_by"] == w.nurse
        assert conn.execute(
            "SELECT snoozed_until, snooze_reason FROM alerts WHERE id = %s", (alert_id,)
        ).fetchone() == (
            until,
            "Til kontrol",
        )
        r = client.post(f"/api/v1/alerts/{alert_id}/resolve", json={"note": "Ringet op, fin"}, headers=h)
        assert r.status_code == 200 and r.json() == {"alert_id": alert_id, "resolved_by": w.nurse}
        state, note = conn.execute("SELECT state, resolve_note FROM alerts WHERE id = %s", (alert_id,)).fetchone()
        assert state == "resolved" and note == "Ringet op, fin"
        r = client.post(f"/api/v1/alerts/{alert_id}/resolve", json={"note": "igen"}, headers=h)
        assert r.status_code == 409
        actions = {
            r[0]
            for r in conn.execute(
                "SELECT action FROM audit_log WHERE actor LIKE %s AND patient_id = %s AND allowed",
                (f"%{w.nurse}%", w.patient_id),
            ).fetchall()
        }
        assert {"api snooze alert", "api resolve alert"} <= actions
        # Every transition stays in the API's history.
        history = client.get(f"/api/v1/patients/{w.patient_id}/alerts", headers=h).json()
        assert {"opened", "snoozed", "resolved"} <= {t["transition"] for t in history}
    # An unknown alert answers as a forbidden one does (issue 12: no id oracle).
    assert client.post("/api/v1/alerts/999999999/resolve", json={"note": "x"}, headers=h).status_code == 403


def test_nurse_of_another_municipality_gets_403_and_is_audited(client: Any, live: Any) -> None:
    with psycopg.connect(live.app.state.settings.database_url, autocommit=True) as conn:
        w, alert_id = _red_alert(conn, live)
        h = _h(api_token(client, w.other_nurse))
        until = (datetime.now(UTC) + timedelta(hours=3)).isoformat()
        r = client.post(f"/api/v1/alerts/{alert_id}/snooze", json={"until": until, "reason": "ikke min"}, headers=h)
        assert r.status_code == 403
        r = client.post(f"/api/v1/alerts/{alert_id}/resolve", json={"note": "ikke min"}, headers=h)
        assert r.status_code == 403
        assert conn.execute("SELECT state, snoozed_until FROM alerts WHERE id = %s", (alert_id,)).fetchone() == (
            "open",
            None,
        )
        refused = conn.execute(
            "SELECT action FROM audit_log WHERE actor LIKE %s AND patient_id = %s AND NOT allowed ORDER BY id",
            (f"%{w.other_nurse}%", w.patient_id),
        ).fetchall()
        assert [r[0] for r in refused] == ["api snooze alert", "api resolve alert"]
        # A citizen is no clinician, even for her own alert.
        h = _h(api_token(client, w.citizen))
        assert client.post(f"/api/v1/alerts/{alert_id}/resolve", json={"note": "ok"}, headers=h).status_code == 403
