from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edge_agent.errors import SpoolFullError
from edge_agent.spool import Spool
from vitals.wire import Receipt, parse_plan


def test_append_is_durable_and_drains_oldest_first(tmp_path: Path, make_measurement) -> None:
    path = tmp_path / "spool.sqlite"
    spool = Spool(path)
    ms = [make_measurement(90 + i) for i in range(5)]
    for m in ms:
        spool.append(m)
    # A second connection (another process after a crash) sees every committed row.
    spool2 = Spool(path)
    assert [r.id for r in spool2.unsent(10)] == [m.id for m in ms]
    assert [r.id for r in spool2.unsent(2, after_seq=spool2.unsent(10)[1].seq)] == [ms[2].id, ms[3].id]
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_confirm_deletes_only_those_ids(tmp_path: Path, make_measurement) -> None:
    spool = Spool(tmp_path / "s.sqlite")
    ms = [make_measurement() for _ in range(4)]
    spool.append_many(ms)
    assert spool.confirm([ms[0].id, ms[2].id]) == 2
    assert spool.ids() == {ms[1].id, ms[3].id}
    assert spool.depth == 2
    assert spool.confirm([ms[0].id]) == 0  # a repeated receipt changes nothing
    assert spool.depth == 2


def test_a_puback_only_marks_sent_and_a_final_receipt_releases(tmp_path: Path, make_measurement, agent_id) -> None:
    spool = Spool(tmp_path / "s.sqlite")
    ms = [make_measurement() for _ in range(5)]
    spool.append_many(ms)
    assert spool.mark_sent([m.id for m in ms], now=1000.0) == 5
    assert spool.depth == 5 and spool.unsent(10) == [] and spool.fill().unsent == 0  # kept: sent is not stored
    at = "2026-01-02T10:00:00Z"
    spool.record_receipt(Receipt(agent_id=agent_id, status="seen", ids=(ms[0].id,), at=at))
    assert spool.depth == 5  # "seen" without "stored" releases nothing
    assert spool.record_receipt(Receipt(agent_id=agent_id, status="stored", ids=(ms[0].id, ms[1].id), at=at)) == 2
    assert spool.record_receipt(Receipt(agent_id=agent_id, status="held", ids=(ms[2].id,), at=at,
                                        reason="implausible_value: spo2 140")) == 1
    assert spool.record_receipt(Receipt(agent_id=agent_id, status="dead_letter", ids=(ms[3].id,), at=at,
                                        reason="agent is not enrolled")) == 1
    assert spool.ids() == {ms[4].id} and spool.depth == 1
    assert set(spool.receipts_for(ms[3].id)) == {"dead_letter"}


def test_a_sent_reading_without_receipt_is_due_again_with_backoff(tmp_path: Path, make_measurement) -> None:
    spool = Spool(tmp_path / "s.sqlite")
    ms = [make_measurement() for _ in range(3)]
    spool.append_many(ms)
    spool.mark_sent([ms[0].id, ms[1].id], now=1000.0)
    assert spool.due_again(10, now=1029.0, after_s=30, max_s=600) == []
    again = spool.due_again(10, now=1030.0, after_s=30, max_s=600)
    assert [r.id for r in again] == [ms[0].id, ms[1].id]  # oldest first, same ids; the unsent one is not due
    assert spool.due_again(10, now=1031.0, after_s=30, max_s=600) == []  # picked: not again at once
    spool.mark_sent([ms[0].id], now=1031.0)  # its second PUBACK: the next wait doubles
    assert [r.id for r in spool.due_again(10, now=1062.0, after_s=30, max_s=600)] == [ms[1].id]
    assert [r.id for r in spool.due_again(10, now=1091.0, after_s=30, max_s=600)] == [ms[0].id]
    spool.confirm([ms[0].id])
    spool.mark_sent([ms[1].id], now=1500.0, attempt=False)  # "no subscriber": due 30 s later, not 60
    assert [r.id for r in spool.due_again(10, now=1530.0, after_s=30, max_s=600)] == [ms[1].id]
    for n in range(30):  # many attempts: the wait is capped
        spool.mark_sent([ms[1].id], now=2000.0 + n)
    assert spool.due_again(10, now=2029.0 + 599, after_s=30, max_s=600) == []
    assert [r.id for r in spool.due_again(10, now=2029.0 + 600, after_s=30, max_s=600)] == [ms[1].id]


