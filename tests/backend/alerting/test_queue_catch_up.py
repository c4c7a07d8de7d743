"""The evaluation queue between ingest and the rules, and the catch-up job behind it."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from backend.alerting import FixedClock
from backend.alerting.config import NotifierSettings, load_config
from backend.alerting.engine import AlertEngine
from backend.alerting.jobs import catch_up, failed_readings
from backend.alerting.worker import EvaluationQueue
from backend.embedded import wait_for
from backend.readings import StoredReading
from vitals.kinds import MeasurementKind

CPH = ZoneInfo("Europe/Copenhagen")
T0 = datetime(2026, 11, 24, 17, 0, tzinfo=CPH)  # a Tuesday evening: municipal cover


def _reading(pid: int, at: datetime, n: int = 0) -> StoredReading:
    return StoredReading(id=uuid.uuid4(), patient_id=pid, agent_id="a", kind=MeasurementKind.SPO2,
                         components={"spo2": 90.0 + n}, measured_at=at, stored_at=at)


def test_queue_merges_hand_overs_and_keeps_each_patients_order() -> None:
    seen: list[list[StoredReading]] = []
    gate = threading.Event()

    def evaluate(batch: Sequence[StoredReading]) -> None:
        gate.wait(5)  # the first batch is slow, so the hand-overs behind it pile up and merge
        seen.append(list(batch))

    q = EvaluationQueue(evaluate=evaluate, max_batch=1000)
    q.start()
    handed: dict[int, list[uuid.UUID]] = {1: [], 2: [], 3: []}
    for i in range(60):
        pid = 1 + i % 3
        r = _reading(pid, T0 + timedelta(seconds=i), i)
        handed[pid].append(r.id)
        q([r])
    gate.set()
    assert q.wait_idle(10)
    q.stop()
    got: dict[int, list[uuid.UUID]] = {1: [], 2: [], 3: []}
    for batch in seen:
        for r in batch:
            got[r.patient_id].append(r.id)
    assert got == handed  # every reading once, each patient's in the order handed over
    assert len(seen) < 60 and max(len(b) for b in seen) > 1  # merged into larger batches
    assert q.handed_over == 60 and q.depth == 0


def test_full_queue_pushes_back_then_leaves_readings_to_catch_up() -> None:
    release = threading.Event()
    q = EvaluationQueue(evaluate=lambda batch: release.wait(10), max_readings=2, max_batch=1, put_timeout_s=0.3)
    q.start()
    try:
        q([_reading(1, T0)])  # taken by the worker, which blocks
        deadline = time.monotonic() + 5
        while q.depth != 1 or q._depth:  # until the worker holds it
            assert time.monotonic() < deadline
            time.sleep(0.01)
        q([_reading(1, T0, 1), _reading(1, T0, 2)])  # fills the queue
        t = time.monotonic()
        q([_reading(1, T0, 3)])  # must wait (backpressure), then give up to the catch-up job
        assert time.monotonic() - t >= 0.25
        assert q.left_to_catch_up == 1
    finally:
        release.set()
        q.stop()
    assert q.depth == 0


def test_worker_survives_a_failing_evaluation() -> None:
    calls: list[int] = []

    def evaluate(batch: Sequence[StoredReading]) -> None:
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("database went away")

    q = EvaluationQueue(evaluate=evaluate)
    q.start()
    q([_reading(1, T0)])
    assert q.wait_idle(5)
    q([_reading(1, T0 + timedelta(minutes=1))])
    assert q.wait_idle(5)
    assert q.running and q.errors == 1 and len(calls) == 2
    q.stop()
    assert not q.running


def _store(conn: Any, pid: int, agent: str, at: datetime, spo2: float) -> StoredReading:
    from psycopg.types.json import Jsonb

    mid = uuid.uuid4()
    stored = conn.execute(
        "INSERT INTO measurements (id, measured_at, patient_id, agent_id, kind, value, components, unit,"
        " device_clock_trusted, agent_received_at) VALUES (%s,%s,%s,%s,'spo2',%s,%s,'%%',true,%s) RETURNING stored_at",
        (mid, at, pid, agent, spo2, Jsonb({"spo2": spo2}), at),
    ).fetchone()[0]
    return StoredReading(id=mid, patient_id=pid, agent_id=agent, kind=MeasurementKind.SPO2,
                         components={"spo2": spo2}, measured_at=at, stored_at=stored)


@pytest.mark.parametrize("webhook", [False, True], ids=["events-only", "webhook"])
def test_catch_up_evaluates_readings_stored_before_the_sink_existed_exactly_once(own_db_url: str,
                                                                                 webhook: bool) -> None:
    from backend.store import open_pool

    with psycopg.connect(own_db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO teams (key, name, sector, municipality) VALUES"
                     " ('aarhus-sygepleje', 'Aarhus Kommune sygepleje', 'municipal', 'Aarhus')")
        pid = int(conn.execute("INSERT INTO patients (external_ref, name, programme, municipality)"
                               " VALUES ('cu-1', 'Borger', 'copd', 'Aarhus') RETURNING id").fetchone()[0])
        conn.execute("INSERT INTO agents (id, patient_id) VALUES ('cu-agent', %s)", (pid,))
        # Stored by ingest while no alerting sink was registered yet: red, then red again.
        readings = [_store(conn, pid, "cu-agent", T0 - timedelta(minutes=10 - i), 84.0) for i in range(3)]

    notifier = NotifierSettings(webhook_url="http://127.0.0.1:9/hook", webhook_secret="s") if webhook else None
    pool = open_pool(own_db_url, min_size=1, max_size=4)
    try:
        engine = AlertEngine(pool=pool, config=load_config(), clock=FixedClock(T0), notifier=notifier)
        queue = EvaluationQueue(evaluate=engine.on_stored)
        queue.start()
        # The same readings reach the rules twice at once: late through the sink, and through
        # the catch-up job started with the service.
        results = []

        def run_catch_up() -> None:
            with pool.connection() as conn:
                results.append(catch_up(conn, evaluate=engine.on_stored, grace=timedelta(0)))

        t = threading.Thread(target=run_catch_up)
        t.start()
        queue(readings)
        t.join(30)
        assert queue.wait_idle(30)
        queue.stop()
        with pool.connection() as conn:
            again = catch_up(conn, evaluate=engine.on_stored, grace=timedelta(0))
    finally:
        pool.close()

    assert results and results[0].complete and again.found == 0
    with psycopg.connect(own_db_url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM reading_evaluations WHERE measurement_id = ANY(%s)",
                            ([r.id for r in readings],)).fetchone()[0] == 3
        alerts = conn.execute("SELECT id, breach_count, last_reading_id FROM alerts WHERE patient_id = %s"
                              " AND rule_id = 'copd.spo2.absolute'", (pid,)).fetchall()
        assert len(alerts) == 1, alerts  # one alert, not one per path
        alert_id, breaches, last = alerts[0]
        assert breaches == 3 and last == readings[-1].id
        actions = [r[0] for r in conn.execute("SELECT action FROM alert_transitions WHERE alert_id = %s", (alert_id,))]
        assert actions == ["opened"]  # the repeat breaches change no state: no transitions
        channels = sorted(r[0] for r in conn.execute("SELECT channel FROM notification_log WHERE alert_id = %s",
                                                     (alert_id,)))
        assert channels == (["events", "webhook"] if webhook else ["events"])  # notified once
        assert engine.evaluated + engine.skipped >= 3 and engine.failed == 0


def test_catch_up_waits_for_a_transaction_still_open(own_db_url: str) -> None:
    """A reading whose transaction began before the scan but commits after it is not skipped."""
    with psycopg.connect(own_db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO teams (key, name, sector, municipality) VALUES"
                     " ('aarhus-sygepleje', 'Aarhus Kommune sygepleje', 'municipal', 'Aarhus')")
        pid = int(conn.execute("INSERT INTO patients (external_ref, name, programme, municipality)"
                               " VALUES ('cu-2', 'Borger', 'copd', 'Aarhus') RETURNING id").fetchone()[0])
        conn.execute("INSERT INTO agents (id, patient_id) VALUES ('cu-agent-2', %s)", (pid,))
        # On TimescaleDB the first row in a time range creates that range's chunk, and other
        # inserts into the chunk wait until the creating transaction commits: the quick reading
        # below would wait for the slow one. Ingest's transactions are short, so that never
        # shows; here one is held open on purpose. So the chunk is created and committed first,
        # by a reading that is then removed (the catch-up job must see only the two below). On
        # plain PostgreSQL this changes nothing.
        _store(conn, pid, "cu-agent-2", T0, 95.0)
        conn.execute("DELETE FROM measurements WHERE agent_id = 'cu-agent-2'")
    evaluated: list[uuid.UUID] = []
    slow = psycopg.connect(own_db_url)  # a slow ingest transaction: stored_at = its start
    try:
        slow_reading = _store(slow, pid, "cu-agent-2", T0, 95.0)
        time.sleep(0.05)
        with psycopg.connect(own_db_url, autocommit=True) as conn:
            quick = _store(conn, pid, "cu-agent-2", T0 + timedelta(minutes=1), 95.0)
            first = catch_up(conn, evaluate=lambda rs: evaluated.extend(r.id for r in rs), grace=timedelta(0))
        assert evaluated == [] and first.found == 0  # the mark stays before the open transaction
        assert first.high_water <= slow_reading.stored_at
        slow.commit()
    finally:
        slow.close()
    pool_evaluated: list[uuid.UUID] = []
    with psycopg.connect(own_db_url, autocommit=True) as conn:
        second = catch_up(conn, evaluate=lambda rs: pool_evaluated.extend(r.id for r in rs), grace=timedelta(0))
        assert second.found == 2 and sorted(pool_evaluated) == sorted([slow_reading.id, quick.id])
        # This evaluator stores nothing, so the readings still lack an evaluation: the mark is held
        # at the oldest of them and the next run looks again.
        assert not second.complete and second.high_water == slow_reading.stored_at
        assert conn.execute("SELECT high_water FROM alert_catch_up").fetchone()[0] == slow_reading.stored_at


def test_failed_evaluation_is_recorded_retried_and_the_worker_goes_on(seed: Any, pool: Any, db: Any) -> None:
    sick, well = seed.patient("copd", "Aarhus"), seed.patient("copd", "Aarhus")
    engine = AlertEngine(pool=pool, config=load_config(), clock=FixedClock(T0))
    real = engine._evaluate
    bad = seed.reading(sick, "spo2", T0, spo2=84.0)
    ok = seed.reading(well, "spo2", T0, spo2=84.0)

    def flaky(rules: Any, ctx: Any, obs: Any, programme: str) -> Any:
        if obs.id == str(bad.id):
            raise RuntimeError("rule bug")
        return real(rules, ctx, obs, programme)

    engine._evaluate = flaky  # type: ignore[method-assign]
    queue = EvaluationQueue(evaluate=engine.on_stored)
    queue.start()
    try:
        queue([bad, ok])
        assert queue.wait_idle(30)
        assert queue.running and engine.failed == 1
        row = db.execute("SELECT attempts, error FROM alert_evaluation_failures WHERE measurement_id = %s",
                         (bad.id,)).fetchone()
        assert row is not None and "rule bug" in row[1]
        # The other patient's reading went through in its own transaction.
        assert db.execute("SELECT count(*) FROM alerts WHERE patient_id = %s", (well,)).fetchone()[0] == 1
        # The sick patient's reading raised no clinical alert; the failure itself is loud: a
        # technical alert to the owning team (backend.alerting.failures).
        assert db.execute("SELECT array_agg(rule_id) FROM alerts WHERE patient_id = %s",
                          (sick,)).fetchone()[0] == ["system.evaluation_failed"]
        # The bug is fixed; the scheduled retry picks the reading up from the store.
        engine._evaluate = real  # type: ignore[method-assign]
        with pool.connection() as conn:
            retry = [r for r in failed_readings(conn) if r.id == bad.id]
        assert len(retry) == 1
        queue(retry)
        assert queue.wait_idle(30)
    finally:
        queue.stop()
    assert db.execute("SELECT count(*) FROM alert_evaluation_failures WHERE measurement_id = %s",
                      (bad.id,)).fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM reading_evaluations WHERE measurement_id = %s",
                      (bad.id,)).fetchone()[0] == 1
    assert db.execute("SELECT count(*) FROM alerts WHERE patient_id = %s AND rule_id = 'copd.spo2.absolute'",
                      (sick,)).fetchone()[0] == 1


def test_readings_stored_before_the_rules_start_are_evaluated_once_not_lost(
    seed: Any, pool: Any, db: Any, settings: Any
) -> None:
    """Ingest stores while no rules worker runs: the inbox keeps the readings until one does, and
    a second worker never evaluates a reading twice."""
    from backend.alerting.engine import AlertEngine
    from backend.alerting.inbox import RulesInbox

    pid = seed.patient("copd", "Aarhus")
    rs = [seed.reading(pid, "spo2", T0 + timedelta(minutes=i), spo2=84.0 - i) for i in range(3)]
    db.execute("INSERT INTO rules_inbox (measurement_id, patient_id, measured_at) SELECT * FROM unnest(%s::uuid[],"
               " %s::bigint[], %s::timestamptz[])", ([r.id for r in rs], [pid] * 3, [r.measured_at for r in rs]))
    engine = AlertEngine(pool=pool, config=load_config(), clock=FixedClock(T0 + timedelta(minutes=5)))
    calls: list[list[Any]] = []
    workers = [RulesInbox(database_url=settings.database_url,
                          evaluate=lambda batch: (calls.append(list(batch)), engine.on_stored(batch)))
               for _ in range(2)]
    for w in workers:
        w.start()
    try:
        wait_for(lambda: db.execute("SELECT count(*) FROM rules_inbox WHERE patient_id = %s",
                                    (pid,)).fetchone()[0] == 0, what="the inbox drained")
    finally:
        for w in workers:
            w.stop()
    assert db.execute("SELECT count(*) FROM reading_evaluations WHERE measurement_id = ANY(%s)",
                      ([r.id for r in rs],)).fetchone()[0] == 3
    handed = [r.id for batch in calls for r in batch if r.patient_id == pid]
    assert sorted(handed) == sorted(r.id for r in rs)  # each handed on once, by one worker
    assert [r.measured_at for batch in calls for r in batch if r.patient_id == pid] == [r.measured_at for r in rs]
