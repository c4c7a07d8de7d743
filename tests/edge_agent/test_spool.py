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
    assert [r.id for r in spool2.batch(10)] == [m.id for m in ms]
    assert [r.id for r in spool2.batch(2, after_seq=spool2.batch(10)[1].seq)] == [ms[2].id, ms[3].id]
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_acknowledge_deletes_only_those_ids(tmp_path: Path, make_measurement) -> None:
    spool = Spool(tmp_path / "s.sqlite")
    ms = [make_measurement() for _ in range(4)]
    spool.append_many(ms)
    assert spool.acknowledge([ms[0].id, ms[2].id]) == 2
    assert spool.ids() == {ms[1].id, ms[3].id}
    assert spool.depth == 2
    assert spool.acknowledge([ms[0].id]) == 0  # a duplicate PUBACK changes nothing
    assert spool.depth == 2


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
