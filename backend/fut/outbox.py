"""The FUT outbox: one row per stored measurement of a linked citizen, with its delivery state.

States: ``pending`` (never tried), ``retrying`` (failed, tried again after a backoff), ``sent``
(FUT accepted it; ``fut_location`` says where), ``refused`` (FUT answered with an
OperationOutcome; kept with it, retried only when someone asks), ``not_submittable`` (no FUT
code for the kind, test data: kept with the reason, never silently dropped).

Enqueueing reads ``measurements`` by ``stored_at`` behind a per-link watermark with a generous
overlap (``stored_at`` is the storing transaction's start, so a slow transaction can commit a row
older than the last scan); the primary key makes a re-scan harmless. Nothing here blocks ingest:
the outbox is filled and drained by the sender's own connection, after the fact.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from backend.fhir.fut import FutLink

SCAN_OVERLAP = timedelta(minutes=15)
STATES = ("pending", "retrying", "sent", "refused", "not_submittable")


def link_patient(
    conn: psycopg.Connection[Any], *, patient_id: int, link: FutLink, submit_from: datetime | None = None
) -> None:
    """Link a citizen to FUT (or change the references). Readings stored from ``submit_from``
    (default: now) on are submitted."""
    conn.execute(
        """INSERT INTO fut_links (patient_id, fut_patient, episode_of_care, service_request, service_request_version,
                                  device, submit_from)
           VALUES (%s, %s, %s, %s, %s, %s, COALESCE(%s, now()))
           ON CONFLICT (patient_id) DO UPDATE SET fut_patient = EXCLUDED.fut_patient,
               episode_of_care = EXCLUDED.episode_of_care, service_request = EXCLUDED.service_request,
               service_request_version = EXCLUDED.service_request_version, device = EXCLUDED.device""",
        (patient_id, link.patient, link.episode_of_care, link.service_request, link.service_request_version,
         link.device, submit_from),
    )


def links(conn: psycopg.Connection[Any], *, limit: int = 500) -> list[dict[str, Any]]:
    """The citizens linked to FUT with their references, newest link first (for the admin page);
    ``cpr_kept`` says whether a sealed CPR number is kept, never the number."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT l.patient_id, p.external_ref AS patient_ref, l.fut_patient, l.episode_of_care,
                      l.service_request, l.service_request_version, l.device, l.linked_at, l.submit_from,
                      EXISTS (SELECT 1 FROM patient_cpr c WHERE c.patient_id = l.patient_id) AS cpr_kept
               FROM fut_links l JOIN patients p ON p.id = l.patient_id ORDER BY l.linked_at DESC LIMIT %s""",
            (limit,),
        ).fetchall()


def link_of(conn: psycopg.Connection[Any], *, patient_id: int) -> FutLink | None:
    row = conn.execute("SELECT fut_patient, episode_of_care, service_request, service_request_version, device"
                       " FROM fut_links WHERE patient_id = %s", (patient_id,)).fetchone()
    return FutLink(*row) if row else None


def link_device(conn: psycopg.Connection[Any], *, device_id: int, fut_device: str) -> None:
    """The FUT Device reference for one of nearcare's devices (the link's ``device`` otherwise)."""
    conn.execute(
        """INSERT INTO fut_device_refs (device_id, fut_device) VALUES (%s, %s)
           ON CONFLICT (device_id) DO UPDATE SET fut_device = EXCLUDED.fut_device""",
        (device_id, fut_device),
    )


def enqueue_new(conn: psycopg.Connection[Any]) -> int:
    """Queue every stored measurement of a linked citizen that is not queued yet, in one scan
    of ``measurements`` by ``stored_at`` (BRIN index, migration 0507); returns how many rows were
    added."""
    lower_of = "GREATEST(l.submit_from, COALESCE(l.enqueued_through - %(overlap)s, l.submit_from))"
    with conn.transaction():
        row = conn.execute(f"SELECT min({lower_of}), now() FROM fut_links l", {"overlap": SCAN_OVERLAP}).fetchone()
        if row is None or row[0] is None:
            return 0
        lower, now = row
        cur = conn.execute(
            f"""INSERT INTO fut_outbox (measurement_id, measured_at, patient_id)
                SELECT m.id, m.measured_at, m.patient_id
                FROM measurements m JOIN fut_links l ON l.patient_id = m.patient_id
                WHERE m.stored_at >= %(lower)s AND m.stored_at >= {lower_of}
                ON CONFLICT (measurement_id) DO NOTHING""",
            {"lower": lower, "overlap": SCAN_OVERLAP},
        )
        conn.execute("UPDATE fut_links SET enqueued_through = %s", (now,))
        return cur.rowcount


@dataclass(frozen=True, slots=True)
class OutboxMetrics:
    pending: int
    retrying: int
    sent: int
    refused: int
    not_submittable: int
    oldest_pending_age_s: float | None
    """Age of the oldest row not yet delivered (pending or retrying), in seconds."""


def metrics(conn: psycopg.Connection[Any]) -> OutboxMetrics:
    counts = dict.fromkeys(STATES, 0)
    for state, n in conn.execute("SELECT state, count(*) FROM fut_outbox GROUP BY state").fetchall():
        counts[state] = n
    row = conn.execute(
        "SELECT extract(epoch FROM now() - min(created_at)) FROM fut_outbox WHERE state IN ('pending', 'retrying')"
    ).fetchone()
    age = float(row[0]) if row and row[0] is not None else None
    return OutboxMetrics(oldest_pending_age_s=age, **counts)


def refused(conn: psycopg.Connection[Any], *, limit: int = 200) -> list[dict[str, Any]]:
    """Refused submissions with FUT's reason, newest first (for the admin page)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT o.measurement_id, o.patient_id, p.external_ref AS patient_ref, o.measured_at, o.attempts,
                      o.last_attempt_at, o.reason, o.outcome
               FROM fut_outbox o JOIN patients p ON p.id = o.patient_id
               WHERE o.state = 'refused' ORDER BY o.created_at DESC LIMIT %s""",
            (limit,),
        ).fetchall()


@dataclass(frozen=True, slots=True)
class Retried:
    """A refused submission put back in line: whose it was and why FUT had refused it."""

    measurement_id: Any
    patient_id: int
    reason: str | None


def retry_refused(conn: psycopg.Connection[Any], *, measurement_id: Any) -> Retried | None:
    """Send a refused submission again (after the cause was fixed in FUT); None if it was not
    refused."""
    row = conn.execute(
        """UPDATE fut_outbox o SET state = 'retrying', next_attempt_at = now()
           FROM (SELECT measurement_id, reason FROM fut_outbox WHERE measurement_id = %s AND state = 'refused'
                 FOR UPDATE) before
           WHERE o.measurement_id = before.measurement_id
           RETURNING o.measurement_id, o.patient_id, before.reason""",
        (measurement_id,),
    ).fetchone()
    return Retried(row[0], int(row[1]), row[2]) if row else None


def record_outcome(conn: psycopg.Connection[Any], *, measurement_id: Any, state: str, reason: str | None = None,
                   outcome: dict[str, Any] | None = None, location: str | None = None,
                   retry_at: datetime | None = None) -> None:
    assert state in STATES
    conn.execute(
        """UPDATE fut_outbox SET state = %s, attempts = attempts + 1, last_attempt_at = now(),
               reason = %s, outcome = %s, fut_location = COALESCE(%s, fut_location),
               sent_at = CASE WHEN %s = 'sent' THEN now() ELSE sent_at END,
               next_attempt_at = COALESCE(%s, next_attempt_at)
           WHERE measurement_id = %s""",
        (state, reason, Jsonb(outcome) if outcome is not None else None, location, state, retry_at, measurement_id),
    )
