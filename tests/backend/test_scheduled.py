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
