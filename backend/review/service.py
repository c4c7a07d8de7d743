"""Kvittering of green readings: readings that raised no alert, shown on the worklist as "normal
readings to glance at" until a clinician has seen them ("kvittér alle grønne").

Seen is a per-patient watermark (``reading_reviews.seen_through``, migration 0301) plus a log row
and an audit row per patient; the citizen's tablet is told "seen" through a receipt. Alerts keep
their own kvittering in :mod:`backend.alerting`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg

from backend import audit, outbox
from backend.accounts.model import User
from backend.accounts.scope import scope_clause
from vitals.kinds import MeasurementKind
from vitals.wire import Receipt, ReceiptStatus, Topics

log = logging.getLogger(__name__)

GREEN_WINDOW = timedelta(days=3)
"""Readings older than this are not listed as green (and not reviewed)."""
GREEN_LIMIT = 2000
"""At most this many green patients are read per scope, oldest newest-reading first."""
GREEN_CACHE_S = 10.0
RECEIPT_IDS = 500
"""Reading ids per "seen" receipt."""


@dataclass(frozen=True, slots=True)
class GreenRow:
    """A patient with readings newer than their last review and no open alert."""

    patient_id: int
    patient_name: str
    patient_ref: str
    municipality: str
    programme: str
    readings: int
    newest_at: datetime
    """stored_at of the newest unreviewed reading (the watermark a review moves to)."""


_GREEN = """
SELECT p.id, p.name, p.external_ref, p.municipality, p.programme, g.n, g.newest
FROM patients p
LEFT JOIN reading_reviews rv ON rv.patient_id = p.id
CROSS JOIN LATERAL (
    -- Per patient and kind through the (patient_id, kind, measured_at) index: cheap however
    -- large the table, and independent of how the rows lie on disk. The watermark is a FILTER,
    -- not a WHERE: as a WHERE the planner ANDed each patient's few index rows with a scan of the
    -- stored_at BRIN index over the whole table (0.4 ms a patient, 370 ms for 900 of them).
    SELECT (count(*) FILTER (WHERE m.stored_at > coalesce(rv.seen_through, '-infinity')))::int AS n,
           max(m.stored_at) FILTER (WHERE m.stored_at > coalesce(rv.seen_through, '-infinity')) AS newest
    FROM measurements m
    WHERE m.patient_id = p.id AND m.kind = ANY(%(kinds)s) AND m.measured_at >= %(since)s
) g
WHERE p.active AND {scope} AND g.n > 0
  AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.patient_id = p.id AND a.state = 'open')
ORDER BY g.newest
LIMIT %(limit)s
"""


def green_rows(conn: psycopg.Connection, *, user: User, now: datetime | None = None) -> list[GreenRow]:
    """The green patients in the user's scope, the longest-waiting first."""
    now = now or datetime.now(UTC)
    where, params = scope_clause(user, "p")
    params.update(since=now - GREEN_WINDOW, kinds=[k.value for k in MeasurementKind], limit=GREEN_LIMIT)
    return [GreenRow(*r) for r in conn.execute(_GREEN.format(scope=where), params).fetchall()]


ScopeKey = tuple[str, str | None, str | None, int | None]


def _scope_key(user: User) -> ScopeKey:
    return (user.role.value, user.municipality, user.department, user.patient_id)


class GreenCache:
    """Green rows per scope for a few seconds: they are never urgent and the costliest part of
    the worklist (a look at every patient in scope). Dropped at once by a review in this process;
    other processes see the review within ``ttl_s``. Alerts are always read fresh."""

    def __init__(self, *, ttl_s: float = GREEN_CACHE_S) -> None:
        self.ttl_s = ttl_s
        self._rows: dict[ScopeKey, tuple[float, list[GreenRow]]] = {}
        self._lock = threading.Lock()

    def rows(self, conn: psycopg.Connection, *, user: User, now: datetime | None = None) -> list[GreenRow]:
        key = _scope_key(user)
        t = time.monotonic()
        with self._lock:
            hit = self._rows.get(key)
        if hit is not None and hit[0] > t:
            return hit[1]
        rows = green_rows(conn, user=user, now=now)
        with self._lock:
            self._rows[key] = (t + self.ttl_s, rows)
        return rows

    def forget(self) -> None:
        """Every scope: a patient can be in a nurse's and a specialist's at once."""
        with self._lock:
            self._rows.clear()


