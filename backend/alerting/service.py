"""Service functions the web app and the API call (keyword-only, a connection first).

Each function runs in its own transaction (a savepoint when the caller already has one).
Events for the live worklist are sent with ``pg_notify`` and so arrive only if the change commits.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from alert_rules.lifecycle import Acknowledge, Resolve, Router, Snooze
from alert_rules.model import SEVERITY_RANK
from backend import outbox
from backend.alerting import lifecycle
from backend.alerting.config import AlertingConfig
from backend.alerting.errors import InvalidTransition
from backend.alerting.models import Alert, AlertTransition, WorklistAlert, WorklistEntry
from vitals.wire import Receipt, ReceiptStatus, Topics

log = logging.getLogger(__name__)


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


def acknowledge(
    conn: psycopg.Connection[Any], *, alert_id: int, by: str, note: str, topics: Topics,
    now: datetime | None = None,
) -> Alert:
    """Kvittering: who, when, note. Stops escalation; the alert stays on the worklist until resolved.

    In the same transaction, a "seen" receipt for the readings behind the alert is queued for the
    citizen's tablet (:mod:`backend.outbox`): it leaves if and only if the kvittering commits."""
    at = _now(now)
    with conn.transaction():
        updated = lifecycle.act(conn, alert_id=alert_id, action=lambda _a: Acknowledge(by=by, note=note), now=at)
        agents = conn.execute(
            "SELECT agent_id, array_agg(id) FROM measurements WHERE id = ANY(%s) GROUP BY agent_id",
            (list(updated.reading_ids),),
        ).fetchall() if updated.reading_ids else []
        for agent_id, ids in agents:
            receipt = Receipt(agent_id=agent_id, status=ReceiptStatus.SEEN, ids=tuple(ids), at=at, by=by)
            outbox.enqueue(conn, topic=topics.receipts(agent_id), payload=receipt.to_json())
    return updated


def resolve(conn: psycopg.Connection[Any], *, alert_id: int, by: str, note: str, config: AlertingConfig,
            now: datetime | None = None) -> Alert:
    """Resolve by hand, with a note; the alerts it muted are un-muted at once."""
    return lifecycle.act(conn, alert_id=alert_id, action=lambda _a: Resolve(by=by, note=note), now=_now(now),
                         config=config)


MAX_SNOOZE = timedelta(days=7)
"""The longest a clinician may hold an alert back (issue 12: a snooze to year 9999 was a 500)."""


def snooze(conn: psycopg.Connection[Any], *, alert_id: int, until: datetime, reason: str, by: str,
           config: AlertingConfig, now: datetime | None = None) -> Alert:
    """Hold an alert back until ``until``, with a reason: no escalation while snoozed; its SLA
    starts again when the snooze ends."""
    at = _now(now)
    if until <= at:
        raise InvalidTransition("a snooze must end in the future")
    if until > at + MAX_SNOOZE:
        raise InvalidTransition(f"a snooze may last at most {MAX_SNOOZE.days} days")
    if not reason.strip():
        raise InvalidTransition("a snooze needs a reason")
    cfg = config

    def action(alert: Alert) -> Snooze:
        return Snooze(by=by, until=until, reason=reason, sla=Router(config=cfg.routing).sla(alert.severity))

    return lifecycle.act(conn, alert_id=alert_id, action=action, now=at)


def get_alert(conn: psycopg.Connection[Any], *, alert_id: int) -> Alert:
    return lifecycle.get_alert(conn, alert_id)


