"""What-if over the API: current against proposed thresholds over the last 90 days, equal to the
replay of the same stored readings; bad proposals get a 400; other citizens are refused."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg

from tests.backend.web._support import add_readings, api_token
from tests.backend.whatif._expected import expected

PROPOSAL = {"changes": [{"rule_id": "copd.spo2.absolute", "field": "yellow_low", "value": 95}]}


def test_patient_what_if_equals_the_replay(client: Any, world: Any, module_settings: Any) -> None:
    with psycopg.connect(module_settings.database_url, autocommit=True) as db:
        add_readings(db, patient_id=world.patient_id, agent_id=world.agent_id, device_id=world.device_id, days=20)
    token = api_token(client, world.nurse)
    r = client.post(f"/api/v1/patients/{world.patient_id}/thresholds/what-if", json=PROPOSAL,
                    headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    body = r.json()
    with psycopg.connect(module_settings.database_url, autocommit=True) as db:
        until = datetime.fromisoformat(body["until"]).astimezone(UTC)
        current = expected(db, patient_id=world.patient_id, now=until, overrides={})
        proposed = expected(db, patient_id=world.patient_id, now=until,
                            overrides={"copd.spo2.absolute": {"yellow_low": 95.0}})
    assert body["current"] == current and body["proposed"] == proposed
    assert body["readings"] >= 20 * 2 * 4 and body["days"] == 90 and body["citizens"] == 1
    assert proposed["alerts"] > current["alerts"]  # a yellow limit of 95 % raises more: the test can fail

    bad = {"changes": [{"rule_id": "copd.spo2.absolute", "field": "yellow_low", "value": 80}]}  # below red_low
    r = client.post(f"/api/v1/patients/{world.patient_id}/thresholds/what-if", json=bad,
                    headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 400 and "copd.spo2.absolute" in r.text
    r = client.post(f"/api/v1/patients/{world.hospital_patient_id}/thresholds/what-if", json=PROPOSAL,
                    headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403

    r = client.post("/api/v1/programmes/copd/thresholds/what-if", json=PROPOSAL,
                    headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    prog = r.json()
    assert prog["citizens"] >= 1 and prog["proposed"]["alerts"] >= prog["current"]["alerts"]


def test_programme_what_if_page_shows_the_apis_figures(client: Any, world: Any, module_settings: Any) -> None:
    import re

    from tests.backend.web._support import web_login

    with psycopg.connect(module_settings.database_url, autocommit=True) as db:
        add_readings(db, patient_id=world.patient_id, agent_id=world.agent_id, device_id=world.device_id, days=5)
    token = api_token(client, world.nurse)
    api = client.post("/api/v1/programmes/copd/thresholds/what-if", json=PROPOSAL,
                      headers={"Authorization": f"Bearer {token}"}).json()
    web_login(client, world.nurse)
    r = client.get("/programmes/copd/what-if", params={"rule_id": "copd.spo2.absolute", "field": "yellow_low",
                                                       "value": "95"}, headers={"accept": "text/html"})
    assert r.status_code == 200, r.text

    def cell(name: str) -> int:
        m = re.search(rf'id="{name}">(\d+)<', r.text)
        assert m is not None, name
        return int(m.group(1))

    shown = {side: {"alerts": cell(f"{side}-alerts"), "alert_days": cell(f"{side}-alert-days"),
                    "red": cell(f"{side}-red")} for side in ("current", "proposed")}
    assert shown == {"current": api["current"], "proposed": api["proposed"]}
    assert cell("what-if-citizens") == api["citizens"] >= 1
    r = client.get("/programmes/copd/what-if", params={"rule_id": "copd.spo2.absolute", "field": "yellow_low",
                                                       "value": "80"}, headers={"accept": "text/html"})
    assert r.status_code == 200 and 'id="what-if-error"' in r.text