def test_a_new_connection_sends_every_unconfirmed_reading_again(tmp_path: Path, make_measurement) -> None:
    spool = Spool(tmp_path / "s.sqlite")
    ms = [make_measurement() for _ in range(4)]
    spool.append_many(ms)
    spool.mark_sent([m.id for m in ms[:3]])
    appends = spool.appends
    assert spool.send_again() == 3
    assert spool.appends != appends  # the uplink looks for unsent rows again
    assert [r.id for r in spool.unsent(10)] == [m.id for m in ms]


def test_a_spool_from_before_end_to_end_receipts_gains_its_columns(tmp_path: Path, make_measurement) -> None:
    path = tmp_path / "old.sqlite"
    c = sqlite3.connect(path)
    c.execute("CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,"
              " appended_at REAL NOT NULL, measurement TEXT NOT NULL)")
    m = make_measurement()
    c.execute("INSERT INTO outbox (id, appended_at, measurement) VALUES (?, 0, ?)", (str(m.id), m.model_dump_json()))
    c.commit()
    c.close()
    spool = Spool(path)
    assert [r.id for r in spool.unsent(10)] == [m.id]  # an old row counts as not sent: it goes out again
    assert spool.mark_sent([m.id]) == 1


def test_same_id_twice_is_one_row(tmp_path: Path, make_measurement) -> None:
    spool = Spool(tmp_path / "s.sqlite")
    m = make_measurement()
    spool.append(m)
    spool.append(m)
    assert spool.depth == 1


def test_full_spool_refuses_loudly_and_keeps_what_it_has(tmp_path: Path, make_measurement, caplog) -> None:
    spool = Spool(tmp_path / "s.sqlite", capacity=100)
    spool.append_many([make_measurement() for _ in range(100)])
    with pytest.raises(SpoolFullError) as exc:
        spool.append(make_measurement())
    assert (exc.value.depth, exc.value.capacity) == (100, 100)
    fill = spool.fill()
    assert fill.full and fill.rows == 100 and fill.oldest_at is not None and fill.bytes > 0


def test_corrupt_file_is_moved_aside_with_a_clear_error(tmp_path: Path, make_measurement, caplog) -> None:
    path = tmp_path / "spool.sqlite"
    path.write_bytes(b"SQLite format 3\x00" + b"\xde\xad" * 3000)  # a half-written header and garbage
    spool = Spool(path)
    assert spool.recovered_from is not None
    moved = Path(spool.recovered_from.moved_to)
    assert moved.exists() and moved.read_bytes().startswith(b"SQLite format 3")
    assert "corrupt" in caplog.text and str(moved) in caplog.text
    spool.append(make_measurement())  # and the fresh spool works
    assert spool.depth == 1


def test_receipts_and_plan_are_kept(tmp_path: Path, make_measurement, agent_id: str) -> None:
    spool = Spool(tmp_path / "s.sqlite")
    m = make_measurement()
    spool.record_receipt(Receipt(agent_id=agent_id, status="stored", ids=(m.id,), at="2026-01-02T10:00:00Z"))
    spool.record_receipt(Receipt(agent_id=agent_id, status="seen", ids=(m.id,), at="2026-01-02T11:00:00Z", by="nurse"))
    assert set(spool.receipts_for(m.id)) == {"stored", "seen"}
    plan = parse_plan({"schema": "1.0", "agent_id": agent_id, "issued_at": "2026-01-01T00:00:00Z",
                       "measurements": [{"kind": "spo2", "times": ["08:00"]}]})
    spool.save_plan(plan)
    assert Spool(tmp_path / "s.sqlite").plan() == plan
