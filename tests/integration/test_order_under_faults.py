"""Alerts under faults equal alerts in measurement order.

Citizens' tablets come back online with a backlog and drain it through two ingest workers
(envelopes of each citizen committed in any order) while one ingest worker and the rules worker
are SIGKILLed mid-stream and replaced. For each such citizen a twin gets the very same readings
evaluated one at a time in measurement order by an in-process engine; at the end every
citizen's alerts equal their twin's as ``tests/backend/alerting/_order.py`` compares them: the
alert rows of the absolute limit exactly (state, severity, last value, breach and in-range
counts, last reading), every in-order alert of the trend rule exactly, with at most extra
resolved ones inside an in-order run (a trend decided, when its reading came, against a history
that still lacked the older readings: stored, so never deleted), and each alert's transitions
for what always holds (a transition already written is a log of what the system did then and
is never rewritten: an alert opened on a newer reading before the older ones came keeps its
"opened" value). The limits are in ``backend/alerting/README.md``.
"""

from __future__ import annotations

import os
import random
import signal
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from backend.alerting import FixedClock
from backend.alerting.config import load_config
from backend.alerting.engine import AlertEngine
from backend.embedded import wait_for
from backend.readings import StoredReading
from backend.store import open_pool
from edge_agent.spool import Spool
from edge_agent.uplink import Uplink
from tests.backend.alerting._order import alert_rows, assert_as_in_order, breaches, copd_spo2_dip
from tests.integration.conftest import Role
from vitals import MeasurementKind
from vitals.broker import parse_broker_url
from vitals.wire import Device, Measurement, new_measurement_id

ADDRESS = "C0:4E:30:00:00:07"
CITIZENS = 4
READINGS = 120  # each, one every 15 minutes: the last 30 hours


