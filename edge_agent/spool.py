"""The durable outbox: every reading is in SQLite before anything else happens to it.

- ``PRAGMA journal_mode=WAL; synchronous=FULL``: a committed append survives SIGKILL and a
  power cut (the WAL is fsynced at every commit).
- A row is deleted only when the broker has acknowledged it (PUBACK), by the uplink.
- Rows drain oldest first (``seq`` order), in batches.
- A full spool refuses the new reading with :class:`SpoolFullError` (the caller logs it and the
  status shows it); nothing is dropped silently.
- An unreadable file is moved aside with a clear error (:class:`SpoolCorruptError` is logged and
  kept on :attr:`Spool.recovered_from`) and a fresh spool is opened, so the agent never
  crash-loops on a half-written file.
- The ``receipts`` table records "stored"/"held"/"seen" per measurement id for the citizen's
  screen ("Modtaget" / "Set af sygeplejerske"); ``plan`` keeps the latest monitoring plan.
- The ``recent`` table keeps what the citizen measured lately (kind, values, unit, time) for the
  home screen, because the outbox forgets a reading at PUBACK. It is written in the same
  transaction as the outbox append (a reading is on the screen exactly when it is spooled) and
  pruned in that transaction to the last :data:`RECENT_KEEP_ROWS` rows and
  :data:`RECENT_KEEP_DAYS` days.

One connection guarded by a lock: the BLE loop appends and the uplink thread deletes.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from edge_agent.errors import SpoolCorruptError, SpoolError, SpoolFullError
from edge_agent.settings import DEFAULT_SPOOL_CAPACITY
from vitals.kinds import MeasurementKind
from vitals.wire import Measurement, MonitoringPlan, Receipt

log = logging.getLogger(__name__)

# A citizen measures a handful of times a day: 200 rows is weeks of them, and two weeks is as far
# back as the home screen ever looks. A RACP download of a year of records keeps only its newest.
RECENT_KEEP_ROWS = 200
RECENT_KEEP_DAYS = 14

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    appended_at REAL NOT NULL,
    measurement TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS receipts (
    id TEXT NOT NULL,
    status TEXT NOT NULL,
    at TEXT NOT NULL,
    by TEXT,
    reason TEXT,
    PRIMARY KEY (id, status)
);
CREATE TABLE IF NOT EXISTS plan (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    issued_at TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS recent (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    appended_at REAL NOT NULL,
    kind TEXT NOT NULL,
    vals TEXT NOT NULL,
    unit TEXT NOT NULL,
    measured_at TEXT NOT NULL
);
"""

_PRUNE_RECENT = (
    "DELETE FROM recent WHERE appended_at < ?"
    " OR seq <= (SELECT seq FROM recent ORDER BY seq DESC LIMIT 1 OFFSET ?)"
)


@dataclass(frozen=True, slots=True)
class SpoolFill:
    """How full the outbox is, for the status message and the screen."""

    rows: int
    capacity: int
    oldest_at: datetime | None
    """When the oldest unsent reading was appended (agent clock, UTC)."""
    bytes: int

    @property
    def fraction(self) -> float:
        return self.rows / self.capacity

    @property
    def full(self) -> bool:
        return self.rows >= self.capacity


@dataclass(frozen=True, slots=True)
class SpooledRow:
    seq: int
    id: uuid.UUID
    measurement_json: str


@dataclass(frozen=True, slots=True)
class RecentReading:
    """A reading the citizen took lately, as the home screen needs it."""

    id: uuid.UUID
    kind: MeasurementKind
    values: dict[str, float | None]
    unit: str
    measured_at: datetime
    appended_at: datetime
    pending: bool
    """Still in the outbox: the broker has not acknowledged it yet."""


@dataclass(frozen=True, slots=True)
class RecordedReceipt:
    """One receipt the backend sent about one reading."""

    status: str
    """``stored``, ``held`` or ``seen`` (:class:`vitals.wire.ReceiptStatus` values)."""
    at: datetime
    by: str | None = None
    reason: str | None = None


