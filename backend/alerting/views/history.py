"""A patient's alert history: every transition flattened for a table (the API lists all), and per
alert the story that matters, each unbroken run of repeat breaches folded into one line."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import psycopg

from backend.alerting.service import alert_history

REPEATS = frozenset({"updated"})
"""Transitions that only repeat a breach: folded into one line with a count and the latest value."""


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One transition of one alert, with the alert's title and measurement."""

    alert_id: int
    title: str
    rule_id: str
    measurement: str | None
    severity: str
    transition: str
    state: str
    at: datetime
    by: str | None
    note: str | None
    team: str | None
    from_team: str | None
    value: float | None
    alert_state: str | None = None
    """The alert's state now (the newest transition's ``state`` can be an older one when
    transitions share a time or a late reading's transition sorts after a resolve)."""
    snoozed_until: datetime | None = None
    """Now, where the alert is snoozed."""


def history_rows(conn: psycopg.Connection, *, patient_id: int) -> list[HistoryRow]:
    """Every transition of every alert of the patient, newest first."""
    titles = {
        int(r[0]): (str(r[1]), r[2], r[3], r[4])
        for r in conn.execute(
            "SELECT id, title, measurement, state, CASE WHEN snoozed_until > now() AND state = 'open'"
            " THEN snoozed_until END FROM alerts WHERE patient_id = %s",
            (patient_id,),
        )
    }
    out = []
    for tr in alert_history(conn, patient_id=patient_id):
        title, measurement, state_now, snoozed_until = titles.get(tr.alert_id, (tr.rule_id, None, None, None))
        out.append(
            HistoryRow(
                alert_id=tr.alert_id,
                title=title,
                rule_id=tr.rule_id,
                measurement=measurement,
                severity=tr.severity,
                transition=tr.action,
                state=tr.to_state,
                at=tr.at,
                by=tr.actor,
                note=tr.note,
                team=tr.team_key,
                from_team=tr.from_team,
                value=tr.value,
                alert_state=state_now,
                snoozed_until=snoozed_until,
            )
        )
    out.sort(key=lambda r: r.at, reverse=True)
    return out


@dataclass(frozen=True, slots=True)
class HistoryLine:
    """One line of an alert's story: a transition, or a run of repeated "updated" ones folded."""

    at: datetime
    transition: str
    state: str
    by: str | None
    note: str | None
    team: str | None
    value: float | None
    count: int = 1
    first_at: datetime | None = None
    """For a folded run: when its first repeat happened (``at`` is the latest)."""


@dataclass(frozen=True, slots=True)
class AlertStory:
    """An alert with its transitions that matter, newest first, for the patient page."""

    alert_id: int
    title: str
    severity: str
    state: str
    """The alert's state now: open, acknowledged or resolved."""
    lines: tuple[HistoryLine, ...]
    transitions: int
    """How many transitions the full history has (the lines fold some of them)."""
    snoozed_until: datetime | None = None


def summarise_history(rows: Sequence[HistoryRow]) -> list[AlertStory]:
    """Pure. Per alert (the one with the newest activity first), its transitions newest first,
    with each unbroken run of repeat breaches folded into one line. ``rows`` is
    :func:`history_rows`' output (newest first); nothing is dropped: the counts add up to
    ``len(rows)``."""
    per_alert: dict[int, list[HistoryRow]] = {}
    for r in rows:
        per_alert.setdefault(r.alert_id, []).append(r)
    stories = []
    for alert_id, transitions in per_alert.items():
        lines: list[HistoryLine] = []
        for r in transitions:
            last = lines[-1] if lines else None
            if r.transition in REPEATS and last is not None and last.transition == r.transition:
                # Newest first: the line keeps the latest time and value; the run reaches back to r.
                lines[-1] = replace(last, count=last.count + 1, first_at=r.at)
                continue
            lines.append(
                HistoryLine(
                    at=r.at, transition=r.transition, state=r.state, by=r.by, note=r.note, team=r.team, value=r.value
                )
            )
        newest = transitions[0]
        stories.append(
            AlertStory(
                alert_id=alert_id,
                title=newest.title,
                severity=newest.severity,
                state=newest.alert_state or newest.state,
                lines=tuple(lines),
                transitions=len(transitions),
                snoozed_until=newest.snoozed_until,
            )
        )
    return stories


@dataclass(frozen=True, slots=True)
class AlertMarker:
    """An alert's opening, as a marker on the trend plots."""

    t: float
    """Seconds since the epoch."""
    level: str
    label: str
    kind: str
    """The measurement kind ("" for alerts about no single measurement)."""
    component: str = ""
    """The series it concerns (systolic or diastolic for blood pressure)."""

    def to_chart(self) -> dict[str, str | float]:
        return {"t": self.t, "level": self.level, "label": self.label, "kind": self.kind, "component": self.component}


def alert_markers(conn: psycopg.Connection, *, patient_id: int, since: datetime) -> list[AlertMarker]:
    """Where alerts opened, at the measurement time of the readings that opened them (the
    opening time where those are not known), on the series they concern."""
    from backend.alerting.views.worklist import component_of

    rows = conn.execute(
        """SELECT extract(epoch FROM coalesce(
                  (SELECT min(mi.measured_at) FROM measurement_ids mi WHERE mi.id = ANY(a.reading_ids)),
                  a.opened_at))::float8,
                  a.severity, a.title, coalesce(a.measurement, ''), a.rule_id FROM alerts a
           WHERE a.patient_id = %s AND a.opened_at >= %s ORDER BY a.opened_at""",
        (patient_id, since),
    ).fetchall()
    return [AlertMarker(t, level, label, kind, component_of(rule_id, kind or None) or "")
            for t, level, label, kind, rule_id in rows]