def test_alerts_after_worker_kills_equal_an_in_order_evaluation(
    roles: Any, database_url: str, mqtt_url: str, topics: Any, tmp_path: Path
) -> None:
    from backend import registry
    from backend.registry.demo import seed_teams

    rng = random.Random(20261130)
    now = datetime.now(UTC)
    times = [now - timedelta(minutes=15 * (READINGS - i)) for i in range(READINGS)]
    citizens: list[tuple[int, str, int, list[float]]] = []  # (patient, agent, twin patient, series)
    with psycopg.connect(database_url, autocommit=True) as conn:
        seed_teams(conn)
        for n in range(CITIZENS):
            tag = uuid.uuid4().hex[:8]
            p = registry.create_patient(conn, external_ref=f"order-{tag}", name=f"Borger {tag}", programme="copd",
                                        municipality="Aarhus")
            a = registry.enrol_agent(conn, agent_id=f"order-{tag}", patient_id=p.id)
            registry.register_device(conn, agent_id=a.id, address=ADDRESS, model="Nonin 3230")
            twin = registry.create_patient(conn, external_ref=f"twin-{tag}", name=f"Tvilling {tag}",
                                           programme="copd", municipality="Aarhus")
            registry.enrol_agent(conn, agent_id=f"twin-{tag}", patient_id=twin.id)
            citizens.append((p.id, a.id, twin.id, copd_spo2_dip(rng, READINGS) if n else [95.0] * READINGS))

    env = {**os.environ, "NEARCARE_DATABASE_URL": database_url, "NEARCARE_MQTT_URL": mqtt_url,
           "NEARCARE_TOPIC_ROOT": topics.root, "NEARCARE_INGEST_GROUP": f"ingest-{uuid.uuid4().hex[:6]}",
           "NEARCARE_DEMO": "true", "NEARCARE_POOL_MIN_SIZE": "1"}
    ingest: list[Role] = [roles(env, "ingest", "--no-migrate", "--worker", str(n)) for n in range(2)]
    rules = roles(env, "rules", "--no-migrate")
    for r in (*ingest, rules):
        r.wait_line(r"\bready\b")

    # The tablets come back with their backlogs: small envelopes, so both workers get each citizen's.
    spools, uplinks, ids = [], [], {}
    for pid, agent, _twin, series in citizens:
        spool = Spool(tmp_path / f"{agent}.sqlite")
        ms = [Measurement(id=new_measurement_id(), kind="spo2", values={"spo2": v}, unit="%", measured_at=at,
                          device_clock_trusted=True, received_at=now, device=Device(address=ADDRESS))
              for at, v in zip(times, series, strict=True)]
        spool.append_many(ms)
        ids[pid] = {m.id: i for i, m in enumerate(ms)}
        spools.append(spool)
        uplinks.append(Uplink(agent_id=agent, broker=parse_broker_url(mqtt_url), topics=topics, spool=spool,
                              batch_size=5, max_inflight=4, reconnect_min_s=0.2, reconnect_max_s=1.0,
                              resend_after_s=3.0, resend_max_s=6.0))
    try:
        for up in uplinks:
            up.start()
        with psycopg.connect(database_url, autocommit=True) as conn:
            total = CITIZENS * READINGS
            all_ids = [i for per in ids.values() for i in per]

            def stored() -> int:
                row = conn.execute("SELECT count(*) FROM measurements WHERE id = ANY(%s)", (all_ids,)).fetchone()
                return int(row[0]) if row else 0

            wait_for(lambda: stored() >= total // 4, timeout=60, what="a quarter stored")
            ingest[0].proc.send_signal(signal.SIGKILL)  # one worker lost for good, mid-stream
            rules.proc.send_signal(signal.SIGKILL)  # and the rules worker, mid-batch
            rules = roles(env, "rules", "--no-migrate")
            rules.wait_line(r"\bready\b")
            wait_for(lambda: sum(sp.depth for sp in spools) == 0, timeout=120, what="every reading confirmed")
            assert stored() == total
            wait_for(lambda: conn.execute("SELECT count(*) FROM reading_evaluations WHERE measurement_id = ANY(%s)",
                                          (all_ids,)).fetchone() == (total,),
                     timeout=60, what="every reading evaluated")
            wait_for(lambda: conn.execute("SELECT count(*) FROM rules_inbox WHERE measurement_id = ANY(%s)",
                                          (all_ids,)).fetchone() == (0,), what="the rules inbox drained")

            # The twins: the same readings, one at a time, in measurement order.
            pool = open_pool(database_url, min_size=1, max_size=2)
            try:
                engine = AlertEngine(pool=pool, config=load_config(), clock=FixedClock(now))
                for _pid, _agent, twin, series in citizens:
                    twin_agent = f"twin-{_agent.split('-', 1)[1]}"
                    twin_ids: dict[uuid.UUID, int] = {}
                    for i, (at, v) in enumerate(zip(times, series, strict=True)):
                        mid = uuid.uuid4()
                        conn.execute(
                            "INSERT INTO measurements (id, measured_at, patient_id, agent_id, kind, value, components,"
                            " unit, device_clock_trusted, agent_received_at) VALUES (%s,%s,%s,%s,'spo2',%s,%s,'%%',"
                            " true, %s)", (mid, at, twin, twin_agent, v, f'{{"spo2": {v}}}', now))
                        twin_ids[mid] = i
                        engine.on_stored([StoredReading(mid, twin, twin_agent, MeasurementKind.SPO2, {"spo2": v},
                                                        at, now)])
                    ids[twin] = twin_ids
                assert engine.failed == 0
            finally:
                pool.close()
            # Readings evaluated after a newer one of the same citizen (late: evaluated in their place).
            late = conn.execute(
                "SELECT count(*) FROM reading_evaluations e WHERE e.patient_id = ANY(%s) AND EXISTS (SELECT 1 FROM"
                " reading_evaluations n WHERE n.patient_id = e.patient_id AND n.measured_at > e.measured_at"
                " AND n.evaluated_at < e.evaluated_at)", ([pid for pid, *_ in citizens],)).fetchone()
            print(f"late readings: {late[0] if late else 0} of {total}")
            assert late is not None and late[0] > 0, "the faults must bring readings after newer ones"
            for pid, _agent, twin, series in citizens:
                faulted, in_order = alert_rows(conn, pid, ids[pid]), alert_rows(conn, twin, ids[twin])
                if len(set(series)) == 1:
                    assert faulted == in_order == []  # the stable citizen: nothing, in any order
                    continue
                assert_as_in_order(faulted, in_order, breaches(conn, twin, ids[twin]))
    finally:
        for up in uplinks:
            up.stop()
        for sp in spools:
            sp.close()
