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


def test_programme_settings_page_links_every_threshold_to_its_what_if(client: Any, world: Any) -> None:
    """/programmes/{programme}/thresholds lists each threshold of the programme's rules with a
    what-if link; the link shows the replay at the value in force on both sides (same figures),
    and the what-if page links back. Clinicians and admins see it; a citizen does not."""
    import html
    import re
    from urllib.parse import parse_qs, urlsplit

    from alert_rules.loader import load_ruleset
    from tests.backend.web._support import web_login

    web_login(client, world.nurse)
    r = client.get("/programmes/copd/thresholds", headers={"accept": "text/html"})
    assert r.status_code == 200, r.text
    links = [html.unescape(h) for h in re.findall(r'class="what-if" href="([^"]+)"', r.text)]
    linked = {(q["rule_id"][0], q["field"][0]) for q in (parse_qs(urlsplit(h).query) for h in links)}
    assert linked == {(rule.id, f) for rule in load_ruleset().rules_for("copd") for f in rule.default_thresholds()}
    href = next(h for h in links if "rule_id=copd.oximetry.personal" in h and "field=yellow&" in h)
    r = client.get(href, headers={"accept": "text/html"})
    assert r.status_code == 200 and 'id="what-if-result"' in r.text
    cells = {name: re.findall(rf'id="{name}">(\d+)<', r.text) for name in
             ("current-alerts", "proposed-alerts", "current-red", "proposed-red")}
    assert all(len(v) == 1 for v in cells.values()), cells
    assert cells["current-alerts"] == cells["proposed-alerts"] and cells["current-red"] == cells["proposed-red"]
    assert 'href="/programmes/copd/thresholds"' in r.text
    web_login(client, world.admin)
    for path in ("/programmes/heart_failure/thresholds", href):
        assert client.get(path, headers={"accept": "text/html"}).status_code == 200, path
    web_login(client, world.citizen)
    for path in ("/programmes/copd/thresholds", href):
        assert client.get(path, headers={"accept": "text/html"}).status_code == 403, path
