"""The storage edge of ingest: one transaction per batch, exactly once on the measurement id.

The arbiter is ``measurement_ids`` (migration 0120): one row per id ever stored, a plain table
on both flavours, so its primary key holds on TimescaleDB too, where ``measurements`` can only
be unique on (id, measured_at). Accepted readings go in by binary COPY into ``measurement_ids``
and straight into ``measurements``, inside a savepoint. A repeat is rare (an agent's re-send
whose receipt was lost, a crash between commit and receipt), so the common case pays for no
duplicate check of its own: the primary key refuses the COPY, the savepoint is rolled back, and
the batch goes in the careful way: COPY into a temporary table, then one statement that claims
the new ids (``INSERT … ON CONFLICT DO NOTHING RETURNING``) and inserts exactly those rows, so a
repeat is absorbed (even with another ``measured_at``) and only new readings go on to the
rules. Two workers storing the same reading at once is safe either way: the second one's insert
waits on the first one's index entry and then conflicts (or proceeds, if the first rolled back).

Held readings go to ``rejected_readings`` (idempotent on id, and never for an id already
stored), dead letters to ``dead_letters``, agent status and last-seen to ``agents``. Row locks
on agents and devices are always taken in id order, so two workers never deadlock on them.
Ingest is the only writer of ``measurements``: anything else that stores readings goes through
:func:`write_batch`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from backend.events import EVENTS_CHANNEL, READINGS_CHANNEL
from backend.ingest.core import AcceptedReading, Decision, StatusUpdate, status_refusal
from backend.readings import StoredReading
from vitals.kinds import MeasurementKind

_COLUMNS = (
    "id",
    "measured_at",
    "patient_id",
    "agent_id",
    "device_id",
    "kind",
    "value",
    "components",
    "unit",
    "device_clock_trusted",
    "agent_received_at",
    "quality",
    "flags",
    "user_index",
    "raw_characteristic",
    "raw",
)
_TYPES = (
    "uuid",
    "timestamptz",
    "int8",
    "text",
    "int8",
    "text",
    "float8",
    "jsonb",
    "text",
    "bool",
    "timestamptz",
    "text[]",
    "text[]",
    "int4",
    "text",
    "bytea",
)
_COLS = ", ".join(_COLUMNS)
_STAGING = "ingest_staging"
# Claim the ids no one stored yet, and insert exactly those rows (ON CONFLICT on measurements
# only guards rows that other writers put there without claiming their id).
_CLAIM_AND_INSERT = (
    f"WITH fresh AS (INSERT INTO measurement_ids (id, measured_at) SELECT id, measured_at FROM {_STAGING}"
    " ON CONFLICT (id) DO NOTHING RETURNING id) "
    f"INSERT INTO measurements ({_COLS}) SELECT {', '.join('s.' + c for c in _COLUMNS)} FROM {_STAGING} s"
    " JOIN fresh f ON f.id = s.id ON CONFLICT DO NOTHING RETURNING id, stored_at"
)

_BATTERY_FLAGS = frozenset({"low_battery", "battery_low"})

_SEEN_UPDATE = "UPDATE agents SET last_seen_at = greatest(last_seen_at, %(seen)s::timestamptz) WHERE id = %(id)s"
_STATUS_UPDATE = """
UPDATE agents SET
    online          = %(online)s,
    online_since    = CASE WHEN NOT %(online)s THEN NULL
                           WHEN online AND online_since IS NOT NULL THEN online_since ELSE %(at)s END,
    version         = coalesce(%(version)s, version),
    spool_depth     = CASE WHEN %(spool_depth)s::int IS NOT NULL THEN %(spool_depth)s::int ELSE spool_depth END,
    spool_oldest_at = CASE WHEN %(spool_depth)s::int IS NOT NULL
                           THEN %(spool_oldest_at)s::timestamptz ELSE spool_oldest_at END,
    status_at       = greatest(status_at, %(at)s)
