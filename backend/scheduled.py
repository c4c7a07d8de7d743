"""Scheduled jobs (APScheduler 3.x), run by one leader among the backend instances.

Leadership is a PostgreSQL session advisory lock held on a dedicated connection: whoever holds
it runs the jobs; the others keep trying, and take over within one election interval when the
leader's connection goes away. Jobs keep their state in the database (due times, reported
slots, the notification log), and every job runs once right at start, so an escalation that
fell due while no backend was running fires once, immediately after start.

Job ids are stable: ``alerting.catch_up`` (stored readings with no evaluation yet: the queue
between ingest and the rules is a fast path, this is the guarantee), ``alerting.escalations``,
``alerting.missed_measurements``, ``alerting.technical``, ``alerting.baselines``, ``alerting.notifications``,
``alerting.retry_evaluations``, plus ``scheduler.leader``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

log = logging.getLogger(__name__)

LEADER_LOCK = (0x6E63, 0x5C4E)  # ("nc", "sched"): one advisory lock key for the leader


@dataclass(frozen=True, slots=True)
class JobSpec:
    id: str
    func: Callable[[datetime], Any]
    """Called with ``now`` from the scheduler's clock."""
    trigger: Any
    run_at_start: bool = True


class LeaderLock:
    """A session advisory lock on its own connection."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()

    @property
    def held(self) -> bool:
        return self._conn is not None

    def try_acquire(self) -> bool:
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.execute("SELECT 1")
                    return True
                except psycopg.Error:
                    log.warning("lost the scheduler leader connection")
                    self._drop()
            try:
                # The name says which process leads (pg_stat_activity), for operators and tests.
                conn = psycopg.connect(self.database_url, autocommit=True, connect_timeout=5,
                                       application_name=f"nearcare-scheduler-{os.getpid()}")
            except psycopg.Error as exc:
                log.warning("scheduler cannot reach the database for leadership: %s", exc)
                return False
            got = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", LEADER_LOCK).fetchone()
            if got and got[0]:
                self._conn = conn
                log.info("this instance is the scheduler leader")
                return True
            conn.close()
            return False

    def release(self) -> None:
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(psycopg.Error):
                    self._conn.execute("SELECT pg_advisory_unlock(%s, %s)", LEADER_LOCK)
                self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None


class Scheduler:
    """A :class:`backend.services.Service` that runs ``jobs`` while this instance is leader."""

    name = "scheduler"

    def __init__(self, *, database_url: str, jobs: list[JobSpec], clock: Any = None,
                 timezone: str = "Europe/Copenhagen", election_seconds: float = 10.0,
                 on_stop: Callable[[], None] | None = None) -> None:
        from backend.alerting.clock import SystemClock

        self.clock = clock or SystemClock()
        self.leader = LeaderLock(database_url)
        self.jobs = {j.id: j for j in jobs}
        self.timezone = timezone
        self.election_seconds = election_seconds
        self._sched: BackgroundScheduler | None = None
        self._on_stop = on_stop
        self.runs: dict[str, int] = {}
        self.errors: dict[str, str] = {}
        self._elections = 0

    def start(self) -> None:
        sched = BackgroundScheduler(timezone=self.timezone, job_defaults={
            "coalesce": True, "max_instances": 1, "misfire_grace_time": None})
        sched.add_job(self._elect, IntervalTrigger(seconds=self.election_seconds), id="scheduler.leader",
                      next_run_time=datetime.now(UTC), replace_existing=True)
        for job in self.jobs.values():
            sched.add_job(self._run, job.trigger, args=[job.id], id=job.id, replace_existing=True,
                          next_run_time=datetime.now(UTC) if job.run_at_start else None)
        self._sched = sched
        sched.start()

    def stop(self) -> None:
        if self._sched is not None:
            self._sched.shutdown(wait=True)
            self._sched = None
        self.leader.release()
        if self._on_stop is not None:
            self._on_stop()

    def ready(self) -> tuple[bool, str]:
        if self._sched is None or not self._sched.running:
            return False, "stopped"
        return True, "leader" if self.leader.held else "standby"

    def _elect(self) -> None:
        was = self.leader.held
        first = not self._elections
        self._elections += 1
        if self.leader.try_acquire() and not was and not first and self._sched is not None:
            # New leader: rebuild from the database now instead of waiting for the intervals.
            for job_id in self.jobs:
                self._sched.modify_job(job_id, next_run_time=datetime.now(UTC))

    def run_now(self, job_id: str) -> Any:
        """Run one job synchronously (tests, CLI), if this instance is leader."""
        return self._run(job_id)

    def _run(self, job_id: str) -> Any:
        if not self.leader.try_acquire():
            return None
        try:
            result = self.jobs[job_id].func(self.clock.now())
            self.runs[job_id] = self.runs.get(job_id, 0) + 1
            self.errors.pop(job_id, None)
            return result
        except Exception as exc:  # a failing job must not stop the scheduler; it runs again next time
            log.exception("scheduled job %s failed", job_id)
            self.errors[job_id] = f"{type(exc).__name__}: {exc}"
            return None


def alerting_jobs(*, pool: Any, engine: Any, dispatcher: Any, config: Any, notifier: Any,
                  tz: str = "Europe/Copenhagen", escalation_seconds: float = 15.0,
                  missed_seconds: float = 60.0, notification_seconds: float = 1.0,
                  catch_up_seconds: float = 30.0, catch_up_grace: timedelta = timedelta(seconds=30),
                  catch_up_rounds: int = 10) -> list[JobSpec]:
    from backend.alerting import jobs, plans

    def escalations(now: datetime) -> Any:
        with pool.connection() as conn:
            return jobs.run_escalations(conn, now=now, config=config, teams=engine.teams, notifier=notifier)

    def missed(now: datetime) -> Any:
        with pool.connection() as conn:
            return plans.check_missed_measurements(conn, now=now, config=config, teams=engine.teams,
                                                   notifier=notifier)

    def technical(now: datetime) -> Any:
        with pool.connection() as conn:
            return jobs.check_technical(conn, now=now, config=config, teams=engine.teams, notifier=notifier)

    def evaluation_failures(now: datetime) -> Any:
        from backend.alerting.failures import check_evaluation_failures

        with pool.connection() as conn:
            return check_evaluation_failures(conn, now=now, config=config, teams=engine.teams, notifier=notifier)

    def baselines(now: datetime) -> Any:
        with pool.connection() as conn:
            return jobs.recompute_baselines(conn, now=now, config=config, tz=tz)

    def notifications(now: datetime) -> Any:
        return dispatcher.deliver_due()

    def retry(now: datetime) -> Any:
        with pool.connection() as conn:
            readings = jobs.failed_readings(conn)
        if readings:
            engine.on_stored(readings)
        return len(readings)

    def catch_up(now: datetime) -> Any:
        found = 0
        # A backlog (a long outage, a first start) is taken in bounded rounds.
        for _ in range(catch_up_rounds):
            with pool.connection() as conn:
                result = jobs.catch_up(conn, evaluate=engine.on_stored, grace=catch_up_grace)
            found += result.found
            if result.complete:
                break
        return found

    def daily_rollup(now: datetime) -> Any:
        # The trend's daily points: the last two local days again (late readings land there), so
        # long ranges read the rollup instead of raw rows. On TimescaleDB this refreshes the
        # continuous aggregate; on plain PostgreSQL nothing else fills the table.
        from backend.store import rollup

        # Its own autocommit connection: TimescaleDB refuses to refresh an aggregate inside a
        # transaction, and the pool's connections are not autocommit.
        with psycopg.connect(pool.conninfo, autocommit=True) as conn:
            rollup.refresh(conn, since=now - timedelta(days=2), tz=tz)
        return None

    return [
        JobSpec("store.daily_rollup", daily_rollup, IntervalTrigger(minutes=30)),
        JobSpec("alerting.catch_up", catch_up, IntervalTrigger(seconds=catch_up_seconds)),
        JobSpec("alerting.escalations", escalations, IntervalTrigger(seconds=escalation_seconds)),
        JobSpec("alerting.missed_measurements", missed, IntervalTrigger(seconds=missed_seconds)),
        JobSpec("alerting.technical", technical, IntervalTrigger(minutes=5)),
        JobSpec("alerting.evaluation_failures", evaluation_failures, IntervalTrigger(seconds=30)),
        JobSpec("alerting.baselines", baselines, CronTrigger(hour=2, minute=30, timezone=tz)),
        JobSpec("alerting.notifications", notifications, IntervalTrigger(seconds=notification_seconds)),
        JobSpec("alerting.retry_evaluations", retry, IntervalTrigger(minutes=2)),
    ]
