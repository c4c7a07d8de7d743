"""The worklist (triagering) scoped to the user: patients with unresolved alerts, worst first,
then the green patients (new normal readings, no alert) to glance at."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from backend.accounts.model import Role, User
from backend.accounts.scope import can_read_patient, scope_clause
from backend.alerting.models import WorklistAlert, WorklistEntry
from backend.alerting.service import worklist as alert_worklist
from backend.review.service import GreenCache, GreenRow

_RANK = {"red": 0, "yellow": 1, "blue": 2, "technical": 3}

GREEN_SHOWN = 200
"""Green rows listed (longest waiting first); "kvittér alle grønne" covers all of them."""


UNITS: dict[str, str] = {
    "systolic": "mmHg", "diastolic": "mmHg", "pulse": "slag/min", "spo2": "%", "weight": "kg", "temperature": "°C",
}
"""The unit shown beside each component's value (words, not UCUM codes such as ``mm[Hg]``)."""


@dataclass(frozen=True, slots=True)
class AlertContext:
    """What a clinician needs to judge one alert: the value with its unit, the limit or baseline
    it crossed, a trend's change, the worst and the latest value, when it was measured."""

    alert_id: int
    component: str | None
    unit: str
    latest: float | None
    """The newest breaching value."""
    worst: float | None
    """The most extreme value recorded in the alert's life (the one that made it red, say)."""
    direction: str | None
    """"high" or "low" for a limit or baseline crossed."""
    limit: float | None
    """The limit of the alert's severity in that direction (absolute rules)."""
    change: float | None = None
    """A trend's change over ``window_hours`` (e.g. +3.1 kg)."""
    window_hours: float | None = None
    baseline_mean: float | None = None
    measured_at: datetime | None = None
    """When the citizen measured the newest breaching value (not when the server processed it)."""
    first_measured_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class WorklistView:
    rows: list[WorklistEntry]
    """In the user's scope: rows needing action first (worst severity, then oldest), then the
    handled ones (every alert kvitteret, snoozed or muted) in the same order."""
    green: list[GreenRow]
    """Green patients in scope without an unresolved alert."""
    teams: list[tuple[str, str]]
    """(key, name) of the teams the user may filter by (and hand a citizen over to)."""
    counts: dict[str, int] = field(default_factory=dict)
    """Rows needing action per worst severity, "handled", and "green"."""
    handled: frozenset[int] = frozenset()
    """Patients whose alerts are all handled (shown muted, below the rest)."""
    context: Mapping[int, AlertContext] = field(default_factory=dict)
    """Alert id -> its clinical context."""


def needs_action(alert: WorklistAlert) -> bool:
    """Open, not snoozed and not muted by a red alert."""
    return alert.state == "open" and alert.snoozed_until is None and alert.muted_by is None


def component_of(rule_id: str, measurement: str | None) -> str | None:
    """The component a rule watches: blood-pressure rules name theirs in the rule id."""
    if measurement == "blood_pressure":
        return "diastolic" if "diastolic" in rule_id else "systolic"
    return measurement


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def alert_context(row: Mapping[str, Any]) -> AlertContext:
    """Pure: an alert row (with ``values``, the values its transitions recorded, and the newest
    reading's ``measured_at``) as its clinical context."""
    component = component_of(row["rule_id"], row["measurement"])
    thresholds: Mapping[str, Any] = row.get("thresholds") or {}
    detail: Mapping[str, Any] = row.get("detail") or {}
    latest = _num(row.get("last_value"))
    values = [v for v in (_num(x) for x in row.get("values") or ()) if v is not None]
    if latest is not None:
        values.append(latest)
    direction: str | None = None
    limit: float | None = None
    sev = row["severity"]
    if row["rule_kind"] == "absolute" and values:
        hi = _num(thresholds.get(f"{sev}_high"))
        lo = _num(thresholds.get(f"{sev}_low"))
        if hi is not None and max(values) >= hi:
            direction, limit = "high", hi
        elif lo is not None and min(values) <= lo:
            direction, limit = "low", lo
    elif row["rule_kind"] == "baseline" and _num(detail.get("z")) is not None:
        direction = "high" if float(detail["z"]) > 0 else "low"
    elif row["rule_kind"] == "trend" and _num(detail.get("change")) is not None:
        direction = "high" if float(detail["change"]) > 0 else "low"
    worst = (max(values) if direction == "high" else min(values)) if values and direction else latest
    return AlertContext(
        alert_id=row["id"], component=component,
        unit="point" if row["rule_kind"] == "score" else UNITS.get(component or "", ""), latest=latest, worst=worst,
        direction=direction, limit=limit, change=_num(detail.get("change")),
        window_hours=_num(detail.get("window_hours")), baseline_mean=_num(detail.get("baseline_mean")),
        measured_at=row.get("measured_at"), first_measured_at=row.get("first_measured_at"),
    )


