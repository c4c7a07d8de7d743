"""The writer against the real database: the fast path (COPY straight into measurements), the
careful path a unique violation falls back to (a redelivery, also one racing in from another
worker), and the per-statement patient check that replaced the row-by-row foreign key."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from backend.embedded import wait_for
from backend.ingest.core import AcceptedReading, Decision
from backend.ingest.writer import prepare, write_batch
from vitals.wire import new_measurement_id


def _reading(home: Any, i: int = 0, *, patient_id: int | None = None) -> AcceptedReading:
    at = datetime.now(UTC) - timedelta(minutes=10) + timedelta(milliseconds=i)
    return AcceptedReading(
        new_measurement_id(), at, patient_id or home.patient_id, home.agent_id, home.device_id, "spo2", 95.0,
        {"spo2": 95.0}, "%", True, at,
    )


def _batch(readings: list[AcceptedReading]) -> list[Decision]:
    return [Decision(agent_id=r.agent_id, accepted=(r,)) for r in readings]


@pytest.fixture
def writer_conn(database_url: str) -> Iterator[psycopg.Connection]:
    conn = psycopg.connect(database_url, autocommit=True)
    prepare(conn)
    try:
        yield conn
    finally:
        conn.close()


def _rows(db: psycopg.Connection, readings: list[AcceptedReading]) -> int:
    row = db.execute("SELECT count(*) FROM measurements WHERE id = ANY(%s)", ([r.id for r in readings],)).fetchone()
    return int(row[0]) if row else 0


def test_new_readings_take_the_fast_path_and_are_all_handed_on(
    writer_conn: psycopg.Connection, make_home: Callable[..., Any], db: psycopg.Connection
) -> None:
    home = make_home(prefix="wfast")
    readings = [_reading(home, i) for i in range(20)]
    result = write_batch(writer_conn, _batch(readings), received_at=datetime.now(UTC))
    assert [s.id for s in result.stored] == [r.id for r in readings]
    assert result.duplicates == 0
    assert len({s.stored_at for s in result.stored}) == 1  # one transaction, one stored_at
    stored_at = db.execute("SELECT DISTINCT stored_at FROM measurements WHERE id = %s", (readings[0].id,)).fetchall()
    assert stored_at == [(result.stored[0].stored_at,)]
    assert _rows(db, readings) == 20


def test_a_redelivered_batch_falls_back_and_stores_only_the_new_readings(
    writer_conn: psycopg.Connection, make_home: Callable[..., Any], db: psycopg.Connection
) -> None:
    home = make_home(prefix="wdup")
    old = [_reading(home, i) for i in range(5)]
    write_batch(writer_conn, _batch(old), received_at=datetime.now(UTC))
    new = [_reading(home, 100 + i) for i in range(7)]
    # Redelivered readings mixed with new ones, and one reading twice in the same batch.
    mixed = [old[0], new[0], old[1], *new[1:], new[3], *old[2:]]
    result = write_batch(writer_conn, _batch(mixed), received_at=datetime.now(UTC))
    assert sorted(str(s.id) for s in result.stored) == sorted(str(r.id) for r in new)
    assert result.duplicates == len(mixed) - len(new)
    assert _rows(db, old + new) == 12
    again = write_batch(writer_conn, _batch(mixed), received_at=datetime.now(UTC))
    assert again.stored == [] and again.duplicates == len(mixed)
    assert _rows(db, old + new) == 12


def test_two_workers_storing_the_same_readings_at_once_store_each_once(
    database_url: str, writer_conn: psycopg.Connection, make_home: Callable[..., Any], db: psycopg.Connection
) -> None:
    """A redelivery to another worker while the first is still committing: the second COPY
    waits on the first one's index entries, conflicts once they commit, and falls back."""
    home = make_home(prefix="wrace")
    readings = [_reading(home, i) for i in range(30)]
    first = psycopg.connect(database_url)  # not autocommit: holds its transaction open
    try:
        prepare(first)
        first.commit()
        first.execute("SELECT 1")  # an open transaction: write_batch's own becomes a savepoint in it
        r_first = write_batch(first, _batch(readings[:20]), received_at=datetime.now(UTC))
        # write_batch's own transaction is nested in the open one: nothing is committed yet.
        assert _rows(db, readings) == 0
        out: dict[str, Any] = {}

        def second() -> None:
            try:
                out["result"] = write_batch(writer_conn, _batch(readings), received_at=datetime.now(UTC))
            except Exception as exc:  # pragma: no cover - reported below
                out["error"] = exc

        t = threading.Thread(target=second)
        t.start()
        # The second writer blocks on the first one's uncommitted index entries: a lock wait.
        second_pid = writer_conn.info.backend_pid
        wait_for(lambda: db.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                                    (second_pid,)).fetchone() == ("Lock",), what="the second writer waiting")
        assert t.is_alive(), "the second writer must wait for the first one's uncommitted rows"
        first.commit()
        t.join(20)
        assert not t.is_alive()
    finally:
        first.close()
    assert "error" not in out, out.get("error")
    r_second = out["result"]
    assert len(r_first.stored) == 20
    assert sorted(str(s.id) for s in r_second.stored) == sorted(str(r.id) for r in readings[20:])
    assert r_second.duplicates == 20
    assert _rows(db, readings) == 30


