"""The production topology, as deploy/compose.yaml runs it: every role its own OS process.

The API without ingest, two ingest workers, one rules worker and two schedulers, against the
real PostgreSQL and Mosquitto, with a real agent (spool and uplink). It proves that no role
drops what the all-in-one process delivers: readings are stored and evaluated once, the live
worklist hears readings and alerts, a plan edit and a "seen" receipt reach the tablet, and when
the leading scheduler is SIGKILLed the other takes over and each due escalation and missed
measurement fires exactly once.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg

from backend.embedded import free_port, wait_for
from backend.roles import PRODUCTION_TOPOLOGY
from backend.scheduled import LEADER_LOCK
from edge_agent.spool import Spool
from edge_agent.uplink import Uplink
from tests.integration.conftest import START_S, Role
from vitals.broker import parse_broker_url
from vitals.wire import Device, Measurement, new_measurement_id

CPH = ZoneInfo("Europe/Copenhagen")


def _leader(conn: psycopg.Connection[Any]) -> str | None:
    row = conn.execute(
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s"
        "   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        LEADER_LOCK,
    ).fetchone()
    return None if row is None else str(row[0])


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _sse(url: str, cookies: httpx.Cookies, seen: list[str], stop: threading.Event) -> None:
    """The live worklist's event stream, as the browser reads it, until ``stop`` (the api process
    going away at the end of the test closes the stream: not an error)."""
    try:
        with httpx.Client(base_url=url, cookies=cookies, timeout=httpx.Timeout(30, read=None)) as c, \
                c.stream("GET", "/events", headers={"accept": "text/event-stream"}) as r:
            for line in r.iter_lines():
                if line.startswith("event: "):
                    seen.append(line[7:])
                if stop.is_set():
                    return
    except httpx.HTTPError:
        if not stop.is_set():
            seen.append("stream broken")


def test_every_role_in_its_own_process_delivers_what_the_all_in_one_does(
    roles: Callable[..., Role], database_url: str, mqtt_url: str, topics: Any, tmp_path: Path
) -> None:
    from backend.registry.demo import seed_teams
    from tests.backend.web._support import PASSWORD, api_token, build_world, web_login

    with psycopg.connect(database_url, autocommit=True) as conn:
        seed_teams(conn)
        world = build_world(conn, municipality="Aarhus")
    port = free_port()
    env = {**os.environ, "NEARCARE_DATABASE_URL": database_url, "NEARCARE_MQTT_URL": mqtt_url,
           "NEARCARE_TOPIC_ROOT": topics.root, "NEARCARE_INGEST_GROUP": f"ingest-{world.tag}",
           "NEARCARE_DEMO": "true", "NEARCARE_LOG_LEVEL": "INFO", "NEARCARE_POOL_MIN_SIZE": "1",
           "NEARCARE_SCHEDULER_ELECTION_S": "1", "NEARCARE_ESCALATION_CHECK_S": "1", "NEARCARE_MISSED_CHECK_S": "1",
           "NEARCARE_HTTP_PORT": str(port)}
    # As deploy/compose.yaml runs them (the deploy test holds it to the same topology).
    schedulers = [roles(env, "scheduler", "--no-migrate") for _ in range(PRODUCTION_TOPOLOGY["scheduler"])]
    rules = [roles(env, "rules", "--no-migrate") for _ in range(PRODUCTION_TOPOLOGY["rules"])]
    ingest = [roles(env, "ingest", "--no-migrate", "--worker", str(n)) for n in range(PRODUCTION_TOPOLOGY["ingest"])]
    assert PRODUCTION_TOPOLOGY["api"] == 1
    api = roles(env, "api")
    for r in (*schedulers, *rules, *ingest):
        r.wait_line(r"\bready\b")
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: api.proc.poll() is not None or _answers(f"{url}/readyz"), timeout=START_S,
             what="the api process ready")
    assert api.proc.poll() is None, "".join(api.output)[-3000:]
    readyz = httpx.get(f"{url}/readyz").json()["checks"]
    assert "ingest" not in readyz and "rules" not in readyz and readyz["events"] == "ok", readyz

    client = httpx.Client(base_url=url, timeout=30)
    web_login(client, world.nurse, PASSWORD)
    seen_events: list[str] = []
    stop_sse = threading.Event()
    threading.Thread(target=_sse, args=(url, client.cookies, seen_events, stop_sse), daemon=True).start()

    # The tablet: the real spool and uplink.
    spool = Spool(tmp_path / "spool.sqlite")
    uplink = Uplink(agent_id=world.agent_id, broker=parse_broker_url(mqtt_url), topics=topics, spool=spool,
                    reconnect_min_s=0.2, reconnect_max_s=1.0, resend_after_s=5.0).start()
    try:
        now = datetime.now(UTC)
        readings = [Measurement(id=new_measurement_id(), kind="spo2", values={"spo2": 96.0 if i < 199 else 80.0},
                                unit="%", measured_at=now - timedelta(seconds=200 - i), device_clock_trusted=True,
                                received_at=now, device=Device(address="AA:BB:CC:DD:EE:01"))
                    for i in range(200)]
        red = readings[-1]
        spool.append_many(readings)
        ids = [r.id for r in readings]
        with psycopg.connect(database_url, autocommit=True) as conn:
            wait_for(lambda: spool.depth == 0, timeout=60, what="every reading confirmed to the tablet")
            assert conn.execute("SELECT count(*) FROM measurements WHERE id = ANY(%s)", (ids,)).fetchone() == (200,)
            wait_for(lambda: conn.execute("SELECT count(*) FROM reading_evaluations WHERE measurement_id = ANY(%s)",
                                          (ids,)).fetchone() == (200,), timeout=60, what="every reading evaluated")
            # The engine commits its evaluations just before the inbox rows go: wait for both.
            wait_for(lambda: conn.execute("SELECT count(*) FROM rules_inbox WHERE measurement_id = ANY(%s)",
                                          (ids,)).fetchone() == (0,), what="the rules inbox drained")
            alert_id = wait_for(lambda: conn.execute(
                "SELECT id FROM alerts WHERE patient_id = %s AND rule_id = 'copd.spo2.absolute' AND state = 'open'",
                (world.patient_id,)).fetchone(), what="the red alert")[0]
            wait_for(lambda: {"reading", "alert"} <= set(seen_events), timeout=30,
                     what=f"reading and alert events on the live worklist (got {sorted(set(seen_events))})")

            # The leading scheduler dies; the standby takes over.
            wait_for(lambda: _leader(conn), timeout=START_S, what="a scheduler leader")
            leader_name = _leader(conn)
            leader = next(s for s in schedulers if leader_name == f"nearcare-scheduler-{s.proc.pid}")
            standby = next(s for s in schedulers if s is not leader)
            killed_at = time.monotonic()
            leader.proc.send_signal(signal.SIGKILL)
            leader.proc.wait(10)
            wait_for(lambda: _leader(conn) == f"nearcare-scheduler-{standby.proc.pid}", timeout=60,
                     what="the standby scheduler leading")
            takeover = time.monotonic() - killed_at
            print(f"\nscheduler takeover after SIGKILL of the leader: {takeover:.2f} s "
                  f"(election every {env['NEARCARE_SCHEDULER_ELECTION_S']} s)")

            # Due now: the red alert's SLA has passed, and a planned weight slot went unmet.
            conn.execute("UPDATE alerts SET escalation_due_at = now() - interval '1 minute' WHERE id = %s",
                         (alert_id,))
            due = (datetime.now(CPH) - timedelta(hours=2)).strftime("%H:%M")
            token = web_login(client, world.nurse, PASSWORD)
            r = client.post(f"/patients/{world.patient_id}/plan",
                            data={"csrf": token, "kind": "weight", "times": due, "grace_minutes": "60"})
            assert r.status_code in (200, 303), r.text[:500]
            conn.execute("UPDATE monitoring_plans SET starts_at = now() - interval '1 day' WHERE patient_id = %s",
                         (world.patient_id,))
            wait_for(lambda: conn.execute("SELECT count(*) FROM alert_transitions WHERE alert_id = %s"
                                          " AND action = 'escalated'", (alert_id,)).fetchone()[0] >= 1,
                     timeout=30, what="the escalation by the new leader")
            wait_for(lambda: conn.execute("SELECT count(*) FROM missed_slots WHERE patient_id = %s AND kind = 'weight'",
                                          (world.patient_id,)).fetchone()[0] >= 1,
                     timeout=30, what="the missed measurement by the new leader")
            # Absence cannot be awaited: give the new leader three more rounds of each job (every
            # second), in which any duplicate would show.
            time.sleep(3.0)
            assert conn.execute("SELECT count(*) FROM alert_transitions WHERE alert_id = %s AND action = 'escalated'",
                                (alert_id,)).fetchone() == (1,)
            blue = conn.execute(
                "SELECT a.id, count(t.*) FILTER (WHERE t.action = 'opened') FROM alerts a"
                " JOIN alert_transitions t ON t.alert_id = a.id WHERE a.patient_id = %s AND a.severity = 'blue'"
                " GROUP BY a.id", (world.patient_id,)).fetchall()
            assert len(blue) == 1 and blue[0][1] == 1, blue
            assert conn.execute("SELECT count(*) FROM missed_slots WHERE patient_id = %s AND kind = 'weight'",
                                (world.patient_id,)).fetchone() == (1,)

            # The plan edit (made in the api process) reaches the tablet…
            wait_for(lambda: (p := spool.plan()) is not None and any(m.kind.value == "weight" for m in p.measurements),
                     timeout=30, what="the edited plan on the tablet")
            # …and so does the kvittering's "seen" receipt for the reading behind the alert.
            bearer = api_token(client, world.nurse)
            r = client.post(f"/api/v1/alerts/{alert_id}/acknowledge", json={"note": "ringet op, har det godt"},
                            headers={"authorization": f"Bearer {bearer}"})
            assert r.status_code == 200, r.text
            wait_for(lambda: "seen" in spool.receipts_for(red.id), timeout=30, what="'seen' on the tablet")
            # The relay deletes a message in the transaction that waited for its PUBACK: the tablet
            # may have it a moment before that commits.
            wait_for(lambda: conn.execute("SELECT count(*) FROM mqtt_outbox").fetchone() == (0,),
                     what="the outbox emptied by the relays")
    finally:
        stop_sse.set()
        uplink.stop()
        spool.close()
        client.close()