def alert_history(conn: psycopg.Connection[Any], *, patient_id: int | None = None,
                  alert_id: int | None = None) -> list[AlertTransition]:
    """Every transition of the patient's (or one alert's) alerts, oldest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT t.*, a.rule_id FROM alert_transitions t JOIN alerts a ON a.id = t.alert_id"
            " WHERE (%s::bigint IS NULL OR a.patient_id = %s) AND (%s::bigint IS NULL OR a.id = %s)"
            " ORDER BY t.at, t.id",
            (patient_id, patient_id, alert_id, alert_id),
        ).fetchall()
    return [lifecycle.transition_from_row(r) for r in rows]


def _entry_rank(alerts: Sequence[WorklistAlert]) -> int:
    pending = [a for a in alerts if a.state == "open" and a.muted_by is None]
    pool = pending or list(alerts)
    worst = min(SEVERITY_RANK[a.severity] for a in pool)
    return worst if pending else 10 + worst


def worklist(
    conn: psycopg.Connection[Any], *, team_keys: Sequence[str] | None = None,
    patient_ids: Sequence[int] | None = None, now: datetime | None = None,
) -> list[WorklistEntry]:
    """One entry per patient with unresolved alerts. Entries with unacknowledged alerts come
    first, by worst severity (red > yellow > blue > technical), then oldest; fully acknowledged
    entries follow in the same order. With ``team_keys``: patients with at least one alert owned
    by one of those teams (the entry shows all the patient's alerts)."""
    at = _now(now)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT a.*, p.name AS patient_name, p.external_ref, p.municipality, p.department, p.programme,"
            " t.name AS team_name FROM alerts a JOIN patients p ON p.id = a.patient_id"
            " LEFT JOIN teams t ON t.key = a.team_key"
            " WHERE a.state <> 'resolved' AND (%s::bigint[] IS NULL OR a.patient_id = ANY(%s))"
            " AND (%s::text[] IS NULL OR a.patient_id IN (SELECT patient_id FROM alerts"
            "      WHERE state <> 'resolved' AND team_key = ANY(%s)))",
            (list(patient_ids) if patient_ids is not None else None, list(patient_ids) if patient_ids else None,
             list(team_keys) if team_keys is not None else None, list(team_keys) if team_keys else None),
        ).fetchall()
    by_patient: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        by_patient.setdefault(r["patient_id"], []).append(r)
    entries: list[WorklistEntry] = []
    for pid, rs in by_patient.items():
        rs.sort(key=lambda r: (SEVERITY_RANK[r["severity"]], r["opened_at"]))
        alerts = tuple(
            WorklistAlert(
                id=r["id"], rule_id=r["rule_id"], kind=r["rule_kind"], measurement=r["measurement"],
                severity=r["severity"], state=r["state"], title=r["title"], opened_at=r["opened_at"],
                updated_at=r["updated_at"], last_value=r["last_value"], team_key=r["team_key"],
                escalation_level=r["escalation_level"], escalation_due_at=r["escalation_due_at"],
                acknowledged_by=r["acknowledged_by"], acknowledged_at=r["acknowledged_at"], ack_note=r["ack_note"],
                snoozed_until=r["snoozed_until"] if r["snoozed_until"] and r["snoozed_until"] > at else None,
                snooze_reason=r["snooze_reason"] if r["snoozed_until"] and r["snoozed_until"] > at else None,
                muted_by=r["inhibited_by"],
            )
            for r in rs
        )
        head = next((r for r in rs if r["state"] == "open" and r["inhibited_by"] is None), rs[0])
        counts = {s: sum(1 for a in alerts if a.severity == s) for s in ("red", "yellow", "blue", "technical")}
        counts.update(
            open=sum(1 for a in alerts if a.state == "open"),
            acknowledged=sum(1 for a in alerts if a.state == "acknowledged"),
            muted=sum(1 for a in alerts if a.muted_by is not None),
            snoozed=sum(1 for a in alerts if a.snoozed_until is not None),
        )
        entries.append(WorklistEntry(
            patient_id=pid, patient_name=head["patient_name"], patient_ref=head["external_ref"],
            municipality=head["municipality"], department=head["department"], programme=head["programme"],
            team_key=head["team_key"], team_name=head["team_name"] or head["team_key"],
            worst_severity=min((a.severity for a in alerts), key=SEVERITY_RANK.__getitem__),
            oldest_opened_at=min(a.opened_at for a in alerts), alerts=alerts, counts=counts,
        ))
    entries.sort(key=lambda e: (_entry_rank(e.alerts), e.oldest_opened_at))
    return entries
