"""The alert lifecycle in the database: open, update, worsen, resolve, acknowledge, escalate.

Every change writes an ``alert_transitions`` row and, in the same transaction, its rows in the
notification log plus a ``pg_notify`` for the live worklist, so what the nurse sees, what was
sent and what happened can never disagree after a crash.

Identity is (patient, rule): a partial unique index keeps at most one unresolved alert per pair,
and callers hold a per-patient advisory lock while they decide (several ingest workers may
process the same patient's readings).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from alert_rules.evaluate import Finding
from alert_rules.model import SEVERITY_RANK
from alert_rules.routing import Decision, inhibited_by, normalise_municipality, route
from backend.alerting.config import AlertingConfig, NotifierSettings
from backend.alerting.errors import AlertNotFound
from backend.alerting.models import Alert, AlertTransition

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "nearcare_alerts"
PATIENT_LOCK_CLASS = 0x0A1E
NOTIFY_ACTIONS = frozenset({"opened", "worsened", "escalated", "sla_breached"})
EVENT_TYPES = {
    "opened": "alert.opened",
    "updated": "alert.updated",
    "worsened": "alert.updated",
    "snoozed": "alert.updated",
    "rerouted": "alert.updated",
    "acknowledged": "alert.acknowledged",
    "resolved": "alert.resolved",
    "escalated": "alert.escalated",
    "sla_breached": "alert.escalated",
}
KEEP_READING_IDS = 20


@dataclass(frozen=True, slots=True)
class PatientInfo:
    id: int
    name: str
    external_ref: str
    programme: str
    municipality: str
    department: str | None


def load_patients(conn: psycopg.Connection[Any], ids: Iterable[int]) -> dict[int, PatientInfo]:
    return patients_from_rows(query_patients(conn, ids).fetchall())


def query_patients(conn: psycopg.Connection[Any], ids: Iterable[int]) -> psycopg.Cursor[Any]:
    return conn.execute(
        "SELECT id, name, external_ref, programme, municipality, department FROM patients WHERE id = ANY(%s)",
        (list(ids),),
    )


def patients_from_rows(rows: Sequence[Any]) -> dict[int, PatientInfo]:
    return {int(r[0]): PatientInfo(int(r[0]), r[1], r[2], r[3], r[4], r[5]) for r in rows}


def lock_patients(conn: psycopg.Connection[Any], ids: Iterable[int]) -> None:
    """Serialise alert decisions per patient across workers (sorted: no deadlocks)."""
    keys = sorted({pid % 2_147_483_647 for pid in ids})
    if keys:
        conn.execute("SELECT count(pg_advisory_xact_lock(%s, k)) FROM (SELECT unnest(%s::int[]) AS k ORDER BY 1) s",
                     (PATIENT_LOCK_CLASS, keys))


class TeamDirectory:
    """The teams table, cached briefly: routing resolves ``@municipal`` and checks keys here."""

    def __init__(self, ttl_s: float = 30.0) -> None:
        self._ttl = ttl_s
        self._at = 0.0
        self._names: dict[str, str] = {}
        self._municipal: dict[str, str] = {}
        self._lock = threading.Lock()

    def refresh(self, conn: psycopg.Connection[Any], *, force: bool = False) -> None:
        with self._lock:
            if not force and time.monotonic() - self._at < self._ttl and self._names:
                return
        rows = conn.execute("SELECT key, name, sector, municipality FROM teams ORDER BY id").fetchall()
        names = {r[0]: r[1] for r in rows}
        municipal: dict[str, str] = {}
        for key, _name, sector, municipality in rows:
            if sector == "municipal" and municipality:
                municipal.setdefault(normalise_municipality(municipality), key)
        with self._lock:
            self._names, self._municipal, self._at = names, municipal, time.monotonic()

    def name(self, key: str) -> str:
        return self._names.get(key, key)

    def exists(self, key: str) -> bool:
        return key in self._names

    @property
    def municipal(self) -> Mapping[str, str]:
        return self._municipal


class AlertIds:
    """Alert ids fetched from the sequence in blocks, so opening an alert needs no round trip."""

    def __init__(self, block: int = 200) -> None:
        self._block = block
        self._free: list[int] = []
        self._lock = threading.Lock()  # the queue worker and the scheduled jobs share one engine

    def take(self, conn: psycopg.Connection[Any]) -> int:
        with self._lock:
            if not self._free:
                rows = conn.execute("SELECT nextval('alerts_id_seq') FROM generate_series(1, %s)",
                                    (self._block,)).fetchall()
                self._free = [int(r[0]) for r in reversed(rows)]
            return self._free.pop()


def labels_for(patient: PatientInfo, *, rule_id: str, rule_kind: str, severity: str,
               measurement: str | None) -> dict[str, str]:
    labels = {
        "patient": str(patient.id),
        "programme": patient.programme,
        "severity": severity,
        "kind": rule_kind,
        "rule": rule_id,
        "municipality": patient.municipality,
    }
    if measurement:
        labels["measurement"] = measurement
    if patient.department:
        labels["department"] = patient.department
    return labels


def decide(config: AlertingConfig, teams: TeamDirectory, labels: Mapping[str, str], at: datetime) -> Decision:
    d = route(config.routing, labels, at=at, municipal_lookup=teams.municipal)
    team = d.team
    if teams._names and not teams.exists(team):
        log.error("routing chose unknown team %r for %s; using fallback %r", team, labels.get("rule"),
                  config.routing.fallback_team)
        team = config.routing.fallback_team
    chain = tuple(t for t in d.escalate_to if not teams._names or teams.exists(t))
    return Decision(team=team, receiver=d.receiver, escalate_to=chain, sla=d.sla, route_path=d.route_path,
                    holiday=d.holiday)


_ALERT_COLS = (
    "id, patient_id, rule_id, rule_kind, measurement, severity, state, title, opened_at, updated_at, last_value,"
    " last_reading_id, reading_ids, breach_count, thresholds, detail, team_key, owner_since, escalation_level,"
    " escalation_due_at, escalate_to, acknowledged_by, acknowledged_at, ack_note, resolved_by, resolved_at,"
    " resolve_note, snoozed_until, snooze_reason, inhibited_by"
)


def alert_from_row(r: Mapping[str, Any]) -> Alert:
    return Alert(
        id=r["id"], patient_id=r["patient_id"], rule_id=r["rule_id"], rule_kind=r["rule_kind"],
        measurement=r["measurement"], severity=r["severity"], state=r["state"], title=r["title"],
        opened_at=r["opened_at"], updated_at=r["updated_at"], last_value=r["last_value"],
        last_reading_id=r["last_reading_id"], reading_ids=tuple(r["reading_ids"] or ()),
        breach_count=r["breach_count"], thresholds=r["thresholds"] or {}, detail=r["detail"] or {},
        team_key=r["team_key"], owner_since=r["owner_since"], escalation_level=r["escalation_level"],
        escalation_due_at=r["escalation_due_at"], escalate_to=tuple(r["escalate_to"] or ()),
        acknowledged_by=r["acknowledged_by"], acknowledged_at=r["acknowledged_at"], ack_note=r["ack_note"],
        resolved_by=r["resolved_by"], resolved_at=r["resolved_at"], resolve_note=r["resolve_note"],
        snoozed_until=r["snoozed_until"], snooze_reason=r["snooze_reason"], inhibited_by=r["inhibited_by"],
    )


def get_alert(conn: psycopg.Connection[Any], alert_id: int, *, for_update: bool = False) -> Alert:
    sql = f"SELECT {_ALERT_COLS} FROM alerts WHERE id = %s" + (" FOR UPDATE" if for_update else "")
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(sql, (alert_id,)).fetchone()
    if row is None:
        raise AlertNotFound(alert_id)
    return alert_from_row(row)


def active_alerts(conn: psycopg.Connection[Any], patient_ids: Sequence[int]) -> dict[tuple[int, str], Alert]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"SELECT {_ALERT_COLS} FROM alerts WHERE patient_id = ANY(%s) AND state <> 'resolved'",
            (list(patient_ids),),
        ).fetchall()
    return {(r["patient_id"], r["rule_id"]): alert_from_row(r) for r in rows}


def query_active_alerts(conn: psycopg.Connection[Any], patient_ids: Sequence[int]) -> psycopg.Cursor[Any]:
    """For :func:`active_alerts_from_rows` (fetch later: pipeline mode)."""
    return conn.cursor(row_factory=dict_row).execute(
        f"SELECT {_ALERT_COLS}, in_range_count FROM alerts WHERE patient_id = ANY(%s) AND state <> 'resolved'",
        (list(patient_ids),),
    )


def active_alerts_from_rows(
    rows: Sequence[Mapping[str, Any]],
) -> tuple[dict[tuple[int, str], Alert], dict[int, int]]:
    """The unresolved alerts of these patients, and each one's count of readings back in range."""
    return ({(r["patient_id"], r["rule_id"]): alert_from_row(r) for r in rows},
            {int(r["id"]): int(r["in_range_count"]) for r in rows})