def acknowledge_all_green(
    conn: psycopg.Connection,
    *,
    user: User,
    cache: GreenCache,
    topics: Topics,
    remote_addr: str | None = None,
    now: datetime | None = None,
    patient_ids: Collection[int] | None = None,
) -> int:
    """Kvittér alle grønne: every green patient in scope is marked seen through their newest
    reading (one log and one audit row each) and each citizen's tablet gets "seen" receipts.
    With ``patient_ids``, only those of them (the rows the worklist showed), and never a patient
    with an unresolved alert. Returns the number of patients. The caller commits."""
    now = now or datetime.now(UTC)
    rows = green_rows(conn, user=user, now=now)
    if patient_ids is not None:
        wanted = set(patient_ids)
        rows = [g for g in rows if g.patient_id in wanted]
    # A citizen with an unresolved alert (kvitteret, say) is shown on the worklist as that alert's
    # row, not as green: never marked seen by "kvittér alle grønne" (issue 13).
    alerted = {r[0] for r in conn.execute(
        "SELECT DISTINCT patient_id FROM alerts WHERE state <> 'resolved' AND patient_id = ANY(%s)",
        ([g.patient_id for g in rows],))}
    rows = [g for g in rows if g.patient_id not in alerted]
    cache.forget()
    for g in rows:
        conn.execute(
            """INSERT INTO reading_reviews (patient_id, seen_through, seen_by, seen_at)
               VALUES (%s, %s, %s, %s)
               ON CONFLICT (patient_id) DO UPDATE SET seen_through = greatest(reading_reviews.seen_through,
                   EXCLUDED.seen_through), seen_by = EXCLUDED.seen_by, seen_at = EXCLUDED.seen_at""",
            (g.patient_id, g.newest_at, user.username, now),
        )
        conn.execute(
            "INSERT INTO reading_review_log (patient_id, seen_through, readings, seen_by, seen_at)"
            " VALUES (%s, %s, %s, %s, %s)",
            (g.patient_id, g.newest_at, g.readings, user.username, now),
        )
        audit.record(
            conn,
            actor=user,
            patient_id=g.patient_id,
            action="kvittering (green)",
            detail=f"{g.readings} readings",
            remote_addr=remote_addr,
        )
        send_seen(
            conn,
            topics=topics,
            patient_id=g.patient_id,
            since=now - GREEN_WINDOW,
            through=g.newest_at,
            by=user.display_name,
            now=now,
        )
    return len(rows)


def send_seen(
    conn: psycopg.Connection,
    *,
    topics: Topics,
    patient_id: int,
    since: datetime,
    through: datetime,
    by: str,
    now: datetime,
) -> int:
    """Queue "seen" receipts (:mod:`backend.outbox`, in the caller's transaction) for the patient's
    readings measured since ``since`` and stored through ``through``, per agent, at most
    :data:`RECEIPT_IDS` ids each. Returns the receipts queued."""
    rows = conn.execute(
        """SELECT agent_id, array_agg(id ORDER BY measured_at) FROM measurements
           WHERE patient_id = %s AND measured_at >= %s AND stored_at <= %s GROUP BY agent_id""",
        (patient_id, since, through),
    ).fetchall()
    sent = 0
    for agent_id, ids in rows:
        for i in range(0, len(ids), RECEIPT_IDS):
            receipt = Receipt(
                agent_id=agent_id, status=ReceiptStatus.SEEN, ids=tuple(ids[i : i + RECEIPT_IDS]), at=now, by=by
            )
            outbox.enqueue(conn, topic=topics.receipts(agent_id), payload=receipt.to_json())
            sent += 1
    return sent
