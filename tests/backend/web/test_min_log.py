"""Issue 12, findings 4 and 8: Min Log tells the whole truth.

List views (worklist, population, patient list) write one audit row per citizen shown; Min Log
pages through everything in Danish (who by name, role and organisation, never an address);
role-gate refusals and unknown clinical ids are audited; a forbidden id answers as a missing one."""

from __future__ import annotations

import re
from typing import Any

import httpx
import psycopg

from tests.backend.web._support import api_token, build_world, store_reading, web_login


def _h(tok: str) -> dict[str, str]:
    return {"authorization": f"Bearer {tok}"}


def test_a_look_through_the_worklist_by_a_named_nurse_is_in_the_citizens_min_log(live: Any,
                                                                                 client: httpx.Client) -> None:
    with psycopg.connect(live.app.state.settings.database_url, autocommit=True) as conn:
        w = build_world(conn)
        store_reading(conn, live, patient_id=w.patient_id, agent_id=w.agent_id, kind="spo2",
                      components={"spo2": 80.0}, unit="%")
        from tests.backend.web._support import open_alert_id

        open_alert_id(conn, w.patient_id, timeout=30)
        web_login(client, w.nurse)
        page = client.get("/worklist", headers={"accept": "text/html"})
        assert page.status_code == 200 and f"Karen Test {w.tag}" in page.text
        tok = api_token(client, w.nurse)
        assert client.get("/api/v1/population", headers=_h(tok)).status_code == 200
        assert client.get("/api/v1/patients", headers=_h(tok)).status_code == 200
        rows = conn.execute(
            "SELECT action, actor_name, actor_org FROM audit_log WHERE patient_id = %s AND allowed ORDER BY id",
            (w.patient_id,)).fetchall()
        actions = [r[0] for r in rows]
        assert {"worklist", "api population", "api patient list"} <= set(actions), actions
        assert all(name == "Sara Test" and org and w.municipality in org for _, name, org in rows)

        client.cookies.clear()
        web_login(client, w.citizen)
        log = client.get("/min-log", headers={"accept": "text/html"}).text
        assert "Sara Test" in log and "sygeplejerske" in log and "så dig på arbejdslisten" in log
        assert "led i din behandling" in log and f"{w.municipality}" in log
        assert "127.0.0.1" not in log  # never an address
        # In English where the citizen chose it: every line from the catalogue (issue 13).
        english = client.get("/min-log?lang=en", headers={"accept": "text/html"}).text
        assert "saw you on the worklist" in english and "part of your care" in english and "nurse" in english
        assert "så dig på arbejdslisten" not in english and "led i din behandling" not in english
        tok = api_token(client, w.citizen)
        entries = client.get("/api/v1/me/log", headers=_h(tok)).json()["entries"]
        assert any(e["who"] == "Sara Test" and e["what"] == "så dig på arbejdslisten" for e in entries)
        assert all("remote_addr" not in e for e in entries)


def test_min_log_pages_past_200_rows(live: Any, client: httpx.Client) -> None:
    with psycopg.connect(live.app.state.settings.database_url, autocommit=True) as conn:
        w = build_world(conn)
        conn.execute(
            "INSERT INTO audit_log (at, actor, actor_role, actor_name, actor_org, patient_id, action, allowed)"
            " SELECT now() - make_interval(mins => i), 'x (Sara Test, team)', 'nurse', 'Sara Test', 'team', %s,"
            " 'patient page', true FROM generate_series(1, 275) AS i", (w.patient_id,))
    tok = api_token(client, w.citizen)
    seen = []
    offset: int | None = 0
    while offset is not None:
        page = client.get("/api/v1/me/log", params={"limit": 100, "offset": offset}, headers=_h(tok)).json()
        assert page["total"] >= 275
        seen += page["entries"]
        offset = page["next_offset"]
    assert len(seen) == page["total"] >= 275
    web_login(client, w.citizen)
    first = client.get("/min-log", headers={"accept": "text/html"}).text
    assert 'id="min-log-older"' in first
    last = client.get("/min-log?offset=250", headers={"accept": "text/html"}).text
    assert last.count("åbnede din side") >= 25 and 'id="min-log-newer"' in last


def test_role_refusals_and_unknown_ids_are_audited_and_answer_alike(live: Any, client: httpx.Client) -> None:
    with psycopg.connect(live.app.state.settings.database_url, autocommit=True) as conn:
        w = build_world(conn)
        store_reading(conn, live, patient_id=w.patient_id, agent_id=w.agent_id, kind="spo2",
                      components={"spo2": 80.0}, unit="%")
        from tests.backend.web._support import open_alert_id

        alert_id = open_alert_id(conn, w.patient_id, timeout=30)
        # The citizen and the admin try a clinical write: refused and audited on the citizen.
        for who in (w.citizen, w.admin):
            tok = api_token(client, who)
            r = client.post(f"/api/v1/alerts/{alert_id}/resolve", json={"note": "nej"}, headers=_h(tok))
            assert r.status_code == 403
        refused = conn.execute(
            "SELECT actor_role, action FROM audit_log WHERE patient_id = %s AND NOT allowed ORDER BY id",
            (w.patient_id,)).fetchall()
        assert [r[0] for r in refused] == ["citizen", "admin"] and {r[1] for r in refused} == {"role refused"}

        # An unknown alert id and a forbidden one answer alike, and both are audited.
        other = api_token(client, w.other_nurse)
        missing = client.post("/api/v1/alerts/999999999/resolve", json={"note": "x"}, headers=_h(other))
        forbidden = client.post(f"/api/v1/alerts/{alert_id}/resolve", json={"note": "x"}, headers=_h(other))
        assert (missing.status_code, missing.json()) == (forbidden.status_code, forbidden.json()) == (
            403, {"detail": "outside your scope, or no such record"})
        missing_p = client.get("/api/v1/patients/999999999/readings", headers=_h(other))
        forbidden_p = client.get(f"/api/v1/patients/{w.patient_id}/readings", headers=_h(other))
        assert (missing_p.status_code, missing_p.json()) == (forbidden_p.status_code, forbidden_p.json())
        rows = conn.execute("SELECT detail FROM audit_log WHERE actor LIKE %s AND NOT allowed ORDER BY id",
                            (f"{w.other_nurse}%",)).fetchall()
        details = " | ".join(r[0] or "" for r in rows)
        assert "unknown alert id 999999999" in details and "unknown patient id 999999999" in details
        # On the web, too: the same page for a missing and a forbidden patient.
        web_login(client, w.other_nurse)
        a = client.get("/patients/999999999", headers={"accept": "text/html"})
        b = client.get(f"/patients/{w.patient_id}", headers={"accept": "text/html"})
        assert a.status_code == b.status_code == 403
        strip = re.compile(r'content="[^"]*"|value="[^"]*"')
        assert strip.sub("", a.text) == strip.sub("", b.text)