def transition_from_row(r: Mapping[str, Any]) -> AlertTransition:
    return AlertTransition(
        id=r["id"], alert_id=r["alert_id"], at=r["at"], action=r["action"], actor=r["actor"], note=r["note"],
        from_state=r["from_state"], to_state=r["to_state"], from_team=r["from_team"], team_key=r["team_key"],
        severity=r["severity"], value=r["value"], rule_id=r.get("rule_id", ""),
    )


def record(
    conn: psycopg.Connection[Any],
    alert: Alert,
    *,
    action: str,
    actor: str,
    at: datetime,
    note: str | None = None,
    from_state: str | None = None,
    from_team: str | None = None,
    config: AlertingConfig | None = None,
    notifier: NotifierSettings | None = None,
    patient: PatientInfo | None = None,
) -> int | None:
    """Write one transition, its notification-log rows and the live-worklist notify."""
    notify_others = notifier is not None and action in NOTIFY_ACTIONS and alert.inhibited_by is None and (
        bool(notifier.webhook_url) or bool(notifier.smtp_host))
    if not notify_others:
        _record_event_only(conn, alert, action=action, actor=actor, at=at, note=note, from_state=from_state,
                           from_team=from_team)
        return None
    tid = conn.execute(
        "INSERT INTO alert_transitions (alert_id, at, action, actor, note, from_state, to_state, from_team,"
        " team_key, severity, value) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) RETURNING id",
        (alert.id, at, action, actor, note, from_state, alert.state, from_team, alert.team_key,
         alert.severity, alert.last_value),
    ).fetchone()[0]  # type: ignore[index]
    event = _event(alert, action=action, at=at, from_team=from_team, tid=tid)
    rows: list[tuple[str, str, dict[str, Any], str]] = [("events", "worklist", event, "sent")]
    if notifier is not None and action in NOTIFY_ACTIONS and alert.inhibited_by is None:
        payload = notification_payload(alert, action=action, at=at, from_team=from_team, patient=patient,
                                       notifier=notifier, transition_id=tid)
        if notifier.webhook_url:
            rows.append(("webhook", notifier.webhook_url, payload, "pending"))
        if notifier.smtp_host and config is not None:
            contact = config.routing.team_contacts.get(alert.team_key)
            for address in contact.email if contact else ():
                rows.append(("email", address, payload, "pending"))
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO notification_log (transition_id, alert_id, channel, target, payload, status, sent_at)"
            " VALUES (%s,%s,%s,%s,%s,%s, CASE WHEN %s = 'sent' THEN now() END)"
            " ON CONFLICT (transition_id, channel, target) DO NOTHING",
            [(tid, alert.id, ch, target, Jsonb(p), st, st) for ch, target, p, st in rows],
        )
    conn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, json.dumps(event, default=str)))
    return int(tid)


