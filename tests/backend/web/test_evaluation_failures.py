"""Issue 12, "evaluation failures are loud": a citizen whose readings cannot be evaluated gets a
technical alert to the owning team within a minute, /readyz says degraded and a metric counts it,
and another citizen's readings in the same batch are evaluated as usual.

The failing reading is written past ingest's bounds (a year-1 reading, as stored before the
bounds existed: it made the engine raise OverflowError for the whole batch of that citizen)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg

from backend.alerting.failures import RULE_ID, TITLE
from backend.embedded import wait_for
from tests.backend.web._support import build_world, open_alert_id, store_reading


def test_one_citizens_failure_is_loud_and_never_fails_another_citizens_alarms(live: Any,
                                                                               client: httpx.Client) -> None:
    with psycopg.connect(live.app.state.settings.database_url, autocommit=True) as conn:
        sick, well = build_world(conn), build_world(conn)
        bad = store_reading(conn, live, patient_id=sick.patient_id, agent_id=sick.agent_id, kind="spo2",
                            components={"spo2": 80.0}, unit="%", at=datetime(1, 1, 2, tzinfo=UTC))
        started = time.monotonic()
        store_reading(conn, live, patient_id=well.patient_id, agent_id=well.agent_id, kind="spo2",
                      components={"spo2": 80.0}, unit="%")
        try:
            open_alert_id(conn, well.patient_id, "red", timeout=30)

            def technical() -> Any:
                return conn.execute(
                    "SELECT title, team_key, severity FROM alerts WHERE patient_id = %s AND rule_id = %s"
                    " AND state = 'open'", (sick.patient_id, RULE_ID)).fetchone()

            title, team, severity = wait_for(technical, what="the evaluation-failure alert", timeout=60)
            assert time.monotonic() - started < 60
            assert title == TITLE and severity == "technical"
            # Routed like any alert of the citizen: to the municipal team that owns them.
            assert team == f"sygepleje-{sick.tag}"
            assert conn.execute("SELECT count(*) FROM alert_evaluation_failures WHERE measurement_id = %s",
                                (bad,)).fetchone() == (1,)

            r = client.get("/readyz")
            assert r.status_code == 200 and r.json()["status"] == "degraded", r.text
            assert r.json()["checks"]["evaluations"].startswith("degraded:")
            metrics = client.get("/metrics").text
            line = next(m for m in metrics.splitlines() if m.startswith("nearcare_alert_evaluation_failed_patients "))
            assert float(line.split()[1]) >= 1
        finally:
            # The reading goes (it could never be evaluated); the failure with it; the alert resolves.
            conn.execute("DELETE FROM rules_inbox WHERE measurement_id = %s", (bad,))
            conn.execute("DELETE FROM measurement_ids WHERE id = %s", (bad,))
            conn.execute("DELETE FROM measurements WHERE id = %s", (bad,))
            conn.execute("DELETE FROM alert_evaluation_failures WHERE measurement_id = %s", (bad,))
        from backend.alerting.failures import check_evaluation_failures
        from backend.alerting.lifecycle import TeamDirectory

        check_evaluation_failures(conn, now=datetime.now(UTC), config=live.app.state.runtime.parts.config,
                                  teams=TeamDirectory(), notifier=None, patient_ids=[sick.patient_id])
        assert conn.execute("SELECT state, resolve_note FROM alerts WHERE patient_id = %s AND rule_id = %s",
                            (sick.patient_id, RULE_ID)).fetchone() == ("resolved", "alarmerne beregnes igen")
        # /readyz speaks for the whole database: other tests of the session may have failures of
        # their own citizens in it (the live hypothesis test sends arbitrary readings).
        others = conn.execute("SELECT count(*) FROM alert_evaluation_failures").fetchone()[0]
        check = client.get("/readyz").json()["checks"]["evaluations"]
        assert check == "ok" if others == 0 else check.startswith("degraded:"), (check, others)