WHERE id = %(id)s
"""
# The spool fields move together, and only with a status that reports them: the broker's
# "offline" will does not know the spool, so the last known depth stays.


@dataclass(frozen=True, slots=True)
class BatchResult:
    stored: list[StoredReading] = field(default_factory=list)
    """Newly inserted readings, in per-patient time order."""
    duplicates: int = 0
    held: int = 0
    dead_letters: int = 0
    statuses: int = 0


def prepare(conn: psycopg.Connection) -> None:
    """Once per connection: the staging table COPY fills and each commit empties."""
    conn.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {_STAGING} (LIKE measurements INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
    )


def write_batch(conn: psycopg.Connection, decisions: Sequence[Decision], *, received_at: datetime) -> BatchResult:
    """Write one batch in one transaction. Raises psycopg errors; the caller retries or splits."""
    accepted = [r for d in decisions for r in d.accepted]
    held = [h for d in decisions for h in d.held]
    dead = [d.dead_letter for d in decisions if d.dead_letter is not None]
    statuses = [d.status for d in decisions if d.status is not None]
    with conn.transaction():
        stored = _insert_measurements(conn, accepted)
        if stored:
            _hand_to_rules(conn, stored)
        if held:
            with conn.cursor() as cur:
                cur.executemany(
                    """INSERT INTO rejected_readings
                           (id, measured_at, patient_id, agent_id, device_address, kind, components, unit,
                            reason, envelope)
                       SELECT %(id)s, %(at)s, %(patient)s, %(agent)s, %(device)s, %(kind)s, %(components)s::jsonb,
                              %(unit)s, %(reason)s, %(envelope)s::jsonb
                        WHERE NOT EXISTS (SELECT 1 FROM measurement_ids WHERE id = %(id)s)
                       ON CONFLICT (id) DO NOTHING""",
                    [
                        {
                            "id": h.id,
                            "at": h.measured_at,
                            "patient": h.patient_id,
                            "agent": h.agent_id,
                            "device": h.device_address,
                            "kind": h.kind,
                            "components": json.dumps(dict(h.components)),
                            "unit": h.unit,
                            "reason": h.reason,
                            "envelope": json.dumps(dict(h.measurement)),
                        }
                        for h in held
                    ],
                )
        if dead:
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO dead_letters (received_at, topic, agent_id, payload, reason, field) "
                    "VALUES (%s, %s, %s, %s, %s, %s)",
                    [
                        (
                            received_at,
                            _clean(dl.topic),
                            dl.agent_id and _clean(dl.agent_id),
                            dl.payload,
                            _clean(dl.reason),
                            dl.field and _clean(dl.field),
                        )
                        for dl in dead
                    ],
                )
        _update_agents(conn, decisions, statuses, received_at)
        _update_devices(conn, accepted, received_at)
    return BatchResult(
        stored=stored,
        duplicates=len(accepted) - len(stored),
        held=len(held),
        dead_letters=len(dead),
        statuses=len(statuses),
    )


def _insert_measurements(conn: psycopg.Connection, accepted: list[AcceptedReading]) -> list[StoredReading]:
    if not accepted:
        return []
    # A repeat within the batch is one row: the first copy wins, as ON CONFLICT would have it.
    unique: dict[object, AcceptedReading] = {}
    for r in accepted:
        unique.setdefault(r.id, r)
    rows = list(unique.values())
    inserted: dict[object, datetime]
    try:
        with conn.transaction(), conn.cursor() as cur:
            with cur.copy("COPY measurement_ids (id, measured_at) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["uuid", "timestamptz"])
                for r in rows:
                    copy.write_row((r.id, r.measured_at))
            _copy(cur, "measurements", rows)
            # stored_at defaults to now(), the transaction's start: the same for every row.
            stored_at = cur.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
        inserted = {r.id: stored_at for r in rows}
    except psycopg.errors.UniqueViolation:
        inserted = _insert_skipping_duplicates(conn, rows)
    if not inserted:
        return []
    out: list[StoredReading] = []
    for r in rows:
        stored_at = inserted.get(r.id)
        if stored_at is None:  # a duplicate
            continue
        out.append(
            StoredReading(
                id=r.id,
                patient_id=r.patient_id,
                agent_id=r.agent_id,
                kind=MeasurementKind(r.kind),
                components=r.components,
                measured_at=r.measured_at,
                stored_at=stored_at,
                quality=r.quality,
                flags=r.flags,
                device_id=r.device_id,
                extra={"user_index": r.user_index} if r.user_index is not None else {},
            )
        )
    out.sort(key=lambda s: (s.patient_id, s.measured_at))
    return out


def _hand_to_rules(conn: psycopg.Connection, stored: list[StoredReading]) -> None:
    """In the batch's own transaction: the new readings go to the rules' inbox, and the NOTIFYs
    (delivered at commit, never for a rolled-back batch) wake the rules workers and tell every
    web process which citizens have new readings (the live worklist)."""
    with conn.cursor() as cur:
        with cur.copy("COPY rules_inbox (measurement_id, patient_id, measured_at) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["uuid", "int8", "timestamptz"])
            for r in stored:
                copy.write_row((r.id, r.patient_id, r.measured_at))
        patients: dict[int, int] = {}
        for r in stored:
            patients[r.patient_id] = patients.get(r.patient_id, 0) + 1
        events = [json.dumps({"type": "reading.stored", "data": {"patient_id": pid, "count": n}})
                  for pid, n in patients.items()]
        cur.execute(
            "SELECT pg_notify(%s, ''), count(pg_notify(%s, e)) FROM unnest(%s::text[]) e",
            (READINGS_CHANNEL, EVENTS_CHANNEL, events),
        )


def _insert_skipping_duplicates(conn: psycopg.Connection, rows: list[AcceptedReading]) -> dict[object, datetime]:
    """The careful path: only ids never stored go in; returns id -> stored_at of those."""
    with conn.cursor() as cur:
        _copy(cur, _STAGING, rows)
        cur.execute(_CLAIM_AND_INSERT)
        return {row[0]: row[1] for row in cur.fetchall()}


def _copy(cur: psycopg.Cursor[Any], table: str, rows: list[AcceptedReading]) -> None:
    with cur.copy(f"COPY {table} ({_COLS}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(list(_TYPES))
        for r in rows:
            copy.write_row(
                (
                    r.id,
                    r.measured_at,
                    r.patient_id,
                    r.agent_id,
                    r.device_id,
                    r.kind,
                    r.value,
                    Jsonb(dict(r.components)),
                    r.unit,
                    r.device_clock_trusted,
                    r.agent_received_at,
                    list(r.quality),
                    list(r.flags),
                    r.user_index,
                    r.raw_characteristic,
                    r.raw,
                )
            )


def _update_agents(
    conn: psycopg.Connection, decisions: Sequence[Decision], statuses: list[StatusUpdate], received_at: datetime
) -> None:
    """Last-seen for every agent heard from; each status applied or, if :func:`status_refusal`
    says it is stale, kept as a dead letter with the reason. Agents in id order (row locks)."""
    seen: set[str] = {d.agent_id for d in decisions if d.agent_id and (d.accepted or d.held)}
    seen |= {s.agent_id for s in statuses if s.online}
    by_agent: dict[str, list[StatusUpdate]] = {}
    for st in statuses:
        by_agent.setdefault(st.agent_id, []).append(st)
    refused: list[tuple[StatusUpdate, str]] = []
    for agent_id in sorted(seen | set(by_agent)):
        if agent_id in seen:
            conn.execute(_SEEN_UPDATE, {"id": agent_id, "seen": received_at})
        for st in by_agent.get(agent_id, ()):
            row = conn.execute("SELECT status_at, online_since FROM agents WHERE id = %s FOR UPDATE",
                               (agent_id,)).fetchone()
            if row is None:
                continue
            why = status_refusal(st, status_at=row[0], online_since=row[1])
            if why is not None:
                refused.append((st, why))
                continue
            conn.execute(_STATUS_UPDATE, {
                "id": agent_id, "at": st.at, "online": st.online, "version": st.version,
                "spool_depth": st.spool_depth, "spool_oldest_at": st.spool_oldest_at,
            })
    if refused:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO dead_letters (received_at, topic, agent_id, payload, reason, field) "
                "VALUES (%s, %s, %s, %s, %s, 'at')",
                [(received_at, _clean(st.topic), _clean(st.agent_id), st.payload, _clean(why)) for st, why in refused],
            )


def _update_devices(conn: psycopg.Connection, accepted: list[AcceptedReading], received_at: datetime) -> None:
    battery: dict[int, tuple[datetime, bool]] = {}
    for r in accepted:
        low = not _BATTERY_FLAGS.isdisjoint(r.quality)
        prev = battery.get(r.device_id)
        if prev is None or r.measured_at >= prev[0]:
            battery[r.device_id] = (r.measured_at, low)
    if battery:
        with conn.cursor() as cur:
            cur.executemany(
                "UPDATE devices SET last_seen_at = greatest(last_seen_at, %s), battery_low = %s WHERE id = %s",
                [(received_at, low, dev) for dev, (_, low) in sorted(battery.items())],
            )


def _clean(text: str) -> str:
    """PostgreSQL text cannot hold NUL; a dead letter's reason may quote the bad payload."""
    return text.replace("\x00", "\\x00")