def _event(alert: Alert, *, action: str, at: datetime, from_team: str | None, tid: int | None) -> dict[str, Any]:
    return {
        "type": EVENT_TYPES.get(action, "alert.updated"),
        "data": {
            "alert_id": alert.id, "patient_id": alert.patient_id, "rule_id": alert.rule_id,
            "severity": alert.severity, "state": alert.state, "team_key": alert.team_key,
            "from_team": from_team, "action": action, "transition_id": tid, "at": at.isoformat(),
            "measurement_id": str(alert.last_reading_id) if alert.last_reading_id else None,
            "muted": alert.inhibited_by is not None,
        },
    }


def _record_event_only(conn: psycopg.Connection[Any], alert: Alert, *, action: str, actor: str, at: datetime,
                       note: str | None, from_state: str | None, from_team: str | None) -> None:
    """The common case in one statement, with no result to wait for (pipelines well): the
    transition, its events log row and the notify."""
    event = _event(alert, action=action, at=at, from_team=from_team, tid=None)
    conn.execute(
        "WITH t AS (INSERT INTO alert_transitions (alert_id, at, action, actor, note, from_state, to_state, from_team,"
        "  team_key, severity, value) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) RETURNING id),"
        " e AS (SELECT t.id, jsonb_set(%s::jsonb, '{data,transition_id}', to_jsonb(t.id)) AS ev FROM t),"
        " n AS (INSERT INTO notification_log (transition_id, alert_id, channel, target, payload, status, sent_at)"
        "  SELECT e.id, %s, 'events', 'worklist', e.ev, 'sent', now() FROM e)"
        " SELECT e.id, pg_notify(%s, e.ev::text) FROM e",
        (alert.id, at, action, actor, note, from_state, alert.state, from_team, alert.team_key, alert.severity,
         alert.last_value, Jsonb(event), alert.id, NOTIFY_CHANNEL),
    )