def alert_contexts(conn: psycopg.Connection, *, alert_ids: Iterable[int]) -> dict[int, AlertContext]:
    """The clinical context of each alert (one query)."""
    ids = list(alert_ids)
    if not ids:
        return {}
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT a.id, a.rule_id, a.rule_kind, a.measurement, a.severity, a.thresholds, a.detail, a.last_value,"
            " (SELECT mi.measured_at FROM measurement_ids mi WHERE mi.id = a.last_reading_id) AS measured_at,"
            " (SELECT min(mi.measured_at) FROM measurement_ids mi WHERE mi.id = ANY(a.reading_ids))"
            "   AS first_measured_at,"
            " (SELECT array_agg(t.value) FROM alert_transitions t WHERE t.alert_id = a.id AND t.value IS NOT NULL)"
            "   AS values"
            " FROM alerts a WHERE a.id = ANY(%s)",
            (ids,),
        ).fetchall()
    return {r["id"]: alert_context(r) for r in rows}


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
    readable = [
        e
        for e in entries
        if can_read_patient(user, patient_id=e.patient_id, municipality=e.municipality, department=e.department)[0]
    ]
    handled = frozenset(e.patient_id for e in readable if not any(needs_action(a) for a in e.alerts))
    rows = [e for e in readable if e.patient_id not in handled] + [e for e in readable if e.patient_id in handled]
    with_alerts = {e.patient_id for e in rows}
    green_rows = [g for g in green if g.patient_id not in with_alerts]
    counts: dict[str, int] = {}
    for e in rows:
        if e.patient_id in handled:
            continue
        worst = min((a for a in e.alerts if needs_action(a)), key=lambda a: _RANK.get(a.severity, 9)).severity
        counts[worst] = counts.get(worst, 0) + 1
    if handled:
        counts["handled"] = len(handled)
    counts["green"] = len(green_rows)
    return WorklistView(rows=rows, green=green_rows, teams=teams, counts=counts, handled=handled)


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
    teams = dict(teams_in_scope(conn, user=user))
    # The teams that own alerts the user sees can be filtered by too (issue 13: a specialist saw
    # municipal teams' alerts but could filter by his own team only).
    for e in entries:
        teams.setdefault(e.team_key, e.team_name)
    view = assemble(
        user=user,
        entries=entries,
        green=green.rows(conn, user=user, now=now),
        teams=sorted(teams.items(), key=lambda kv: kv[1]) if teams else [],
    )
    context = alert_contexts(conn, alert_ids=[a.id for e in view.rows for a in e.alerts])
    return WorklistView(rows=view.rows, green=view.green, teams=view.teams, counts=view.counts,
                        handled=view.handled, context=context)


class HandoverRefused(ValueError):
    """A handover the alerts or the team do not allow (no such team, the same team, resolved)."""


def hand_over(
    conn: psycopg.Connection, *, patient_id: int, team_key: str, by: str, note: str, now: datetime | None = None
) -> int:
    """Hand every unresolved alert of a citizen to another team in one action: the owner changes,
    each alert records a "rerouted" transition naming who, from which team and why. Returns the
    alerts handed over. The caller has checked access and commits."""
    at = now or datetime.now(UTC)
    if conn.execute("SELECT 1 FROM teams WHERE key = %s", (team_key,)).fetchone() is None:
        raise HandoverRefused(f"no team {team_key!r}")
    with conn.transaction():
        rows = conn.execute(
            "SELECT id, team_key, state, severity FROM alerts WHERE patient_id = %s AND state <> 'resolved'"
            " AND team_key <> %s FOR UPDATE",
            (patient_id, team_key),
        ).fetchall()
        if not rows:
            raise HandoverRefused("nothing to hand over")
        for alert_id, from_team, state, severity in rows:
            conn.execute(
                "UPDATE alerts SET team_key = %s, owner_since = %s, updated_at = %s WHERE id = %s",
                (team_key, at, at, alert_id),
            )
            conn.execute(
                "INSERT INTO alert_transitions (alert_id, at, action, actor, note, from_state, to_state, from_team,"
                " team_key, severity) VALUES (%s, %s, 'rerouted', %s, %s, %s, %s, %s, %s, %s)",
                (alert_id, at, by, note or None, state, state, from_team, team_key, severity),
            )
    return len(rows)


@dataclass(frozen=True, slots=True)
class PatientAlerts:
    """A citizen's unresolved alerts for the patient page: the worklist's entry and each alert's
    clinical context (the same lines and Kvittér as the worklist)."""

    entry: WorklistEntry | None
    context: Mapping[int, AlertContext]


def patient_alerts(conn: psycopg.Connection, *, patient_id: int, now: datetime | None = None) -> PatientAlerts:
    """The citizen's unresolved alerts (the caller has checked access)."""
    entries = alert_worklist(conn, patient_ids=[patient_id], now=now or datetime.now(UTC))
    entry = entries[0] if entries else None
    ids = [a.id for a in entry.alerts] if entry else []
    return PatientAlerts(entry=entry, context=alert_contexts(conn, alert_ids=ids))
