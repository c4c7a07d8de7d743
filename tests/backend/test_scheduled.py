from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from apscheduler.triggers.interval import IntervalTrigger

from backend.alerting.clock import FixedClock
from backend.scheduled import JobSpec, Scheduler


def test_one_leader_runs_jobs_at_start_and_takeover(database_url: str) -> None:
    ran: list[tuple[str, datetime]] = []
    clock = FixedClock(datetime(2026, 1, 5, 17, 45, tzinfo=UTC))

    def make(name: str) -> Scheduler:
        job = JobSpec("test.job", lambda now: ran.append((name, now)), IntervalTrigger(seconds=0.2))
        return Scheduler(database_url=database_url, jobs=[job], clock=clock, election_seconds=0.3)

    a, b = make("a"), make("b")
    a.start()
    try:
        deadline = time.monotonic() + 10
        while not ran and time.monotonic() < deadline:
            time.sleep(0.02)
        b.start()
        time.sleep(1.0)
        assert {n for n, _ in ran} == {"a"}  # b stands by while a holds the advisory lock
        assert ran[0][1] == clock.now()  # jobs get the scheduler's clock
        assert a.ready() == (True, "leader") and b.ready() == (True, "standby")
        a.stop()
        deadline = time.monotonic() + 10
        while not any(n == "b" for n, _ in ran) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any(n == "b" for n, _ in ran)  # b took over
    finally:
        a.stop()
        b.stop()


def test_a_failing_job_does_not_stop_the_scheduler(database_url: str) -> None:
    calls: list[Any] = []

    def boom(now: datetime) -> None:
        calls.append(now)
        raise RuntimeError("database hiccup")

    s = Scheduler(database_url=database_url, jobs=[JobSpec("test.boom", boom, IntervalTrigger(seconds=0.1))])
    s.start()
    try:
        deadline = time.monotonic() + 10
        while len(calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(calls) >= 3 and "database hiccup" in s.errors["test.boom"]
    finally:
        s.stop()


def test_the_daily_rollup_job_fills_the_trend_days(database_url: str) -> None:
    """Nothing else fills measurement_daily on plain PostgreSQL (on TimescaleDB it refreshes the
    continuous aggregate): the leader's job does, for the last two local days."""
    from datetime import UTC, datetime, timedelta

    import psycopg

    from backend import registry
    from backend.alerting.config import NotifierSettings, load_config
    from backend.alerting.engine import AlertEngine
    from backend.alerting.notify import Dispatcher
    from backend.scheduled import alerting_jobs
    from backend.store import open_pool

    now = datetime.now(UTC)
    with psycopg.connect(database_url, autocommit=True) as conn:
        p = registry.create_patient(conn, external_ref=f"rollup-{now.timestamp()}", name="Rollup", programme="copd",
                                    municipality="Aarhus")
        registry.enrol_agent(conn, agent_id=f"rollup-{int(now.timestamp() * 1000)}", patient_id=p.id)
        agent = conn.execute("SELECT id FROM agents WHERE patient_id = %s", (p.id,)).fetchone()[0]
        for v in (94.0, 96.0):
            conn.execute("INSERT INTO measurements (id, measured_at, patient_id, agent_id, kind, value, components,"
                         " unit, device_clock_trusted, agent_received_at) VALUES (gen_random_uuid(), %s, %s, %s,"
                         " 'spo2', %s, %s, '%%', true, %s)", (now - timedelta(minutes=5), p.id, agent, v,
                                                              f'{{"spo2": {v}}}', now))
    pool = open_pool(database_url, min_size=1, max_size=2)
    try:
        cfg, notifier = load_config(), NotifierSettings()
        jobs = {j.id: j for j in alerting_jobs(pool=pool, engine=AlertEngine(pool=pool, config=cfg), config=cfg,
                                               dispatcher=Dispatcher(pool=pool, settings=notifier), notifier=notifier)}
        jobs["store.daily_rollup"].func(now)
    finally:
        pool.close()
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT n, mean FROM measurement_daily WHERE patient_id = %s AND kind = 'spo2'"
                           " AND component = 'spo2'", (p.id,)).fetchone()
    assert row == (2, 95.0)