def notification_payload(
    alert: Alert, *, action: str, at: datetime, from_team: str | None, patient: PatientInfo | None,
    notifier: NotifierSettings, transition_id: int,
) -> dict[str, Any]:
    # No names or values leave the system in a notification: the reader follows the link and
    # logs in, so the read is audited (Sundhedsloven § 42 a).
    return {
        "version": 1,
        "event": action,
        "transition_id": transition_id,
        "alert_id": alert.id,
        "patient_id": alert.patient_id,
        "patient_ref": patient.external_ref if patient else None,
        "rule_id": alert.rule_id,
        "title": alert.title,
        "severity": alert.severity,
        "state": alert.state,
        "team_key": alert.team_key,
        "from_team": from_team,
        "at": at.isoformat(),
        "url": f"{notifier.web_base_url.rstrip('/')}/worklist?alert={alert.id}",
    }


def _update(conn: psycopg.Connection[Any], alert_id: int, **fields: Any) -> Alert:
    cols = ", ".join(f"{k} = %s" for k in fields)
    vals = [Jsonb(v) if isinstance(v, dict) else v for v in fields.values()]
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"UPDATE alerts SET {cols} WHERE id = %s RETURNING {_ALERT_COLS}",
            (*vals, alert_id),
        ).fetchone()
    assert row is not None
    return alert_from_row(row)


def _snoozed(alert: Alert, now: datetime) -> bool:
    return alert.snoozed_until is not None and alert.snoozed_until > now


