"""The rules' feed under a backlog: a citizen measuring now is evaluated first, and a returning
tablet's backlog goes in small portions, each in its own transaction, at a bounded rate."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from backend.alerting.inbox import LiveLoad, RulesInbox
from backend.store import migrate
from tests.backend.alerting.conftest import Seeder


@pytest.fixture
def own(empty_database_url: str) -> Iterator[tuple[str, Any, Seeder]]:
    """A database of its own: the inbox claims every waiting reading, other tests' too."""
    migrate(empty_database_url)
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        seeder = Seeder(conn)
        seeder.teams()
        yield empty_database_url, conn, seeder


def _inbox(db: Any, readings: list[Any]) -> None:
    db.execute("INSERT INTO rules_inbox (measurement_id, patient_id, measured_at) SELECT * FROM unnest(%s::uuid[],"
               " %s::bigint[], %s::timestamptz[])",
               ([r.id for r in readings], [r.patient_id for r in readings], [r.measured_at for r in readings]))


def test_live_readings_go_first_and_the_backlog_in_small_paced_portions(own: tuple[str, Any, Seeder]) -> None:
    url, db, seed = own
    now = datetime.now(UTC)
    returning = seed.patient("copd", "Aarhus")
    measuring = seed.patient("copd", "Aarhus")
    backlog = [seed.reading(returning, "spo2", now - timedelta(hours=20, minutes=-i), spo2=95.0) for i in range(120)]
    _inbox(db, backlog)  # received first
    live = seed.reading(measuring, "spo2", now, spo2=84.0)
    _inbox(db, [live])
    calls: list[list[Any]] = []
    inbox = RulesInbox(database_url=url, evaluate=lambda batch: calls.append(list(batch)),
                       backlog_batch=50, backlog_rate=1e-6)  # the budget does not grow during the test
    with psycopg.connect(url, autocommit=True) as conn:
        assert inbox.drain(conn) == 51
        assert [[r.id for r in c] for c in calls] == [[live.id], [r.id for r in backlog[:50]]]
        # The budget is spent: the rest of the backlog waits; a new live reading still goes at once.
        assert inbox.drain(conn) == 0
        again = seed.reading(measuring, "spo2", now + timedelta(seconds=1), spo2=83.0)
        _inbox(db, [again])
        assert inbox.drain(conn) == 1
        assert [r.id for r in calls[-1]] == [again.id]
    assert db.execute("SELECT count(*) FROM rules_inbox WHERE patient_id = %s", (returning,)).fetchone()[0] == 70


def test_live_load_is_the_share_of_the_last_second_spent_on_live_readings() -> None:
    load = LiveLoad(window_s=1.0)
    assert load.share(100.0) == 0.0
    load.add(100.0, 0.3)
    load.add(100.4, 0.4)
    assert load.share(100.5) == pytest.approx(0.7)
    assert load.share(101.2) == pytest.approx(0.4)  # the first span has left the window
    assert load.share(102.0) == 0.0


def test_a_busy_worker_gives_the_backlog_only_its_floor(own: tuple[str, Any, Seeder]) -> None:
    url, db, seed = own
    now = datetime.now(UTC)
    returning = seed.patient("copd", "Aarhus")
    backlog = [seed.reading(returning, "spo2", now - timedelta(hours=20, minutes=-i), spo2=95.0) for i in range(60)]
    _inbox(db, backlog)
    inbox = RulesInbox(database_url=url, evaluate=lambda batch: None, backlog_batch=50, backlog_rate=1e6,
                       backlog_floor=1e-6, busy_limit=0.5)
    inbox._budget = 0.0  # spent: what it gets next depends on how busy live readings keep it
    inbox._busy.add(time.monotonic(), 0.9)  # 90 % of the last second on live readings
    with psycopg.connect(url, autocommit=True) as conn:
        assert inbox.drain(conn) == 0  # busy: the floor (here next to nothing)
        inbox._busy = LiveLoad()  # idle again
        assert inbox.drain(conn) == 50  # spare capacity: a full portion at once