def test_a_reading_for_a_patient_that_does_not_exist_is_refused(
    writer_conn: psycopg.Connection, make_home: Callable[..., Any], db: psycopg.Connection
) -> None:
    home = make_home(prefix="wnopat")
    good, bad = _reading(home, 0), _reading(home, 1, patient_id=2**40)
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="does not exist"):
        write_batch(writer_conn, _batch([good, bad]), received_at=datetime.now(UTC))
    assert _rows(db, [good, bad]) == 0  # the whole batch rolled back; the service splits it
    # Any writer, not only ingest: a plain INSERT is checked as well.
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        db.execute(
            "INSERT INTO measurements (id, measured_at, patient_id, agent_id, kind, components, unit, "
            "device_clock_trusted, agent_received_at) VALUES (%s, now(), %s, 'x', 'spo2', '{}', '%%', true, now())",
            (new_measurement_id(), 2**40),
        )


def test_a_patient_with_measurements_cannot_be_deleted(
    writer_conn: psycopg.Connection, make_home: Callable[..., Any], db: psycopg.Connection
) -> None:
    home = make_home(prefix="wdel")
    write_batch(writer_conn, _batch([_reading(home)]), received_at=datetime.now(UTC))
    db.execute("DELETE FROM devices WHERE agent_id = %s", (home.agent_id,))
    db.execute("DELETE FROM agents WHERE id = %s", (home.agent_id,))
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="has measurements"):
        db.execute("DELETE FROM patients WHERE id = %s", (home.patient_id,))
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="has measurements"):
        db.execute("UPDATE patients SET id = %s WHERE id = %s", (2**41, home.patient_id))
    # A patient without measurements still goes.
    other = make_home(prefix="wdel2")
    db.execute("DELETE FROM devices WHERE agent_id = %s", (other.agent_id,))
    db.execute("DELETE FROM agents WHERE id = %s", (other.agent_id,))
    db.execute("DELETE FROM patients WHERE id = %s", (other.patient_id,))
    assert db.execute("SELECT count(*) FROM patients WHERE id = %s", (other.patient_id,)).fetchone() == (0,)


def test_the_same_id_with_another_measured_at_is_stored_once(
    writer_conn: psycopg.Connection, make_home: Callable[..., Any], db: psycopg.Connection
) -> None:
    """Exactly once on the id alone (measurement_ids), on both flavours: a re-send whose time
    moved (a corrected agent clock, a re-decoded record) is a repeat, not a second reading."""
    from dataclasses import replace

    home = make_home(prefix="wmoved")
    first = _reading(home)
    moved = replace(first, measured_at=first.measured_at + timedelta(seconds=30))
    write_batch(writer_conn, _batch([first]), received_at=datetime.now(UTC))
    alone = write_batch(writer_conn, _batch([moved]), received_at=datetime.now(UTC))
    assert alone.stored == [] and alone.duplicates == 1
    fresh = _reading(home, 5)
    both = write_batch(writer_conn, _batch([moved, fresh, replace(fresh, measured_at=moved.measured_at)]),
                       received_at=datetime.now(UTC))
    assert [s.id for s in both.stored] == [fresh.id] and both.duplicates == 2
    rows = db.execute("SELECT id, measured_at FROM measurements WHERE id = ANY(%s) ORDER BY measured_at",
                      ([first.id, fresh.id],)).fetchall()
    assert rows == [(first.id, first.measured_at), (fresh.id, fresh.measured_at)]