def apply_breach(
    conn: psycopg.Connection[Any],
    *,
    patient: PatientInfo,
    finding: Finding,
    reading_id: uuid.UUID | None,
    now: datetime,
    active: Alert | None,
    config: AlertingConfig,
    teams: TeamDirectory,
    notifier: NotifierSettings | None,
    detail: Mapping[str, Any] | None = None,
    others: bool = True,
    ids: AlertIds | None = None,
) -> tuple[Alert, bool]:
    """Open the (patient, rule) alert, or update the open one. Returns (alert, changed_severity).

    ``others=False`` tells that the patient has no other unresolved alert (nothing to inhibit)."""
    assert finding.severity is not None
    detail = dict(detail if detail is not None else finding.detail)
    thresholds = {k: v for k, v in finding.thresholds.items()}
    if active is None and ids is not None:
        labels = labels_for(patient, rule_id=finding.rule_id, rule_kind=finding.rule_kind,
                            severity=finding.severity, measurement=finding.measurement)
        d = decide(config, teams, labels, now)
        # The id is known in advance, so nothing here waits for the database (pipeline mode).
        new_id = ids.take(conn)
        reading_ids = [reading_id] if reading_id else []
        conn.execute(
            "INSERT INTO alerts (id, patient_id, rule_id, rule_kind, measurement, severity, state, title,"
            " opened_at, updated_at, last_value, last_reading_id, reading_ids, thresholds, detail, labels,"
            " team_key, owner_since, escalate_to, escalation_due_at)"
            " VALUES (%s,%s,%s,%s,%s,%s,'open',%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
            (new_id, patient.id, finding.rule_id, finding.rule_kind, finding.measurement, finding.severity,
             finding.title, now, now, finding.value, reading_id, reading_ids, Jsonb(thresholds), Jsonb(detail),
             Jsonb(labels), d.team, now, list(d.escalate_to), now + d.sla),
        )
        alert = Alert(
            id=new_id, patient_id=patient.id, rule_id=finding.rule_id, rule_kind=finding.rule_kind,
            measurement=finding.measurement, severity=finding.severity, state="open", title=finding.title,
            opened_at=now, updated_at=now, last_value=finding.value, last_reading_id=reading_id,
            reading_ids=tuple(reading_ids), breach_count=1, thresholds=thresholds, detail=detail, team_key=d.team,
            owner_since=now, escalation_level=0, escalation_due_at=now + d.sla, escalate_to=tuple(d.escalate_to),
            acknowledged_by=None, acknowledged_at=None, ack_note=None, resolved_by=None, resolved_at=None,
            resolve_note=None, snoozed_until=None, snooze_reason=None, inhibited_by=None,
        )
        if others:
            alert = refresh_inhibition(conn, patient_id=patient.id, config=config, now=now, focus=alert)
        record(conn, alert, action="opened", actor="system", at=now, note=" › ".join(d.route_path),
               config=config, notifier=notifier, patient=patient)
        return alert, True
    if active is None:
        labels = labels_for(patient, rule_id=finding.rule_id, rule_kind=finding.rule_kind,
                            severity=finding.severity, measurement=finding.measurement)
        d = decide(config, teams, labels, now)
        with conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                "INSERT INTO alerts (patient_id, rule_id, rule_kind, measurement, severity, state, title,"
                " opened_at, updated_at, last_value, last_reading_id, reading_ids, thresholds, detail, labels,"
                " team_key, owner_since, escalate_to, escalation_due_at)"
                " VALUES (%s,%s,%s,%s,%s,'open',%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
                f" RETURNING {_ALERT_COLS}",
                (patient.id, finding.rule_id, finding.rule_kind, finding.measurement, finding.severity,
                 finding.title, now, now, finding.value, reading_id, [reading_id] if reading_id else [],
                 Jsonb(thresholds), Jsonb(detail), Jsonb(labels), d.team, now, list(d.escalate_to),
                 now + d.sla),
            ).fetchone()
        assert row is not None
        alert = alert_from_row(row)
        if others:
            alert = refresh_inhibition(conn, patient_id=patient.id, config=config, now=now, focus=alert)
        record(conn, alert, action="opened", actor="system", at=now, note=" › ".join(d.route_path),
               config=config, notifier=notifier, patient=patient)
        return alert, True

    kept = [*(i for i in active.reading_ids if i != reading_id), *([reading_id] if reading_id else [])]
    worse = SEVERITY_RANK[finding.severity] < SEVERITY_RANK[active.severity]
    fields: dict[str, Any] = {
        "updated_at": now,
        "last_value": finding.value,
        "last_reading_id": reading_id or active.last_reading_id,
        "reading_ids": kept[-KEEP_READING_IDS:],
        "breach_count": active.breach_count + 1,
        "in_range_count": 0,
        "thresholds": thresholds,
        "detail": detail,
    }
    if not worse:
        # No result needed from the database: both statements can share one pipeline sync.
        cols = ", ".join(f"{k} = %s" for k in fields)
        conn.execute(f"UPDATE alerts SET {cols} WHERE id = %s",
                     (*[Jsonb(v) if isinstance(v, dict) else v for v in fields.values()], active.id))
        alert = dataclasses.replace(
            active, updated_at=now, last_value=finding.value, last_reading_id=fields["last_reading_id"],
            reading_ids=tuple(fields["reading_ids"]), breach_count=active.breach_count + 1,
            thresholds=thresholds, detail=detail,
        )
        record(conn, alert, action="updated", actor="system", at=now, from_state=active.state,
               config=config, notifier=notifier, patient=patient)
        return alert, False
    # Worse than before: it needs fresh eyes, so a kvittering no longer covers it; route it again.
    labels = labels_for(patient, rule_id=finding.rule_id, rule_kind=finding.rule_kind,
                        severity=finding.severity, measurement=finding.measurement)
    d = decide(config, teams, labels, now)
    fields.update(
        severity=finding.severity, state="open", labels=labels, team_key=d.team, escalate_to=list(d.escalate_to),
        escalation_level=0, escalation_due_at=now + d.sla,
        owner_since=now if d.team != active.team_key else active.owner_since,
    )
    alert = _update(conn, active.id, **fields)
    alert = refresh_inhibition(conn, patient_id=patient.id, config=config, now=now, focus=alert)
    note = f"{active.severity} → {finding.severity}; " + " › ".join(d.route_path)
    record(conn, alert, action="worsened", actor="system", at=now, note=note, from_state=active.state,
           from_team=active.team_key if d.team != active.team_key else None,
           config=config, notifier=notifier, patient=patient)
    return alert, True


