from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from edge_agent.errors import SpoolError, SpoolFullError
from edge_agent.spool import RECENT_KEEP_DAYS, RECENT_KEEP_ROWS, RecordedReceipt, Spool
from vitals.wire import Receipt


def test_an_appended_reading_is_listed_and_stays_after_puback(tmp_path: Path, make_measurement, agent_id) -> None:
    spool = Spool(tmp_path / "s.sqlite")
    m = make_measurement(93.0)
    spool.append(m)
    [r] = spool.recent()
    assert (r.id, r.kind.value, r.values, r.unit, r.measured_at, r.pending) == (
        m.id, "spo2", {"spo2": 93.0}, "%", m.measured_at, True)
    assert spool.mark_sent([m.id]) == 1 and spool.depth == 1
    [after] = spool.recent()
    assert after.id == m.id and not after.pending  # "Sendt": the broker has it, no receipt yet
    assert spool.confirm([m.id]) == 1 and spool.depth == 0
    assert [r.id for r in spool.recent()] == [m.id]  # the screen keeps it after the outbox lets go
    spool.record_receipt(Receipt(agent_id=agent_id, status="seen", ids=(m.id,), at="2026-01-02T11:00:00Z",
                                 by="Anna Nielsen"))
    [seen] = spool.receipts_of([m.id, make_measurement().id])[m.id]
    assert seen == RecordedReceipt("seen", seen.at, "Anna Nielsen", None) and seen.at.isoformat().startswith("2026")
    assert Spool(tmp_path / "s.sqlite").recent()[0].id == m.id  # durable, another connection sees it


def test_recent_is_written_in_the_same_transaction_as_the_outbox(tmp_path: Path, make_measurement) -> None:
    path = tmp_path / "s.sqlite"
    spool = Spool(path)
    other = sqlite3.connect(path)
    other.execute("CREATE TRIGGER fail BEFORE INSERT ON recent BEGIN SELECT RAISE(ABORT, 'disk trouble'); END")
    other.commit()
    with pytest.raises(SpoolError, match="disk trouble"):
        spool.append(make_measurement())
    # The failed screen row took the outbox row with it: no reading half-recorded.
    assert spool.depth == 0 and spool.unsent(10) == [] and spool.recent() == []
    other.execute("DROP TRIGGER fail")
    other.commit()
    other.close()
    small = Spool(tmp_path / "full.sqlite", capacity=100)
    small.append_many([make_measurement() for _ in range(100)])
    with pytest.raises(SpoolFullError):
        small.append(make_measurement())
    assert len(small.recent()) == 100  # a refused reading is not shown as measured


def test_recent_is_pruned_to_the_newest_rows_and_days(tmp_path: Path, make_measurement) -> None:
    path = tmp_path / "s.sqlite"
    spool = Spool(path)
    ms = [make_measurement() for _ in range(RECENT_KEEP_ROWS + 30)]
    spool.append_many(ms[:100])
    spool.append_many(ms[100:])
    kept = {r.id for r in spool.recent()}
    assert kept == {m.id for m in ms[30:]}
    assert spool.depth == len(ms)  # pruning the screen's list never touches the outbox
    # Age the oldest 50 beyond the window; the next append drops them.
    c = sqlite3.connect(path)
    c.execute("UPDATE recent SET appended_at = ? WHERE seq <= (SELECT min(seq) + 49 FROM recent)",
              (time.time() - RECENT_KEEP_DAYS * 86400 - 60,))
    c.commit()
    c.close()
    spool.confirm([m.id for m in ms])
    spool.append(new := make_measurement())
    assert {r.id for r in spool.recent()} == {m.id for m in ms[80:]} | {new.id}


def test_a_spool_from_before_the_screen_gains_the_table(tmp_path: Path, make_measurement) -> None:
    path = tmp_path / "old.sqlite"
    c = sqlite3.connect(path)
    c.execute("CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,"
              " appended_at REAL NOT NULL, measurement TEXT NOT NULL)")
    m = make_measurement()
    c.execute("INSERT INTO outbox (id, appended_at, measurement) VALUES (?, ?, ?)",
              (str(m.id), time.time(), m.model_dump_json()))
    c.commit()
    c.close()
    spool = Spool(path)
    assert spool.depth == 1 and spool.recent() == []  # the old reading is kept; it was never listed
    spool.append(n := make_measurement())
    assert [r.id for r in spool.recent()] == [n.id]
