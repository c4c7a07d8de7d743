"""Issue 11 item 5, the programme side: an admin (or a specialist) changes a programme default over
the API with a reason, and returns it to the packaged default; each is in the threshold audit;
nurses and citizens are refused (403, audited); a value the rule cannot take is a 400 in words;
and the running rules engine judges a new reading of a citizen without their own override by the
saved default."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from alert_rules.loader import load_ruleset
from backend.embedded import wait_for
from tests.backend.web._support import api_token, build_world, store_reading

RULE, FIELD = "copd.spo2.absolute", "red_low"
PATH = f"/api/v1/programmes/copd/thresholds/{RULE}/{FIELD}"


def _h(tok: str) -> dict[str, str]:
    return {"authorization": f"Bearer {tok}"}


def _packaged() -> float:
    """The shipped red limit, read from the rule files (they change: no figure is written here)."""
    return float(load_ruleset().by_id[RULE].default_thresholds()[FIELD])


@pytest.fixture
def live_db(live: Any) -> Iterator[psycopg.Connection]:
    """The live app's database; the COPD programme's changes are removed afterwards, so the other
    modules of the session see the packaged defaults."""
    with psycopg.connect(live.app.state.settings.database_url, autocommit=True) as conn:
        try:
            yield conn
        finally:
            conn.execute("DELETE FROM alert_programme_defaults WHERE programme = 'copd'")


def _audit(db: psycopg.Connection, since: int) -> list[tuple[Any, ...]]:
    return db.execute(
        "SELECT actor, scope, programme, rule_id, field, old_value, new_value, reason FROM alert_threshold_audit"
        " WHERE id > %s ORDER BY id", (since,)).fetchall()


def _last_audit_id(db: psycopg.Connection) -> int:
    return int(db.execute("SELECT coalesce(max(id), 0) FROM alert_threshold_audit").fetchone()[0])


def test_an_admin_changes_and_resets_a_programme_default_with_a_reason(client: httpx.Client, world: Any,
                                                                      live_db: psycopg.Connection) -> None:
    packaged = _packaged()
    new = packaged + 2
    admin = _h(api_token(client, world.admin))
    since = _last_audit_id(live_db)

    r = client.put(PATH, json={"value": new, "reason": "regional instruks"}, headers=admin)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["value"], body["default_value"], body["changed"]) == (new, packaged, True)
    assert world.admin in body["set_by"] and body["reason"] == "regional instruks"
    listed = client.get("/api/v1/programmes/copd/thresholds", headers=admin).json()
    assert next(t for t in listed if t["rule_id"] == RULE and t["field"] == FIELD)["value"] == new
    assert _audit(live_db, since) == [
        (body["set_by"], "programme", "copd", RULE, FIELD, packaged, new, "regional instruks")]

    # a value the rule cannot take: 400 in words naming the threshold; nothing saved or audited
    for bad in (1000.0, -5.0):
        r = client.put(PATH, json={"value": bad, "reason": "forkert"}, headers=admin)
        assert r.status_code == 400, r.text
        assert RULE in r.json()["detail"] and f"{bad:g}" in r.json()["detail"]
    # a reason is required (the schema says so: 422 before anything runs)
    for body_without in ({"value": new}, {"value": new, "reason": "   "}, {"value": new, "reason": ""}):
        assert client.put(PATH, json=body_without, headers=admin).status_code == 422
    # no such threshold in the programme: a rule of another programme, a field the rule has not
    for path in ("/api/v1/programmes/copd/thresholds/hypertension.bp.systolic/red_high",
                 f"/api/v1/programmes/copd/thresholds/{RULE}/no_such_field",
                 "/api/v1/programmes/copd/thresholds/no.such.rule/red_low"):
        assert client.put(path, json={"value": 90, "reason": "findes ikke"}, headers=admin).status_code == 404, path
    assert len(_audit(live_db, since)) == 1

    changes = client.get("/api/v1/programmes/copd/thresholds/audit", headers=admin).json()
    assert (changes[0]["rule_id"], changes[0]["old_value"], changes[0]["new_value"]) == (RULE, packaged, new)

    # back to the packaged default: reason required, audited, then nothing left to reset (409)
    assert client.request("DELETE", PATH, json={}, headers=admin).status_code == 422
    r = client.request("DELETE", PATH, json={"reason": "tilbage til pakkens standard"}, headers=admin)
    assert r.status_code == 200, r.text
    assert (r.json()["value"], r.json()["changed"]) == (packaged, False)
    assert _audit(live_db, since)[-1][5:] == (new, packaged, "tilbage til pakkens standard")
    assert client.request("DELETE", PATH, json={"reason": "igen"}, headers=admin).status_code == 409
    assert live_db.execute("SELECT count(*) FROM alert_programme_defaults WHERE programme = 'copd'").fetchone()[0] == 0


def test_a_specialist_may_a_nurse_and_a_citizen_may_not(client: httpx.Client, world: Any,
                                                        live_db: psycopg.Connection) -> None:
    new = _packaged() + 1
    since = _last_audit_id(live_db)
    before = int(live_db.execute("SELECT coalesce(max(id), 0) FROM audit_log").fetchone()[0])
    for who in (world.nurse, world.citizen):
        tok = _h(api_token(client, who))
        r = client.put(PATH, json={"value": new, "reason": "vil ændre"}, headers=tok)
        assert r.status_code == 403, r.text
        r = client.request("DELETE", PATH, json={"reason": "vil nulstille"}, headers=tok)
        assert r.status_code == 403, r.text
    refused = live_db.execute("SELECT actor, action, detail FROM audit_log WHERE id > %s AND NOT allowed ORDER BY id",
                         (before,)).fetchall()
    assert [(a.split(" ")[0], act) for a, act, _ in refused] == [(world.nurse, "role refused")] * 2 + [
        (world.citizen, "role refused")] * 2
    assert all(PATH in detail for _, _, detail in refused)
    assert _audit(live_db, since) == []
    # a nurse still reads the programme's thresholds and its what-if counts; a citizen does not
    nurse = _h(api_token(client, world.nurse))
    assert client.get("/api/v1/programmes/copd/thresholds", headers=nurse).status_code == 200
    citizen = _h(api_token(client, world.citizen))
    assert client.get("/api/v1/programmes/copd/thresholds", headers=citizen).status_code == 403
    assert client.get("/api/v1/programmes/copd/thresholds/audit", headers=citizen).status_code == 403

    specialist = _h(api_token(client, world.specialist))
    r = client.put(PATH, json={"value": new, "reason": "lungemedicinsk vurdering"}, headers=specialist)
    assert r.status_code == 200 and r.json()["value"] == new, r.text
    assert [row[0] for row in _audit(live_db, since)] == [r.json()["set_by"]] and world.specialist in r.json()["set_by"]
    # the admin's what-if counts over the API too (the admin saves programme defaults)
    admin = _h(api_token(client, world.admin))
    r = client.post("/api/v1/programmes/copd/thresholds/what-if", headers=admin,
                    json={"changes": [{"rule_id": RULE, "field": FIELD, "value": new}]})
    assert r.status_code == 200, r.text


def test_the_running_engine_judges_a_new_reading_by_the_saved_default(live: Any, client: httpx.Client,
                                                                      live_db: psycopg.Connection) -> None:
    """A citizen of the programme without their own override: a reading between the packaged red
    limit and the saved one is not red before the save, red once the engine has read the change
    (its cache lives 5 s), and not red again after the reset."""
    w = build_world(live_db)
    packaged = _packaged()
    new = packaged + 3
    admin = _h(api_token(client, w.admin))

    def judged(limit: float) -> Any:
        """Store a reading at packaged + 1 through ingest's writer; its evaluation when it was
        judged with ``limit`` in force, else None (the engine still had the previous value)."""
        rid = store_reading(live_db, live, patient_id=w.patient_id, agent_id=w.agent_id, kind="spo2",
                            components={"spo2": packaged + 1}, unit="%")
        row = wait_for(lambda: live_db.execute("SELECT thresholds, fired FROM reading_evaluations WHERE measurement_id"
                                          " = %s", (rid,)).fetchone(), timeout=30, what="the reading's evaluation")
        return row if row[0][RULE][FIELD] == limit else None

    before = wait_for(lambda: judged(packaged), timeout=30, interval=0.5, what="a reading judged by the packaged limit")
    assert RULE not in before[1]
    assert client.put(PATH, json={"value": new, "reason": "skærpet grænse"}, headers=admin).status_code == 200
    after = wait_for(lambda: judged(new), timeout=30, interval=0.5, what="a reading judged by the saved default")
    assert after[1][RULE] == "red"
    r = client.request("DELETE", PATH, json={"reason": "tilbage"}, headers=admin)
    assert r.status_code == 200, r.text
    reset = wait_for(lambda: judged(packaged), timeout=30, interval=0.5, what="a reading judged by the packaged limit")
    assert RULE not in reset[1]