def prepare_open(
    conn: psycopg.Connection[Any], *, patient: PatientInfo, finding: Finding, reading_id: uuid.UUID | None,
    now: datetime, config: AlertingConfig, teams: TeamDirectory, ids: AlertIds,
) -> tuple[Alert, dict[str, str], str]:
    """A new alert routed and numbered but not yet stored: for :func:`write_opened`, which
    stores a batch's new alerts together. Only for a patient with no other unresolved alert
    (nothing to inhibit) and no webhook or e-mail to send (those need the transition's id)."""
    assert finding.severity is not None
    labels = labels_for(patient, rule_id=finding.rule_id, rule_kind=finding.rule_kind,
                        severity=finding.severity, measurement=finding.measurement)
    d = decide(config, teams, labels, now)
    reading_ids = (reading_id,) if reading_id else ()
    alert = Alert(
        id=ids.take(conn), patient_id=patient.id, rule_id=finding.rule_id, rule_kind=finding.rule_kind,
        measurement=finding.measurement, severity=finding.severity, state="open", title=finding.title,
        opened_at=now, updated_at=now, last_value=finding.value, last_reading_id=reading_id,
        reading_ids=reading_ids, breach_count=1, thresholds=dict(finding.thresholds), detail=dict(finding.detail),
        team_key=d.team, owner_since=now, escalation_level=0, escalation_due_at=now + d.sla,
        escalate_to=tuple(d.escalate_to), acknowledged_by=None, acknowledged_at=None, ack_note=None,
        resolved_by=None, resolved_at=None, resolve_note=None, snoozed_until=None, snooze_reason=None,
        inhibited_by=None,
    )
    return alert, labels, " › ".join(d.route_path)


def write_opened(conn: psycopg.Connection[Any], opened: Sequence[tuple[Alert, dict[str, str], str]]) -> None:
    """Store alerts from :func:`prepare_open` with their "opened" transitions, events-log rows
    and live-worklist notifies: two statements for the whole batch, nothing to wait for."""
    if not opened:
        return
    rows = [{
        "id": a.id, "patient_id": a.patient_id, "rule_id": a.rule_id, "rule_kind": a.rule_kind,
        "measurement": a.measurement, "severity": a.severity, "title": a.title, "at": a.opened_at.isoformat(),
        "last_value": a.last_value, "last_reading_id": str(a.last_reading_id) if a.last_reading_id else None,
        "reading_ids": [str(i) for i in a.reading_ids], "thresholds": a.thresholds, "detail": a.detail,
        "labels": labels, "team_key": a.team_key, "escalate_to": list(a.escalate_to),
        "due": a.escalation_due_at.isoformat() if a.escalation_due_at else None, "note": note,
        "event": _event(a, action="opened", at=a.opened_at, from_team=None, tid=None),
    } for a, labels, note in opened]
    doc = json.dumps(rows, default=str)
    conn.execute(
        "INSERT INTO alerts (id, patient_id, rule_id, rule_kind, measurement, severity, state, title, opened_at,"
        " updated_at, last_value, last_reading_id, reading_ids, thresholds, detail, labels, team_key, owner_since,"
        " escalate_to, escalation_due_at)"
        " SELECT id, patient_id, rule_id, rule_kind, measurement, severity, 'open', title, at, at, last_value,"
        "  last_reading_id, reading_ids, thresholds, detail, labels, team_key, at, escalate_to, due"
        " FROM jsonb_to_recordset(%s::jsonb) AS x(id bigint, patient_id bigint, rule_id text, rule_kind text,"
        "  measurement text, severity text, title text, at timestamptz, last_value float8, last_reading_id uuid,"
        "  reading_ids uuid[], thresholds jsonb, detail jsonb, labels jsonb, team_key text, escalate_to text[],"
        "  due timestamptz)",
        (doc,),
    )
    conn.execute(
        "WITH x AS (SELECT * FROM jsonb_to_recordset(%s::jsonb) AS x(id bigint, at timestamptz, note text,"
        "  team_key text, severity text, last_value float8, event jsonb)),"
        " t AS (INSERT INTO alert_transitions (alert_id, at, action, actor, note, from_state, to_state, from_team,"
        "  team_key, severity, value) SELECT id, at, 'opened', 'system', note, NULL, 'open', NULL, team_key,"
        "  severity, last_value FROM x ORDER BY id RETURNING id, alert_id),"
        " e AS (SELECT t.id, t.alert_id, jsonb_set(x.event, '{data,transition_id}', to_jsonb(t.id)) AS ev"
        "  FROM t JOIN x ON x.id = t.alert_id),"
        " n AS (INSERT INTO notification_log (transition_id, alert_id, channel, target, payload, status, sent_at)"
        "  SELECT e.id, e.alert_id, 'events', 'worklist', e.ev, 'sent', now() FROM e)"
        " SELECT count(pg_notify(%s, e.ev::text)) FROM e",
        (doc, NOTIFY_CHANNEL),
    )


