"""The JSON API on the live app: bearer tokens, scoping with audit, trends, readings, FHIR,
rate-limited login, and Min Log."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.backend.web._support import add_readings, api_token


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_no_token_is_401_and_bad_token_is_401(client: Any, world: Any) -> None:
    assert client.get("/api/v1/patients").status_code == 401
    r = client.get("/api/v1/patients", headers=_h("nc_not-a-token"))
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"


def test_nurse_lists_only_her_municipality(client: Any, world: Any) -> None:
    tok = api_token(client, world.nurse)
    r = client.get("/api/v1/patients", headers=_h(tok))
    assert r.status_code == 200
    municipalities = {p["municipality"] for p in r.json()}
    assert municipalities == {world.municipality}
    me = client.get("/api/v1/me", headers=_h(tok)).json()
    assert me["role"] == "nurse" and me["municipality"] == world.municipality


def test_refused_read_is_403_and_in_the_audit_log_seen_by_admin(client: Any, world: Any) -> None:
    nurse = api_token(client, world.nurse)
    r = client.get(f"/api/v1/patients/{world.other_patient_id}/readings", headers=_h(nurse))
    assert r.status_code == 403
    admin = api_token(client, world.admin)
    assert client.get(f"/api/v1/patients/{world.patient_id}", headers=_h(admin)).status_code == 403
    log = client.get(
        "/api/v1/audit", params={"patient_id": world.other_patient_id, "refused_only": True}, headers=_h(admin)
    ).json()
    assert any(e["actor"].startswith(world.nurse) and e["action"] == "api readings" and not e["allowed"] for e in log)
    # Only admins read the audit log.
    assert client.get("/api/v1/audit", headers=_h(nurse)).status_code == 403


def test_trend_raw_for_a_week_daily_for_a_year(client: Any, world: Any, db: Any) -> None:
    add_readings(db, patient_id=world.patient_id, agent_id=world.agent_id, device_id=world.device_id, days=60)
    tok = api_token(client, world.nurse)
    week = client.get(
        f"/api/v1/patients/{world.patient_id}/trend", params={"kind": "blood_pressure", "range": "7d"}, headers=_h(tok)
    ).json()
    assert week["resolution"] == "raw"
    assert [s["component"] for s in week["series"]] == ["systolic", "diastolic"]
    assert len(week["series"][0]["t"]) >= 14
    # Part of the history is rolled up, the newest days are not yet: both are in the year.
    with _rolled_up_but_the_newest_days(db, world.patient_id):
        rolled = db.execute(
            "SELECT count(*), max(day) > current_date - 5 FROM measurement_daily"
            " WHERE patient_id = %s AND kind = 'weight'", (world.patient_id,)
        ).fetchone()
        assert rolled[0] >= 50 and rolled[1] is False  # the old days rolled up, the newest not
        year = client.get(
            f"/api/v1/patients/{world.patient_id}/trend", params={"kind": "weight", "range": "1y"}, headers=_h(tok)
        ).json()
    s = year["series"][0]
    assert year["resolution"] == "daily"
    assert 59 <= len(s["t"]) <= 61  # one point per day, rolled-up days and the recent tail alike
    assert all(lo <= v <= hi for v, lo, hi in zip(s["value"], s["low"], s["high"], strict=True))
    assert s["t"] == sorted(s["t"])
    # Each point is its local (Copenhagen) day, once, with that day's mean: the rolled-up days and
    # the tail agree on what a day is, on either store.
    raw = db.execute(
        "SELECT (measured_at AT TIME ZONE 'Europe/Copenhagen')::date, avg(value) FROM measurements"
        " WHERE patient_id = %s AND kind = 'weight' GROUP BY 1", (world.patient_id,)
    ).fetchall()
    shown = {datetime.fromtimestamp(t, UTC).date(): v for t, v in zip(s["t"], s["value"], strict=True)}
    assert len(shown) == len(s["t"])
    assert shown == pytest.approx({day: mean for day, mean in raw})


@contextmanager
def _rolled_up_but_the_newest_days(db: Any, patient_id: int) -> Iterator[None]:
    """The daily rollup holds this patient's days up to ``current_date - 5``, and no later ones.

    Plain PostgreSQL: ``measurement_daily`` is a table, refreshed and then trimmed. TimescaleDB:
    it is a view over a continuous aggregate, which cannot be deleted from; the aggregate is
    refreshed up to the local midnight that ends ``current_date - 5``, and its scheduled policy
    is paused meanwhile, so it cannot roll up the newest days while the test looks."""
    from backend.store import detect
    from backend.store.rollup import refresh

    since = datetime.now(UTC) - timedelta(days=400)
    if not detect(db).timescale:
        db.execute("DELETE FROM measurement_daily WHERE patient_id = %s", (patient_id,))
        refresh(db, since=since)
        db.execute("DELETE FROM measurement_daily WHERE patient_id = %s AND day > current_date - 5", (patient_id,))
        yield
        return
    jobs = [r[0] for r in db.execute(
        "SELECT job_id FROM timescaledb_information.jobs"
        " WHERE proc_name = 'policy_refresh_continuous_aggregate' AND scheduled")]
    for job in jobs:
        db.execute("SELECT alter_job(%s, scheduled => false)", (job,))
    try:
        end = db.execute("SELECT (current_date - 4)::timestamp AT TIME ZONE 'Europe/Copenhagen'").fetchone()[0]
        db.execute("CALL refresh_continuous_aggregate('measurement_daily_cagg', %s, %s)", (since, end))
        yield
    finally:
        for job in jobs:
            db.execute("SELECT alter_job(%s, scheduled => true)", (job,))


def test_reading_detail_and_fhir_over_the_api(client: Any, world: Any, db: Any) -> None:
    add_readings(db, patient_id=world.patient_id, agent_id=world.agent_id, device_id=world.device_id, days=1)
    tok = api_token(client, world.nurse)
    readings = client.get(
        f"/api/v1/patients/{world.patient_id}/readings", params={"kind": "blood_pressure"}, headers=_h(tok)
    ).json()
    assert readings and all(r["kind"] == "blood_pressure" for r in readings)
    d = client.get(f"/api/v1/patients/{world.patient_id}/readings/{readings[0]['id']}", headers=_h(tok)).json()
    assert d["raw_hex"] == "1e8000" and d["clock_offset_s"] == 40.0 and d["device_firmware"] == "1.2"
    r = client.get(f"/api/v1/patients/{world.patient_id}/fhir", headers=_h(tok))
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+json")
    from fhir.resources.R4B.bundle import Bundle

    bundle = Bundle.model_validate(r.json())
    assert bundle.type == "transaction"


def test_citizen_reads_own_data_and_min_log(client: Any, world: Any) -> None:
    nurse = api_token(client, world.nurse)
    client.get(f"/api/v1/patients/{world.patient_id}/rejected", headers=_h(nurse))
    tok = api_token(client, world.citizen)
    assert client.get(f"/api/v1/patients/{world.patient_id}/readings", headers=_h(tok)).status_code == 200
    assert client.get(f"/api/v1/patients/{world.other_patient_id}/readings", headers=_h(tok)).status_code == 403
    log = client.get("/api/v1/me/log", headers=_h(tok)).json()
    assert any(e["who"] == "Sara Test" and e["role"] == "sygeplejerske" and e["what"].startswith("så dine afviste")
               for e in log["entries"])


def test_login_is_rate_limited_per_user(client: Any, world: Any, db: Any) -> None:
    from backend.accounts.store import create_user

    create_user(db, username=f"victim-{world.tag}", display_name="V", role="admin", password="right-password-1")
    for _ in range(3):
        r = client.post("/api/v1/auth/token", json={"username": f"victim-{world.tag}", "password": "guess"})
        assert r.status_code == 401
    # Then each try waits (a delay, not a lock: see tests/backend/web/test_login_security.py).
    r = client.post("/api/v1/auth/token", json={"username": f"victim-{world.tag}", "password": "right-password-1"})
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    # Other users are unaffected.
    assert (
        client.post("/api/v1/auth/token", json={"username": world.admin, "password": "test-password-1"}).status_code
        == 200
    )


def test_worklist_and_population_over_the_api(client: Any, world: Any) -> None:
    tok = api_token(client, world.nurse)
    wl = client.get("/api/v1/worklist", headers=_h(tok)).json()
    assert {"rows", "green", "counts"} <= set(wl)
    assert all(r["municipality"] == world.municipality for r in wl["rows"])
    pop = client.get("/api/v1/population", headers=_h(tok)).json()
    assert all(p["municipality"] == world.municipality for p in pop["patients"])
    assert client.get("/api/v1/worklist", headers=_h(api_token(client, world.citizen))).status_code == 403


def test_openapi_docs_are_served(client: Any) -> None:
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    assert "/api/v1/patients/{patient_id}/fhir" in schema["paths"]
