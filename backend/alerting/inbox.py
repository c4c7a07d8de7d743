"""The rules' feed: committed readings, from ``rules_inbox``, evaluated exactly once.

Ingest adds each newly stored reading to ``rules_inbox`` in its batch's transaction and NOTIFYs
``nearcare_readings`` (migration 0220). :class:`RulesInbox` runs wherever the rules run
(``nearcare backend rules``, or inside ``backend run``), any number of them: woken by the NOTIFY,
or every ``poll_s`` regardless, it claims waiting readings with ``FOR UPDATE SKIP LOCKED``, hands
them to the engine in each citizen's measurement order, and deletes them in the same transaction.
Live readings go first, oldest first; a returning tablet's backlog follows in small portions of
its own between them, at most ``backlog_rate`` a second while the worker has time to spare and
``backlog_floor`` a second in portions of a fifth while live readings keep it busy (more than
``busy_limit`` of the last second), so a burst never holds up a live alert nor takes the CPU that
ingest needs, and still always moves. A worker that dies mid-batch leaves its rows to another;
the engine skips a reading it already evaluated (``reading_evaluations``) under the citizen's
lock, so a reading is evaluated exactly once, and a failed evaluation is recorded for retry
(``alert_evaluation_failures``) rather than lost.
"""

from __future__ import annotations

import collections
import logging
import time
from typing import Any

import psycopg

from backend.alerting.engine import ASYNC_COMMIT
from backend.alerting.jobs import READING_COLUMNS, readings_from_rows
from backend.events import READINGS_CHANNEL, Listening
from backend.readings import ReadingsSink

log = logging.getLogger(__name__)

LIVE = "stored_at - measured_at < interval '10 minutes'"
"""A reading stored within minutes of its measurement: someone measuring now (migration 0221)."""

_CLAIM = (
    f"SELECT {READING_COLUMNS} FROM (SELECT measurement_id, measured_at FROM rules_inbox WHERE {{where}}"
    "  ORDER BY stored_at LIMIT %s FOR UPDATE SKIP LOCKED) i"
    " JOIN measurements m ON m.id = i.measurement_id AND m.measured_at = i.measured_at"
)
_CLAIM_LIVE = _CLAIM.format(where=LIVE)
_CLAIM_BACKLOG = _CLAIM.format(where=f"NOT ({LIVE})")


class LiveLoad:
    """The share of the last ``window_s`` seconds a worker spent on live readings."""

    def __init__(self, window_s: float = 1.0) -> None:
        self.window_s = window_s
        self._spans: collections.deque[tuple[float, float]] = collections.deque()
        self._total = 0.0

    def add(self, started: float, seconds: float) -> None:
        self._spans.append((started, seconds))
        self._total += seconds

    def share(self, now: float) -> float:
        while self._spans and self._spans[0][0] < now - self.window_s:
            self._total -= self._spans.popleft()[1]
        return max(0.0, self._total) / self.window_s


class RulesInbox(Listening):
    """A Service: feeds the rules from ``rules_inbox``."""

    name = "rules"
    channel = READINGS_CHANNEL

    def __init__(self, *, database_url: str, evaluate: ReadingsSink, batch: int = 2000, backlog_batch: int = 50,
                 backlog_rate: float = 500.0, backlog_floor: float = 50.0, busy_limit: float = 0.5,
                 poll_s: float = 1.0) -> None:
        super().__init__(database_url=database_url)
        self.evaluate = evaluate
        self.batch = batch
        self.backlog_batch = backlog_batch
        """Backlog readings are evaluated in portions of at most this many, each in its own
        transaction between live batches: the next live reading waits for no more than one."""
        self.backlog_rate = backlog_rate
        """Backlog readings evaluated per second at most: a returning tablet's week is old news,
        and evaluating it flat out would take the CPU that ingest needs for live readings."""
        self.backlog_floor = backlog_floor
        """Backlog readings evaluated per second while live readings keep this worker busy: a
        backlog always moves, but live alerts come first."""
        self.busy_limit = busy_limit
        """Above this share of the last second spent on live readings, the backlog gets only
        :attr:`backlog_floor`; below it, up to :attr:`backlog_rate` (spare capacity)."""
        self._busy = LiveLoad()
        self._budget = float(backlog_batch)
        self._budget_at = time.monotonic()
        self.poll_s = poll_s
        self.handed_on = 0
        """Readings handed to the engine since start (tests and metrics)."""

    def turn(self, conn: psycopg.Connection[Any]) -> float:
        if self.drain(conn):
            return 0.0
        # Nothing claimable now: wake on new readings, or when the backlog budget has grown by a batch.
        return min(self.poll_s, self.backlog_batch / self.backlog_rate)

    def drain(self, conn: psycopg.Connection[Any]) -> int:
        """Evaluate the live readings waiting, then at most one small portion of backlog, each in
        its own transaction (a live reading waits for one portion at most); return how many."""
        now = time.monotonic()
        busy = self._busy.share(now) >= self.busy_limit
        rate = self.backlog_floor if busy else self.backlog_rate
        self._budget = min(float(self.backlog_batch), self._budget + (now - self._budget_at) * rate)
        self._budget_at = now
        n = self._claim(conn, _CLAIM_LIVE, self.batch)
        if n:
            self._busy.add(now, time.monotonic() - now)
        # While busy, the backlog goes in fifths of a portion (a live batch waits behind less), and
        # only once the budget holds a whole one: never a claim per turn for a reading or two.
        room = max(1, self.backlog_batch // 5) if busy else self.backlog_batch
        if n < self.batch and self._budget >= room:
            taken = self._claim(conn, _CLAIM_BACKLOG, room)
            self._budget -= taken
            n += taken
        return n

    def _claim(self, conn: psycopg.Connection[Any], claim: str, limit: int) -> int:
        """Claim up to ``limit`` readings, evaluate them and delete them, in one transaction."""
        # Pipelined: BEGIN, the commit setting and the claim go in one round trip, the delete and
        # the COMMIT in another.
        with conn.pipeline(), conn.transaction():
            conn.execute(ASYNC_COMMIT)
            rows = conn.execute(claim, (limit,)).fetchall()
            if not rows:
                return 0
            readings = readings_from_rows(conn, rows)
            t0 = time.perf_counter()
            self.evaluate(readings)
            conn.execute("DELETE FROM rules_inbox WHERE measurement_id = ANY(%s)", ([r[0] for r in rows],))
        self.handed_on += len(readings)
        log.debug("rules: %d readings evaluated in %.1f ms", len(readings), 1000 * (time.perf_counter() - t0))
        return len(rows)