def repeat_breach(active: Alert, *, finding: Finding, reading_id: uuid.UUID | None, now: datetime) -> Alert | None:
    """A breach of an alert that is already open at this severity or worse: the alert as it
    stands after it, in memory, or ``None`` when the breach is worse (that needs
    :func:`apply_breach`: re-routing, a transition and notifications).

    A repeat breach changes nothing a clinician has to act on, so it writes no transition and
    no notification: the caller stores the alert's last value once per batch
    (:func:`write_repeats`) and the live worklist gets an ``alert.updated`` event."""
    assert finding.severity is not None
    if SEVERITY_RANK[finding.severity] < SEVERITY_RANK[active.severity]:
        return None
    # The engine decides each reading once (skipped if already evaluated), so it is never in the list yet.
    kept = (*active.reading_ids, reading_id) if reading_id else active.reading_ids
    return dataclasses.replace(
        active, updated_at=now, last_value=finding.value, last_reading_id=reading_id or active.last_reading_id,
        reading_ids=kept[-KEEP_READING_IDS:], breach_count=active.breach_count + 1,
        thresholds=dict(finding.thresholds), detail=dict(finding.detail),
    )


def write_repeats(conn: psycopg.Connection[Any], alerts: Sequence[Alert], in_range: Mapping[int, int], *,
                  now: datetime, notify: Sequence[int] = ()) -> None:
    """One UPDATE for the alerts a batch changed without a transition (repeat breaches and
    readings counted back in range), and one statement for their live-worklist events
    (``notify``: the ids of alerts whose last value changed). Nothing here waits for a result."""
    if not alerts:
        return
    # One JSON document rather than nine array parameters: json.dumps is far cheaper than
    # psycopg's per-element array quoting, and jsonb_to_recordset types the columns.
    rows = [{"id": a.id, "updated_at": a.updated_at.isoformat(), "last_value": a.last_value,
             "last_reading_id": str(a.last_reading_id) if a.last_reading_id else None,
             "reading_ids": [str(i) for i in a.reading_ids], "breach_count": a.breach_count,
             "in_range_count": in_range.get(a.id, 0), "thresholds": a.thresholds, "detail": a.detail}
            for a in alerts]
    conn.execute(
        "UPDATE alerts a SET updated_at = u.updated_at, last_value = u.last_value,"
        " last_reading_id = u.last_reading_id, reading_ids = u.reading_ids, breach_count = u.breach_count,"
        " in_range_count = u.in_range_count, thresholds = u.thresholds, detail = u.detail"
        " FROM jsonb_to_recordset(%s::jsonb) AS u(id bigint, updated_at timestamptz, last_value float8,"
        "  last_reading_id uuid, reading_ids uuid[], breach_count int, in_range_count int, thresholds jsonb,"
        "  detail jsonb) WHERE a.id = u.id",
        (json.dumps(rows, default=str),),
    )
    wanted = set(notify)
    events = [_event(a, action="updated", at=now, from_team=None, tid=None) for a in alerts if a.id in wanted]
    if events:
        conn.execute("SELECT count(pg_notify(%s, e::text)) FROM jsonb_array_elements(%s::jsonb) e",
                     (NOTIFY_CHANNEL, json.dumps(events, default=str)))


def apply_in_range(
    conn: psycopg.Connection[Any],
    *,
    active: Alert,
    resolve_after: int,
    now: datetime,
    config: AlertingConfig,
    reading_id: uuid.UUID | None = None,
    in_range_count: int | None = None,
) -> Alert | None:
    """Count a reading back in range; resolve automatically after ``resolve_after`` of them."""
    if resolve_after <= 0:
        return None
    row = conn.execute(
        "UPDATE alerts SET in_range_count = in_range_count + 1 WHERE id = %s RETURNING in_range_count",
        (active.id,),
    ).fetchone()
    count = int(row[0]) if row else 0
    if count < resolve_after:
        return None
    return resolve_alert(conn, alert=active, by="system", note=f"{count} målinger tilbage inden for grænserne",
                         now=now, config=config)


