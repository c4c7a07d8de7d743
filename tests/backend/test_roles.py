"""The composition roots (backend/roles.py): one configuration object per process, roles that
start in order and refuse what does not exist."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from alert_rules.loader import default_dir
from backend.embedded import wait_for
from backend.errors import ConfigError
from backend.roles import API, INGEST, ROLES, RULES, SCHEDULER, check_roles


def test_roles_start_consumers_first_and_unknown_roles_are_refused() -> None:
    assert check_roles(ROLES) == (RULES, SCHEDULER, API, INGEST)
    assert check_roles([INGEST, RULES, INGEST]) == (RULES, INGEST)
    with pytest.raises(ConfigError, match="unknown role"):
        check_roles(["ingest", "alerting"])
    with pytest.raises(ConfigError):
        check_roles([])


def test_a_custom_rules_folder_is_what_the_web_the_api_and_the_engine_use(
    tmp_path: Path, database_url: str, mqtt_url: str, topics: Any
) -> None:
    from backend.settings import Settings
    from tests.backend.web._support import LiveServer, api_token, build_world, store_reading, web_login

    rules = tmp_path / "rules"
    # the previous packaged rules (alert_rules/previous), which have a yellow SpO2 band to move
    shutil.copytree(default_dir() / "previous", rules, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    copd = rules / "copd.yaml"
    text = copd.read_text()
    assert "red_low: 85 " in text and "yellow_low: 89 " in text
    copd.write_text(text.replace("red_low: 85 ", "red_low: 83 ", 1).replace("yellow_low: 89 ", "yellow_low: 92 ", 1))
    settings = Settings(database_url=database_url, mqtt_url=mqtt_url, topic_root=topics.root, demo=True,
                        alert_rules_dir=str(rules), pool_min_size=1, pool_max_size=4)
    with psycopg.connect(database_url, autocommit=True) as conn:
        world = build_world(conn)
    with LiveServer(settings) as live, httpx.Client(base_url=live.url, timeout=30) as client:
        runtime = live.app.state.runtime
        assert runtime.config.directory == rules
        inbox = next(s for s in runtime.services if s.name == "rules")
        engine = inbox.evaluate.__self__
        assert engine.config is runtime.config  # one object, not two loads of the same folder

        token = api_token(client, world.nurse)
        rows = client.get(f"/api/v1/patients/{world.patient_id}/thresholds",
                          headers={"authorization": f"Bearer {token}"}).json()
        spo2 = {r["field"]: (r["value"], r["default"]) for r in rows if r["rule_id"] == "copd.spo2.absolute"}
        assert spo2 == {"red_low": (83.0, 83.0), "yellow_low": (92.0, 92.0)}

        web_login(client, world.nurse)
        page = client.get(f"/patients/{world.patient_id}", headers={"accept": "text/html"}).text
        shown = re.search(r'value="copd\.spo2\.absolute"><input type="hidden" name="field" value="yellow_low">\s*'
                          r'<input name="value" size="5"[^>]*? value="([^"]+)"', page)
        assert shown is not None and float(shown.group(1)) == 92.0

        # 91 % is green under the previous rules (yellow below 89) and yellow under these.
        with psycopg.connect(database_url, autocommit=True) as conn:
            rid = store_reading(conn, live, patient_id=world.patient_id, agent_id=world.agent_id, kind="spo2",
                                components={"spo2": 91.0}, unit="%")
            row = wait_for(lambda: conn.execute(
                "SELECT thresholds FROM reading_evaluations WHERE measurement_id = %s", (rid,)).fetchone(),
                timeout=30, what="the reading evaluated")
            assert row[0]["copd.spo2.absolute"] == {"red_low": 83.0, "yellow_low": 92.0}
            alert = conn.execute("SELECT severity FROM alerts WHERE patient_id = %s AND rule_id = 'copd.spo2.absolute'"
                                 " AND state <> 'resolved'", (world.patient_id,)).fetchone()
            assert alert == ("yellow",)
