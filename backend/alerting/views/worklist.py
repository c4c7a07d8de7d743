"""The worklist (triagering) scoped to the user: patients with unresolved alerts, worst first,
then the green patients (new normal readings, no alert) to glance at."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg

from backend.accounts.model import Role, User
from backend.accounts.scope import can_read_patient, scope_clause
from backend.alerting.models import WorklistEntry
from backend.alerting.service import worklist as alert_worklist
from backend.review.service import GreenCache, GreenRow

GREEN_SHOWN = 200
"""Green rows listed (longest waiting first); "kvittér alle grønne" covers all of them."""


@dataclass(frozen=True, slots=True)
class WorklistView:
    rows: list[WorklistEntry]
    """In the user's scope: unacknowledged first by worst severity then oldest; acknowledged after."""
    green: list[GreenRow]
    """Green patients in scope without an unresolved alert."""
    teams: list[tuple[str, str]]
    """(key, name) of the teams the user may filter by."""
    counts: dict[str, int] = field(default_factory=dict)
    """Rows per worst severity, and "green"."""


def teams_in_scope(conn: psycopg.Connection, *, user: User) -> list[tuple[str, str]]:
    """The teams whose patients the user sees: a nurse's municipality's, a specialist's
    department's (and the user's own team)."""
    if user.role is Role.NURSE:
        sql, value = "SELECT key, name FROM teams WHERE municipality = %s OR id = %s ORDER BY name", user.municipality
    elif user.role is Role.SPECIALIST:
        sql, value = "SELECT key, name FROM teams WHERE department = %s OR id = %s ORDER BY name", user.department
    else:
        return []
    return [(r[0], r[1]) for r in conn.execute(sql, (value, user.team_id)).fetchall()]


def assemble(
    *,
    user: User,
    entries: Sequence[WorklistEntry],
    green: Sequence[GreenRow],
    teams: list[tuple[str, str]],
) -> WorklistView:
    """Pure: the entries the user may read (the scope rule of :mod:`backend.accounts.scope`, row by
    row, whatever the SQL selected), in alerting's order; the green patients with no entry; counts."""
    rows = [
        e
        for e in entries
        if can_read_patient(user, patient_id=e.patient_id, municipality=e.municipality, department=e.department)[0]
    ]
    with_alerts = {e.patient_id for e in rows}
    green_rows = [g for g in green if g.patient_id not in with_alerts]
    counts: dict[str, int] = {}
    for e in rows:
        counts[e.worst_severity] = counts.get(e.worst_severity, 0) + 1
    counts["green"] = len(green_rows)
    return WorklistView(rows=rows, green=green_rows, teams=teams, counts=counts)


def worklist(
    conn: psycopg.Connection,
    *,
    user: User,
    green: GreenCache,
    team_key: str | None = None,
    now: datetime | None = None,
) -> WorklistView:
    """The user's worklist; with ``team_key``, only patients with an alert owned by that team
    (green rows are not team-bound and always listed)."""
    now = now or datetime.now(UTC)
    where, params = scope_clause(user, "p")
    in_scope = [r[0] for r in conn.execute(f"SELECT p.id FROM patients p WHERE p.active AND {where}", params)]
    entries = alert_worklist(conn, team_keys=[team_key] if team_key else None, patient_ids=in_scope, now=now)
    return assemble(
        user=user,
        entries=entries,
        green=green.rows(conn, user=user, now=now),
        teams=teams_in_scope(conn, user=user),
    )