def resolve_alert(conn: psycopg.Connection[Any], *, alert: Alert, by: str, note: str, now: datetime,
                  config: AlertingConfig | None) -> Alert:
    updated = _update(conn, alert.id, state="resolved", resolved_by=by, resolved_at=now, resolve_note=note,
                      updated_at=now, escalation_due_at=None, inhibited_by=None)
    record(conn, updated, action="resolved", actor=by, at=now, note=note, from_state=alert.state)
    if config is not None:
        refresh_inhibition(conn, patient_id=alert.patient_id, config=config, now=now)
    return updated


def refresh_inhibition(conn: psycopg.Connection[Any], *, patient_id: int, config: AlertingConfig,
                       now: datetime, focus: Alert | None = None) -> Alert:
    """Recompute which of the patient's active alerts are muted; return ``focus`` as stored now."""
    if not config.routing.inhibit_rules:
        return focus  # type: ignore[return-value]
    rows = conn.execute(
        "SELECT id, labels, inhibited_by, severity FROM alerts WHERE patient_id = %s AND state <> 'resolved'",
        (patient_id,),
    ).fetchall()
    actives = [(int(r[0]), {**(r[1] or {}), "severity": r[3]}) for r in rows]
    result = focus
    sla = config.routing.sla_minutes
    for (aid, labels), (_, _, current, severity) in zip(actives, rows, strict=True):
        by = inhibited_by(config.routing, labels, [(i, lb) for i, lb in actives if i != aid])
        if by != current:
            if by is None:  # un-muted: its SLA starts now, it was not anyone's to answer before
                conn.execute(
                    "UPDATE alerts SET inhibited_by = NULL, escalation_due_at = CASE WHEN state = 'open'"
                    " THEN %s ELSE escalation_due_at END WHERE id = %s",
                    (now + timedelta(minutes=sla[severity]), aid),
                )
            else:
                conn.execute("UPDATE alerts SET inhibited_by = %s WHERE id = %s", (by, aid))
            if focus is not None and aid == focus.id:
                result = get_alert(conn, aid)
    return result  # type: ignore[return-value]


def escalate_due(
    conn: psycopg.Connection[Any], *, now: datetime, config: AlertingConfig, teams: TeamDirectory,
    notifier: NotifierSettings | None, limit: int = 500,
) -> list[Alert]:
    """Hand every open alert past its SLA to the next team, once. Safe to run anywhere, any time:
    the due time lives in the row and moves forward in the same transaction as the handover."""
    out: list[Alert] = []
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"SELECT {_ALERT_COLS} FROM alerts WHERE state = 'open' AND escalation_due_at <= %s"
            " AND inhibited_by IS NULL AND (snoozed_until IS NULL OR snoozed_until <= %s)"
            " ORDER BY escalation_due_at LIMIT %s FOR UPDATE SKIP LOCKED",
            (now, now, limit),
        ).fetchall()
        for r in rows:
            alert = alert_from_row(r)
            sla = timedelta(minutes=config.routing.sla_minutes[alert.severity])  # type: ignore[index]
            patient = load_patients(conn, [alert.patient_id]).get(alert.patient_id)
            if alert.escalate_to:
                nxt, rest = alert.escalate_to[0], list(alert.escalate_to[1:])
                updated = _update(conn, alert.id, team_key=nxt, owner_since=now, escalate_to=rest,
                                  escalation_level=alert.escalation_level + 1, escalation_due_at=now + sla,
                                  updated_at=now)
                late = now - (alert.escalation_due_at or now)
                record(conn, updated, action="escalated", actor="system", at=now, from_state=alert.state,
                       from_team=alert.team_key, config=config, notifier=notifier, patient=patient,
                       note=f"ingen kvittering fra {teams.name(alert.team_key)} inden for SLA"
                            + (f" (afviklet {int(late.total_seconds() // 60)} min. for sent)" if late > sla else ""))
            else:
                # Nobody further up: the owner keeps it, is reminded once, and it stays visible.
                updated = _update(conn, alert.id, escalation_due_at=None, updated_at=now)
                record(conn, updated, action="sla_breached", actor="system", at=now, from_state=alert.state,
                       config=config, notifier=notifier, patient=patient,
                       note="SLA overskredet; ingen videre eskalering")
            out.append(updated)
    return out