def test_a_held_repeat_of_a_stored_reading_is_not_kept_twice(
    writer_conn: psycopg.Connection, make_home: Callable[..., Any], db: psycopg.Connection
) -> None:
    from backend.ingest.core import HeldReading

    home = make_home(prefix="wheld")
    r = _reading(home)
    write_batch(writer_conn, _batch([r]), received_at=datetime.now(UTC))
    # The same reading re-sent after its device was unregistered: the decision says "held".
    held = HeldReading(r.id, r.measured_at, home.patient_id, home.agent_id, "5C:F8:21:0A:11:22", "spo2",
                       {"spo2": 95.0}, "%", "unknown_device: test", {"id": str(r.id)})
    result = write_batch(writer_conn, [Decision(agent_id=home.agent_id, held=(held,))], received_at=datetime.now(UTC))
    assert result.held == 1
    assert db.execute("SELECT count(*) FROM rejected_readings WHERE id = %s", (r.id,)).fetchone() == (0,)
    assert _rows(db, [r]) == 1


def _status_batch(home: Any, state: str, at: datetime) -> list[Decision]:
    import json

    from backend.ingest.core import StatusUpdate

    payload = json.dumps({"schema": "1.0", "agent_id": home.agent_id, "state": state, "at": at.isoformat()}).encode()
    return [Decision(agent_id=home.agent_id, status=StatusUpdate(
        agent_id=home.agent_id, online=state == "online", at=at, payload=payload,
        topic=f"test/agents/{home.agent_id}/status"))]


def test_an_agents_will_ends_its_session_and_a_stale_status_is_kept_with_the_reason(
    writer_conn: psycopg.Connection, make_home: Callable[..., Any], db: psycopg.Connection
) -> None:
    # Issue 12: the will ("offline", dated when the agent connected) was compared with the newest
    # heartbeat, which is always newer, so a dead agent stayed "online"; a late status was dropped
    # without a word.
    home = make_home(prefix="wstatus")
    now = datetime.now(UTC)
    connected = now - timedelta(days=2)
    agent = "SELECT online, status_at FROM agents WHERE id = %s"
    for minutes in (0, 30, 60):  # the session's heartbeats
        write_batch(writer_conn, _status_batch(home, "online", connected + timedelta(seconds=2, minutes=minutes)),
                    received_at=now)
    write_batch(writer_conn, _status_batch(home, "online", now - timedelta(minutes=1)), received_at=now)
    assert db.execute(agent, (home.agent_id,)).fetchone() == (True, now - timedelta(minutes=1))
    late = _status_batch(home, "online", now - timedelta(minutes=5))
    write_batch(writer_conn, late, received_at=now)
    assert db.execute(agent, (home.agent_id,)).fetchone() == (True, now - timedelta(minutes=1))
    write_batch(writer_conn, _status_batch(home, "offline", connected), received_at=now)  # the will
    assert db.execute(agent, (home.agent_id,)).fetchone() == (False, now - timedelta(minutes=1))

    # It reconnects; the will of the connection before, published late, does not end the new one.
    back = now + timedelta(minutes=10)
    write_batch(writer_conn, _status_batch(home, "online", back), received_at=back)
    write_batch(writer_conn, _status_batch(home, "offline", connected), received_at=back)
    assert db.execute(agent, (home.agent_id,)).fetchone() == (True, back)

    kept = db.execute("SELECT payload, reason, field FROM dead_letters WHERE agent_id = %s ORDER BY id",
                      (home.agent_id,)).fetchall()
    sent = [d.status.payload for d in (*late, *_status_batch(home, "offline", connected)) if d.status is not None]
    assert [(bytes(k[0]), k[2]) for k in kept] == [(p, "at") for p in sent] and len(sent) == 2
    assert "older than the newest applied status" in kept[0][1]
    assert "will of an earlier connection" in kept[1][1]
