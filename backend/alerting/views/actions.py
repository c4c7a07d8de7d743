"""A clinician's change to one alert: kvittering, afslut (resolve) and udsæt (snooze), with the
clinician named as "display name (username)". Alerting refuses a change the alert's state does
not allow (:class:`backend.alerting.errors.AlertingError`)."""

from __future__ import annotations

from datetime import datetime

import psycopg

from backend.accounts.model import User
from backend.alerting import service
from backend.alerting.config import AlertingConfig
from backend.alerting.models import Alert
from vitals.wire import Topics


def clinician_name(user: User) -> str:
    return f"{user.display_name} ({user.username})"


def alert_patient(conn: psycopg.Connection, *, alert_id: int) -> int | None:
    """The alert's patient (for the scope check), or None when there is no such alert."""
    row = conn.execute("SELECT patient_id FROM alerts WHERE id = %s", (alert_id,)).fetchone()
    return int(row[0]) if row else None


def acknowledge(
    conn: psycopg.Connection,
    *,
    alert_id: int,
    user: User,
    note: str,
    topics: Topics,
) -> Alert:
    """Kvittér an alert with a note; the citizen's tablet gets "seen" for its readings."""
    return service.acknowledge(
        conn,
        alert_id=alert_id,
        by=clinician_name(user),
        note=note.strip(),
        topics=topics,
    )


def resolve(conn: psycopg.Connection, *, alert_id: int, user: User, note: str, config: AlertingConfig) -> Alert:
    """Afslut an alert by hand, with the clinician's note (an already resolved one is refused)."""
    return service.resolve(conn, alert_id=alert_id, by=clinician_name(user), note=note.strip(), config=config)


def snooze(
    conn: psycopg.Connection, *, alert_id: int, user: User, until: datetime, reason: str, config: AlertingConfig
) -> Alert:
    """Udsæt an alert until ``until`` with a reason (a past expiry or an empty reason is refused)."""
    return service.snooze(
        conn, alert_id=alert_id, until=until, reason=reason.strip(), by=clinician_name(user), config=config
    )
