"""The durable outbox: every reading is in SQLite before anything else happens to it.

- ``PRAGMA journal_mode=WAL; synchronous=FULL``: a committed append survives SIGKILL and a
  power cut (the WAL is fsynced at every commit).
- **End to end, not hop by hop.** A row leaves the outbox only when the backend's receipt names
  it: "stored", "held" (kept for review, with its reason) or "dead_letter" (refused, with its
  reason). The broker's PUBACK only marks it *sent* (``sent_at``): a broker may restart, crash or
  forget a shared subscription after acknowledging, so a sent row with no receipt is due again
  after :data:`RESEND_AFTER_S`, doubling per attempt up to :data:`RESEND_MAX_S`, and on every new
  connection (the receipt may have been published while the agent was away). A re-send carries
  the same id; the backend's store absorbs it and answers with the receipt.
- Rows drain oldest first (``seq`` order), in batches.
- A full spool refuses the new reading with :class:`SpoolFullError` (the caller logs it and the
  status shows it); nothing is dropped silently.
- An unreadable file is moved aside with a clear error (:class:`SpoolCorruptError` is logged and
  kept on :attr:`Spool.recovered_from`) and a fresh spool is opened, so the agent never
  crash-loops on a half-written file.
- The ``receipts`` table records "stored"/"held"/"seen" per measurement id for the citizen's
  screen ("Modtaget" / "Set af sygeplejerske"); ``plan`` keeps the latest monitoring plan.
- The ``recent`` table keeps what the citizen measured lately (kind, values, unit, time) for the
  home screen, because the outbox forgets a reading at its receipt. It is written in the same
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
from edge_agent.settings import DEFAULT_SPOOL_CAPACITY, RESEND_AFTER_S, RESEND_MAX_S
from vitals.kinds import MeasurementKind
from vitals.wire import Measurement, MonitoringPlan, Receipt, TeamMessage

log = logging.getLogger(__name__)

# A citizen measures a handful of times a day: 200 rows is weeks of them, and two weeks is as far
# back as the home screen ever looks. A RACP download of a year of records keeps only its newest.
RECENT_KEEP_ROWS = 200
RECENT_KEEP_DAYS = 14

FINAL_RECEIPTS = frozenset({"stored", "held", "dead_letter"})
"""Receipts after which the backend has the reading on record: it may leave the outbox."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    appended_at REAL NOT NULL,
    measurement TEXT NOT NULL,
    sent_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0
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
CREATE TABLE IF NOT EXISTS team_message (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    id INTEGER NOT NULL,
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
# Receipts only serve the home screen's recent readings, and the outbox rows they release.
_PRUNE_RECEIPTS = (
    "DELETE FROM receipts WHERE id NOT IN (SELECT id FROM recent) AND id NOT IN (SELECT id FROM outbox)"
)
# Columns added after the first release: an older spool file gains them in place.
_UPGRADES = {
    "sent_at": "ALTER TABLE outbox ADD COLUMN sent_at REAL",
    "attempts": "ALTER TABLE outbox ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0",
}
# Due again: sent, and RESEND_AFTER_S * 2**(attempts-1) (capped) has passed since.
_DUE = (
    "sent_at IS NOT NULL AND sent_at + min(? * (1 << min(max(attempts - 1, 0), 20)), ?) <= ?"
)


@dataclass(frozen=True, slots=True)
class SpoolFill:
    """How full the outbox is, for the status message and the screen."""

    rows: int
    """Readings the backend has not confirmed yet (sent or not)."""
    capacity: int
    oldest_at: datetime | None
    """When the oldest unconfirmed reading was appended (agent clock, UTC)."""
    bytes: int
    unsent: int = 0
    """Of ``rows``, those the broker has not acknowledged yet ("Gemt på tabletten")."""

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
    """Not sent yet: the broker has not acknowledged it (the outbox may still hold it, sent,
    until the backend's receipt)."""


@dataclass(frozen=True, slots=True)
class RecordedReceipt:
    """One receipt the backend sent about one reading."""

    status: str
    """``stored``, ``held``, ``dead_letter`` or ``seen`` (:class:`vitals.wire.ReceiptStatus` values)."""
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
        self.appends = 0
        """Bumped whenever rows become unsent (appended, or due again on a new connection), so
        the uplink can skip looking for new rows when nothing changed."""

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
            have = {row[1] for row in conn.execute("PRAGMA table_info(outbox)")}
            for column, ddl in _UPGRADES.items():
                if column not in have:
                    conn.execute(ddl)
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
                mark = self._conn.total_changes
                self._conn.execute(_PRUNE_RECENT, (now - RECENT_KEEP_DAYS * 86400, RECENT_KEEP_ROWS))
                if self._conn.total_changes > mark:  # recent readings left the screen: so do their receipts
                    self._conn.execute(_PRUNE_RECEIPTS)
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise SpoolError(f"could not append to {self.path}: {exc}") from exc
            self._rows += added
            self.appends += 1

    def unsent(self, limit: int, *, after_seq: int = 0) -> list[SpooledRow]:
        """The oldest ``limit`` rows not sent yet with ``seq > after_seq``."""
        with self._lock:
            cur = self._conn.execute(
                "SELECT seq, id, measurement FROM outbox WHERE seq > ? AND sent_at IS NULL ORDER BY seq LIMIT ?",
                (after_seq, limit),
            )
            return [SpooledRow(seq, uuid.UUID(mid), text) for seq, mid, text in cur]

    def due_again(self, limit: int, *, now: float | None = None, after_s: float = RESEND_AFTER_S,
                  max_s: float = RESEND_MAX_S) -> list[SpooledRow]:
        """Sent rows with no receipt whose re-send time has come, oldest first; each is marked
        as sent now, so it is not picked again before its next re-send time."""
        at = time.time() if now is None else now
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                rows = self._conn.execute(
                    f"SELECT seq, id, measurement FROM outbox WHERE {_DUE} ORDER BY seq LIMIT ?",
                    (after_s, max_s, at, limit),
                ).fetchall()
                self._conn.executemany("UPDATE outbox SET sent_at = ? WHERE seq = ?", [(at, r[0]) for r in rows])
                self._conn.execute("COMMIT")
            except sqlite3.Error:
                self._conn.execute("ROLLBACK")
                raise
        return [SpooledRow(seq, uuid.UUID(mid), text) for seq, mid, text in rows]

    def mark_sent(self, ids: Iterable[uuid.UUID], *, now: float | None = None, attempt: bool = True) -> int:
        """The broker has the readings (PUBACK): they wait for the backend's receipt now.
        ``attempt=False`` (the broker said nobody subscribes: ingest is not back yet) keeps the
        re-send interval from growing. Returns how many rows that touched (readings confirmed
        meanwhile are gone)."""
        at = time.time() if now is None else now
        keys = [(at, str(i)) for i in ids]
        if not keys:
            return 0
        sql = ("UPDATE outbox SET sent_at = ?, attempts = attempts + 1 WHERE id = ?" if attempt
               else "UPDATE outbox SET sent_at = ? WHERE id = ?")
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            before = self._conn.total_changes
            self._conn.executemany(sql, keys)
            touched = self._conn.total_changes - before
            self._conn.execute("COMMIT")
            return touched

    def send_again(self) -> int:
        """A new connection: every sent, unconfirmed reading goes out again, oldest first (its
        receipt may have been published while this agent was away). Returns how many."""
        with self._lock:
            cur = self._conn.execute("UPDATE outbox SET sent_at = NULL WHERE sent_at IS NOT NULL")
            self.appends += 1
            return cur.rowcount

    def confirm(self, ids: Iterable[uuid.UUID]) -> int:
        """The backend has these readings on record: delete them. Returns how many were deleted."""
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
            rows, oldest, unsent = self._conn.execute(
                "SELECT count(*), min(appended_at), count(*) FILTER (WHERE sent_at IS NULL) FROM outbox"
            ).fetchone()
            page_size = self._conn.execute("PRAGMA page_size").fetchone()[0]
            pages = self._conn.execute("PRAGMA page_count").fetchone()[0]
        wal = Path(str(self.path) + "-wal")
        size = page_size * pages + (wal.stat().st_size if wal.exists() else 0)
        return SpoolFill(
            rows=int(rows),
            capacity=self.capacity,
            oldest_at=None if oldest is None else datetime.fromtimestamp(oldest, UTC),
            bytes=int(size),
            unsent=int(unsent or 0),
        )

    def ids(self) -> set[uuid.UUID]:
        with self._lock:
            return {uuid.UUID(r[0]) for r in self._conn.execute("SELECT id FROM outbox")}

    # -- receipts and the plan -----------------------------------------------------------------

    def record_receipt(self, receipt: Receipt) -> int:
        """Keep the receipt for the home screen; a final one (stored, held, dead letter) also
        releases its readings from the outbox, in the same transaction. Returns how many left."""
        rows = [(str(i), receipt.status.value, receipt.at.isoformat(), receipt.by, receipt.reason) for i in receipt.ids]
        final = receipt.status.value in FINAL_RECEIPTS
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    "INSERT INTO receipts (id, status, at, by, reason) VALUES (?, ?, ?, ?, ?)"
                    " ON CONFLICT (id, status) DO UPDATE SET at = excluded.at, by = excluded.by,"
                    " reason = excluded.reason",
                    rows,
                )
                deleted = 0
                if final:
                    before = self._conn.total_changes
                    self._conn.executemany("DELETE FROM outbox WHERE id = ?", [(r[0],) for r in rows])
                    deleted = self._conn.total_changes - before
                self._conn.execute("COMMIT")
            except sqlite3.Error:
                self._conn.execute("ROLLBACK")
                raise
            self._rows -= deleted
            return deleted

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
                " EXISTS (SELECT 1 FROM outbox o WHERE o.id = r.id AND o.sent_at IS NULL) FROM recent r"
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

    def save_team_message(self, message: TeamMessage) -> bool:
        """Keep the care team's newest message (an older one arriving late does not replace it)."""
        with self._lock:
            cur = self._conn.execute(
                "INSERT INTO team_message (one, id, payload) VALUES (1, ?, ?)"
                " ON CONFLICT (one) DO UPDATE SET id = excluded.id, payload = excluded.payload"
                " WHERE excluded.id >= team_message.id",
                (message.id, message.to_json().decode()),
            )
            return cur.rowcount > 0

    def team_message(self) -> TeamMessage | None:
        from vitals.wire import parse_team_message

        with self._lock:
            row = self._conn.execute("SELECT payload FROM team_message WHERE one = 1").fetchone()
        return None if row is None else parse_team_message(row[0])

    def plan(self) -> MonitoringPlan | None:
        from vitals.wire import parse_plan

        with self._lock:
            row = self._conn.execute("SELECT payload FROM plan WHERE one = 1").fetchone()
        return None if row is None else parse_plan(row[0])