class Spool:
    def __init__(self, path: Path | str, *, capacity: int = DEFAULT_SPOOL_CAPACITY) -> None:
        self.path = Path(path)
        self.capacity = capacity
        self.recovered_from: SpoolCorruptError | None = None
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = self._open()
        except sqlite3.DatabaseError as exc:
            self.recovered_from = self._move_aside(str(exc))
            self._conn = self._open()
        self._rows = self._count()

    # -- opening ---------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            check = conn.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {check[0] if check else 'no answer'}")
            conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError:
            conn.close()
            raise
        return conn

    def _move_aside(self, reason: str) -> SpoolCorruptError:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            if src.exists():
                src.rename(Path(str(target) + suffix))
        err = SpoolCorruptError(str(self.path), str(target), reason)
        log.error("%s; starting a fresh spool. The old file is kept for recovery.", err)
        return err

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- the outbox --------------------------------------------------------------------------

    def _count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM outbox").fetchone()[0])

    @property
    def depth(self) -> int:
        return self._rows

    def append(self, measurement: Measurement) -> None:
        """Append durably (committed and fsynced) or raise; never drops silently."""
        self.append_many((measurement,))

    def append_many(self, measurements: Sequence[Measurement]) -> None:
        if not measurements:
            return
        now = time.time()
        rows = [(str(m.id), now, m.model_dump_json()) for m in measurements]
        recent = [(str(m.id), now, m.kind.value, json.dumps(m.values), m.unit, m.measured_at.isoformat())
                  for m in measurements]
        with self._lock:
            if self._rows + len(rows) > self.capacity:
                raise SpoolFullError(self._rows, self.capacity)
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                before = self._conn.total_changes
                self._conn.executemany(
                    "INSERT INTO outbox (id, appended_at, measurement) VALUES (?, ?, ?)"
                    " ON CONFLICT (id) DO NOTHING",
                    rows,
                )
                added = self._conn.total_changes - before
                self._conn.executemany(
                    "INSERT INTO recent (id, appended_at, kind, vals, unit, measured_at) VALUES (?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (id) DO NOTHING",
                    recent,
                )
                self._conn.execute(_PRUNE_RECENT, (now - RECENT_KEEP_DAYS * 86400, RECENT_KEEP_ROWS))
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise SpoolError(f"could not append to {self.path}: {exc}") from exc
            self._rows += added

    def batch(self, limit: int, *, after_seq: int = 0) -> list[SpooledRow]:
        """The oldest ``limit`` rows with ``seq > after_seq``."""
        with self._lock:
            cur = self._conn.execute(
                "SELECT seq, id, measurement FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            )
            return [SpooledRow(seq, uuid.UUID(mid), text) for seq, mid, text in cur]

    def acknowledge(self, ids: Iterable[uuid.UUID]) -> int:
        """The broker has the readings (PUBACK): delete them. Returns how many were deleted."""
        keys = [(str(i),) for i in ids]
        if not keys:
            return 0
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            before = self._conn.total_changes
            self._conn.executemany("DELETE FROM outbox WHERE id = ?", keys)
            deleted = self._conn.total_changes - before
            self._conn.execute("COMMIT")
            self._rows -= deleted
            return deleted

    def fill(self) -> SpoolFill:
        with self._lock:
            rows, oldest = self._conn.execute("SELECT count(*), min(appended_at) FROM outbox").fetchone()
            page_size = self._conn.execute("PRAGMA page_size").fetchone()[0]
            pages = self._conn.execute("PRAGMA page_count").fetchone()[0]
        wal = Path(str(self.path) + "-wal")
        size = page_size * pages + (wal.stat().st_size if wal.exists() else 0)
        return SpoolFill(
            rows=int(rows),
            capacity=self.capacity,
            oldest_at=None if oldest is None else datetime.fromtimestamp(oldest, UTC),
            bytes=int(size),
        )

    def ids(self) -> set[uuid.UUID]:
        with self._lock:
            return {uuid.UUID(r[0]) for r in self._conn.execute("SELECT id FROM outbox")}

    # -- receipts and the plan -----------------------------------------------------------------

    def record_receipt(self, receipt: Receipt) -> None:
        rows = [(str(i), receipt.status.value, receipt.at.isoformat(), receipt.by, receipt.reason) for i in receipt.ids]
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany(
                "INSERT INTO receipts (id, status, at, by, reason) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (id, status) DO UPDATE SET at = excluded.at, by = excluded.by,"
                " reason = excluded.reason",
                rows,
            )
            self._conn.execute("COMMIT")

    def receipts_for(self, measurement_id: uuid.UUID) -> dict[str, str]:
        """status -> when, for one measurement (empty until the backend answers)."""
        with self._lock:
            cur = self._conn.execute("SELECT status, at FROM receipts WHERE id = ?", (str(measurement_id),))
            return {status: at for status, at in cur}

    def receipts_of(self, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, tuple[RecordedReceipt, ...]]:
        """Every receipt recorded for each of ``ids`` (ids without any are left out)."""
        keys = [str(i) for i in ids]
        out: dict[uuid.UUID, list[RecordedReceipt]] = {}
        with self._lock:
            for start in range(0, len(keys), 500):  # stay under SQLite's bound-parameter limit
                chunk = keys[start : start + 500]
                cur = self._conn.execute(
                    f"SELECT id, status, at, by, reason FROM receipts WHERE id IN ({','.join('?' * len(chunk))})",
                    chunk,
                )
                for mid, status, at, by, reason in cur:
                    out.setdefault(uuid.UUID(mid), []).append(
                        RecordedReceipt(status, datetime.fromisoformat(at), by, reason))
        return {k: tuple(v) for k, v in out.items()}

    # -- what the citizen measured lately (for the home screen) --------------------------------

    def recent(self) -> list[RecentReading]:
        """The kept recent readings, newest measurement first, each marked pending while unsent."""
        with self._lock:
            cur = self._conn.execute(
                "SELECT r.id, r.kind, r.vals, r.unit, r.measured_at, r.appended_at,"
                " EXISTS (SELECT 1 FROM outbox o WHERE o.id = r.id) FROM recent r"
            )
            rows = cur.fetchall()
        out = [
            RecentReading(
                id=uuid.UUID(mid),
                kind=MeasurementKind(kind),
                values=json.loads(vals),
                unit=unit,
                measured_at=datetime.fromisoformat(measured_at),
                appended_at=datetime.fromtimestamp(appended_at, UTC),
                pending=bool(pending),
            )
            for mid, kind, vals, unit, measured_at, appended_at, pending in rows
        ]
        out.sort(key=lambda r: r.measured_at, reverse=True)
        return out

    def save_plan(self, plan: MonitoringPlan) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO plan (one, issued_at, payload) VALUES (1, ?, ?)"
                " ON CONFLICT (one) DO UPDATE SET issued_at = excluded.issued_at, payload = excluded.payload",
                (plan.issued_at.isoformat(), plan.to_json().decode()),
            )

    def plan(self) -> MonitoringPlan | None:
        from vitals.wire import parse_plan

        with self._lock:
            row = self._conn.execute("SELECT payload FROM plan WHERE one = 1").fetchone()
        return None if row is None else parse_plan(row[0])
