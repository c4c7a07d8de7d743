"""The I/O edge of the alert state machine: reads, locks, and the one batch writer.

What an alert does is decided by the pure machine in :mod:`alert_rules.lifecycle`
(``transition``, ``apply_action``, the inhibition and grouping stages). This module reads the
state it needs and persists the effects with :func:`write`: the alert rows, their
``alert_transitions`` rows with the notification-log rows, and the ``pg_notify`` for the live
worklist, in the caller's transaction, so what the nurse sees, what was sent and what happened
can never disagree after a crash. The engine, the scheduled checks and the clinicians' actions
all write through it.

Identity is (patient, rule): a partial unique index keeps at most one unresolved alert per pair,
and every writer holds the patient's advisory lock while it decides (several ingest workers,
the scheduler and the web may touch the same patient's alerts).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row

from alert_rules.lifecycle import (
    NOTIFY_ACTIONS,
    Action,
    ActionRefused,
    Effect,
    Escalate,
    Notify,
    PatientFinding,
    Record,
    Refresh,
    Router,
    Store,
    apply_action,
    group,
    run_batch,
    settle,
)
from alert_rules.lifecycle import Patient as PatientInfo
from alert_rules.routing import TeamContact, normalise_municipality
from backend.alerting.config import AlertingConfig, NotifierSettings
from backend.alerting.errors import AlertNotFound, InvalidTransition
from backend.alerting.models import Alert, AlertTransition
from backend.events import EVENTS_CHANNEL

NOTIFY_CHANNEL = EVENTS_CHANNEL
PATIENT_LOCK_CLASS = 0x0A1E
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

__all__ = ["NOTIFY_CHANNEL", "Alert", "AlertIds", "PatientInfo", "TeamDirectory", "act", "active_alerts",
           "decide_for_patient", "end_implicit_transaction", "escalate", "get_alert", "load_patients",
           "lock_patients", "write"]


def load_patients(conn: psycopg.Connection[Any], ids: Iterable[int]) -> dict[int, PatientInfo]:
    return patients_from_rows(query_patients(conn, ids).fetchall())


def query_patients(conn: psycopg.Connection[Any], ids: Iterable[int]) -> psycopg.Cursor[Any]:
    return conn.execute(
        "SELECT id, external_ref, programme, municipality, department FROM patients WHERE id = ANY(%s)",
        (list(ids),),
    )


def patients_from_rows(rows: Sequence[Any]) -> dict[int, PatientInfo]:
    return {int(r[0]): PatientInfo(id=int(r[0]), external_ref=r[1], programme=r[2], municipality=r[3],
                                   department=r[4]) for r in rows}


def lock_patients(conn: psycopg.Connection[Any], ids: Iterable[int]) -> None:
    """Serialise alert decisions per patient across workers (sorted: no deadlocks)."""
    keys = sorted({pid % 2_147_483_647 for pid in ids})
    if keys:
        conn.execute("SELECT count(pg_advisory_xact_lock(%s, k)) FROM (SELECT unnest(%s::int[]) AS k ORDER BY 1) s",
                     (PATIENT_LOCK_CLASS, keys))


def end_implicit_transaction(conn: psycopg.Connection[Any]) -> None:
    """Commit the read-only transaction a non-autocommit connection opened for the facts, so the
    per-patient ``conn.transaction()`` blocks that follow are short transactions of their own
    (not savepoints of one long one holding every patient's lock)."""
    if not conn.autocommit and conn.info.transaction_status == TransactionStatus.INTRANS:
        conn.commit()


class TeamDirectory:
    """The teams table, cached briefly: routing resolves ``@municipal`` and checks keys here."""

    def __init__(self, ttl_s: float = 30.0) -> None:
        self._ttl = ttl_s
        self._at = 0.0
        self._names: dict[str, str] = {}
        self._municipal: dict[str, str] = {}
        self._routers: dict[int, Router] = {}
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
            if names != self._names or municipal != self._municipal:
                self._routers = {}
            self._names, self._municipal, self._at = names, municipal, time.monotonic()

    def name(self, key: str) -> str:
        return self._names.get(key, key)

    def exists(self, key: str) -> bool:
        return key in self._names

    @property
    def municipal(self) -> Mapping[str, str]:
        return self._municipal

    def router(self, config: AlertingConfig) -> Router:
        """Routing as a value for the state machine: the route tree and this snapshot of the teams."""
        with self._lock:
            hit = self._routers.get(id(config.routing))
            if hit is None or hit.config is not config.routing:
                hit = self._routers[id(config.routing)] = Router(
                    config=config.routing, municipal=dict(self._municipal), teams=frozenset(self._names))
            return hit


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

    def iterator(self, conn: psycopg.Connection[Any]) -> Iterator[int]:
        """For :func:`alert_rules.lifecycle.transition`: taken only when an alert opens."""
        while True:
            yield self.take(conn)


_ALERT_COLS = (
    "id, patient_id, rule_id, rule_kind, measurement, severity, state, title, opened_at, updated_at, last_value,"
    " last_reading_id, reading_ids, breach_count, thresholds, detail, team_key, owner_since, escalation_level,"
    " escalation_due_at, escalate_to, acknowledged_by, acknowledged_at, ack_note, resolved_by, resolved_at,"
    " resolve_note, snoozed_until, snooze_reason, inhibited_by, in_range_count"
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
        in_range_count=r.get("in_range_count") or 0,
    )


def get_alert(conn: psycopg.Connection[Any], alert_id: int, *, for_update: bool = False) -> Alert:
    sql = f"SELECT {_ALERT_COLS} FROM alerts WHERE id = %s" + (" FOR UPDATE" if for_update else "")
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(sql, (alert_id,)).fetchone()
    if row is None:
        raise AlertNotFound(alert_id)
    return alert_from_row(row)


def active_alerts(conn: psycopg.Connection[Any], patient_ids: Sequence[int]) -> dict[tuple[int, str], Alert]:
    return active_alerts_from_rows(query_active_alerts(conn, patient_ids).fetchall())


def query_active_alerts(conn: psycopg.Connection[Any], patient_ids: Sequence[int]) -> psycopg.Cursor[Any]:
    """For :func:`active_alerts_from_rows` (fetch later: pipeline mode)."""
    return conn.cursor(row_factory=dict_row).execute(
        f"SELECT {_ALERT_COLS} FROM alerts WHERE patient_id = ANY(%s) AND state <> 'resolved'",
        (list(patient_ids),),
    )


def active_alerts_from_rows(rows: Sequence[Mapping[str, Any]]) -> dict[tuple[int, str], Alert]:
    """The unresolved alerts of these patients, by (patient, rule)."""
    return {(r["patient_id"], r["rule_id"]): alert_from_row(r) for r in rows}


def transition_from_row(r: Mapping[str, Any]) -> AlertTransition:
    return AlertTransition(
        id=r["id"], alert_id=r["alert_id"], at=r["at"], action=r["action"], actor=r["actor"], note=r["note"],
        from_state=r["from_state"], to_state=r["to_state"], from_team=r["from_team"], team_key=r["team_key"],
        severity=r["severity"], value=r["value"], rule_id=r.get("rule_id", ""),
    )


def _event(alert: Alert, *, action: str, at: datetime, from_team: str | None) -> dict[str, Any]:
    return {
        "type": EVENT_TYPES.get(action, "alert.updated"),
        "data": {
            "alert_id": alert.id, "patient_id": alert.patient_id, "rule_id": alert.rule_id,
            "severity": alert.severity, "state": alert.state, "team_key": alert.team_key,
            "from_team": from_team, "action": action, "transition_id": None, "at": at.isoformat(),
            "measurement_id": str(alert.last_reading_id) if alert.last_reading_id else None,
            "muted": alert.inhibited_by is not None,
        },
    }


def notification_payload(
    alert: Alert, *, action: str, at: datetime, from_team: str | None, patient: PatientInfo | None,
    notifier: NotifierSettings, transition_id: int | None,
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


def _row(a: Alert, labels: Mapping[str, str] | None) -> dict[str, Any]:
    return {
        "id": a.id, "patient_id": a.patient_id, "rule_id": a.rule_id, "rule_kind": a.rule_kind,
        "measurement": a.measurement, "severity": a.severity, "state": a.state, "title": a.title,
        "opened_at": a.opened_at.isoformat(), "updated_at": a.updated_at.isoformat(), "last_value": a.last_value,
        "last_reading_id": str(a.last_reading_id) if a.last_reading_id else None,
        "reading_ids": [str(i) for i in a.reading_ids], "breach_count": a.breach_count,
        "in_range_count": a.in_range_count, "thresholds": a.thresholds, "detail": a.detail, "labels": labels,
        "team_key": a.team_key, "owner_since": a.owner_since.isoformat(), "escalation_level": a.escalation_level,
        "escalation_due_at": a.escalation_due_at.isoformat() if a.escalation_due_at else None,
        "escalate_to": list(a.escalate_to), "acknowledged_by": a.acknowledged_by,
        "acknowledged_at": a.acknowledged_at.isoformat() if a.acknowledged_at else None, "ack_note": a.ack_note,
        "resolved_by": a.resolved_by, "resolved_at": a.resolved_at.isoformat() if a.resolved_at else None,
        "resolve_note": a.resolve_note,
        "snoozed_until": a.snoozed_until.isoformat() if a.snoozed_until else None,
        "snooze_reason": a.snooze_reason, "inhibited_by": a.inhibited_by,
    }


def _narrow_row(a: Alert) -> dict[str, Any]:
    return {"id": a.id, "updated_at": a.updated_at.isoformat(), "last_value": a.last_value,
            "last_reading_id": str(a.last_reading_id) if a.last_reading_id else None,
            "reading_ids": [str(i) for i in a.reading_ids], "breach_count": a.breach_count,
            "in_range_count": a.in_range_count, "thresholds": a.thresholds, "detail": a.detail}


# One JSON document rather than many array parameters: json.dumps is far cheaper than psycopg's
# per-element array quoting, and jsonb_to_recordset types the columns.
_NARROW_SQL = (
    "UPDATE alerts a SET updated_at = u.updated_at, last_value = u.last_value,"
    " last_reading_id = u.last_reading_id, reading_ids = u.reading_ids, breach_count = u.breach_count,"
    " in_range_count = u.in_range_count, thresholds = u.thresholds, detail = u.detail"
    " FROM jsonb_to_recordset(%s::jsonb) AS u(id bigint, updated_at timestamptz, last_value float8,"
    "  last_reading_id uuid, reading_ids uuid[], breach_count int, in_range_count int, thresholds jsonb,"
    "  detail jsonb) WHERE a.id = u.id"
)
_RECORDSET = (
    "jsonb_to_recordset(%s::jsonb) AS x(id bigint, patient_id bigint, rule_id text, rule_kind text,"
    " measurement text, severity text, state text, title text, opened_at timestamptz, updated_at timestamptz,"
    " last_value float8, last_reading_id uuid, reading_ids uuid[], breach_count int, in_range_count int,"
    " thresholds jsonb, detail jsonb, labels jsonb, team_key text, owner_since timestamptz, escalation_level int,"
    " escalation_due_at timestamptz, escalate_to text[], acknowledged_by text, acknowledged_at timestamptz,"
    " ack_note text, resolved_by text, resolved_at timestamptz, resolve_note text, snoozed_until timestamptz,"
    " snooze_reason text, inhibited_by bigint)"
)
_MUTABLE = ("severity", "state", "updated_at", "last_value", "last_reading_id", "reading_ids", "breach_count",
            "in_range_count", "thresholds", "detail", "team_key", "owner_since", "escalation_level",
            "escalation_due_at", "escalate_to", "acknowledged_by", "acknowledged_at", "ack_note", "resolved_by",
            "resolved_at", "resolve_note", "snoozed_until", "snooze_reason", "inhibited_by")
_UPDATE_SQL = (
    "UPDATE alerts a SET " + ", ".join(f"{c} = x.{c}" for c in _MUTABLE) + ", labels = coalesce(x.labels, a.labels)"
    " FROM " + _RECORDSET + " WHERE a.id = x.id"
)
_INSERT_SQL = (
    "INSERT INTO alerts (id, patient_id, rule_id, rule_kind, measurement, title, opened_at, labels, "
    + ", ".join(_MUTABLE) + ") SELECT id, patient_id, rule_id, rule_kind, measurement, title, opened_at,"
    " coalesce(labels, '{}'), " + ", ".join(_MUTABLE) + " FROM " + _RECORDSET
)
# Transition ids are taken in the batch's order, so the history (ordered by time, then id) keeps
# the order of transitions that share a time; each transition's events-log row, notification
# rows (their payload gets the id) and live notify go in the same statement.
_RECORD_SQL = (
    "WITH x AS (SELECT nextval('alert_transitions_id_seq') AS tid, s.* FROM (SELECT * FROM"
    "  jsonb_to_recordset(%s::jsonb) AS r(n int, alert_id bigint, at timestamptz, action text, actor text,"
    "  note text, from_state text, to_state text, from_team text, team_key text, severity text, value float8,"
    "  event jsonb, sends jsonb) ORDER BY n) s),"
    " t AS (INSERT INTO alert_transitions (id, alert_id, at, action, actor, note, from_state, to_state, from_team,"
    "  team_key, severity, value) SELECT tid, alert_id, at, action, actor, note, from_state, to_state, from_team,"
    "  team_key, severity, value FROM x),"
    " e AS (SELECT n, tid, alert_id, jsonb_set(event, '{data,transition_id}', to_jsonb(tid)) AS ev FROM x),"
    " l AS (INSERT INTO notification_log (transition_id, alert_id, channel, target, payload, status, sent_at)"
    "  SELECT tid, alert_id, 'events', 'worklist', ev, 'sent', now() FROM e"
    "  UNION ALL SELECT x.tid, x.alert_id, s.channel, s.target, jsonb_set(s.payload, '{transition_id}',"
    "   to_jsonb(x.tid)), 'pending', NULL FROM x, jsonb_to_recordset(x.sends) AS s(channel text, target text,"
    "   payload jsonb))"
    " SELECT count(pg_notify(%s, o.ev::text)) FROM (SELECT ev FROM e ORDER BY n) o"
)


def write(
    conn: psycopg.Connection[Any],
    effects: Sequence[Effect],
    *,
    notifier: NotifierSettings | None = None,
    contacts: Mapping[str, TeamContact] | None = None,
    patients: Mapping[int, PatientInfo] | None = None,
) -> None:
    """Persist a batch's effects (grouped: :func:`alert_rules.lifecycle.group`) in at most five
    statements, none of which waits for a result (pipelines well): the alerts changed in their
    breach columns only, the others changed, the new ones, the transitions with their
    notification-log rows and notifies, and the live-worklist refreshes. Run it in the
    transaction that holds the patients' locks."""
    if not effects:
        return
    stored: dict[int, Store] = {}
    for e in effects:
        if type(e) is Store:
            prev = stored.get(e.alert.id)
            stored[e.alert.id] = e if prev is None else Store(
                e.alert, new=prev.new or e.new, labels=e.labels if e.labels is not None else prev.labels,
                narrow=prev.narrow and e.narrow)
    if stored:
        narrow = [_narrow_row(s.alert) for s in stored.values() if s.narrow and not s.new]
        full = [_row(s.alert, s.labels) for s in stored.values() if not s.narrow and not s.new]
        fresh = [_row(s.alert, s.labels) for s in stored.values() if s.new]
        # Changes first: a (patient, rule) resolved and opened again in one batch leaves the
        # partial unique index before its successor enters it.
        if narrow:
            conn.execute(_NARROW_SQL, (json.dumps(narrow, default=str),))
        if full:
            conn.execute(_UPDATE_SQL, (json.dumps(full, default=str),))
        if fresh:
            conn.execute(_INSERT_SQL, (json.dumps(fresh, default=str),))
    others = notifier is not None and bool(notifier.webhook_url or notifier.smtp_host)
    notified = {(e.record.alert.id, e.record.action, e.record.at) for e in effects if isinstance(e, Notify)} \
        if others else set()
    records: list[dict[str, Any]] = []
    refresh: list[dict[str, Any]] = []
    for e in effects:
        if isinstance(e, Record):
            a = e.alert
            sends: list[dict[str, Any]] = []
            if notified and (a.id, e.action, e.at) in notified and e.action in NOTIFY_ACTIONS:
                assert notifier is not None
                sends = _sends(conn, e, notifier=notifier, contacts=contacts or {}, patients=patients)
            records.append({
                "n": len(records), "alert_id": a.id, "at": e.at.isoformat(), "action": e.action, "actor": e.actor,
                "note": e.note, "from_state": e.from_state, "to_state": a.state, "from_team": e.from_team,
                "team_key": a.team_key, "severity": a.severity, "value": a.last_value,
                "event": _event(a, action=e.action, at=e.at, from_team=e.from_team), "sends": sends,
            })
        elif isinstance(e, Refresh):
            refresh.append(_event(e.alert, action="updated", at=e.alert.updated_at, from_team=None))
    if records:
        conn.execute(_RECORD_SQL, (json.dumps(records, default=str), NOTIFY_CHANNEL))
    if refresh:
        conn.execute("SELECT count(pg_notify(%s, e::text)) FROM jsonb_array_elements(%s::jsonb) e",
                     (NOTIFY_CHANNEL, json.dumps(refresh, default=str)))


def _sends(conn: psycopg.Connection[Any], rec: Record, *, notifier: NotifierSettings,
           contacts: Mapping[str, TeamContact], patients: Mapping[int, PatientInfo] | None) -> list[dict[str, Any]]:
    a = rec.alert
    patient = (patients or {}).get(a.patient_id)
    if patient is None:
        patient = load_patients(conn, [a.patient_id]).get(a.patient_id)
    payload = notification_payload(a, action=rec.action, at=rec.at, from_team=rec.from_team, patient=patient,
                                   notifier=notifier, transition_id=None)
    out = []
    if notifier.webhook_url:
        out.append({"channel": "webhook", "target": notifier.webhook_url, "payload": payload})
    if notifier.smtp_host:
        contact = contacts.get(a.team_key)
        for address in contact.email if contact else ():
            out.append({"channel": "email", "target": address, "payload": payload})
    return out


def decide_for_patient(
    conn: psycopg.Connection[Any], *, patient: PatientInfo, findings: Sequence[PatientFinding], now: datetime,
    config: AlertingConfig, teams: TeamDirectory, notifier: NotifierSettings | None,
    ids: Iterator[int] | None = None,
) -> list[Alert]:
    """One scheduled check's findings for one patient, through the machine
    (:func:`alert_rules.lifecycle.run_batch`) and the writer. The caller holds the patient's lock
    in a transaction. Returns the alerts that opened or changed with a transition (not the ones
    resolved)."""
    actives = {a.rule_id: a for a in active_alerts(conn, [patient.id]).values()}
    final, effects = run_batch(patient, actives, findings, now, teams.router(config),
                               ids=ids if ids is not None else sequence_ids(conn))
    if not effects:
        return []
    write(conn, effects, notifier=notifier, contacts=config.routing.team_contacts, patients={patient.id: patient})
    touched = dict.fromkeys(e.alert.rule_id for e in effects if isinstance(e, Record))
    return [final[r] for r in touched if r in final]


def sequence_ids(conn: psycopg.Connection[Any]) -> Iterator[int]:
    """New alert ids one at a time (the scheduled checks open few alerts)."""
    while True:
        row = conn.execute("SELECT nextval('alerts_id_seq')").fetchone()
        assert row is not None
        yield int(row[0])


def act(
    conn: psycopg.Connection[Any], *, alert_id: int, action: Callable[[Alert], Action], now: datetime,
    config: AlertingConfig | None = None, teams: TeamDirectory | None = None,
    notifier: NotifierSettings | None = None,
) -> Alert:
    """A clinician's action on one alert, in its own transaction (a savepoint when the caller
    has one), under the patient's lock. ``action`` builds the action from the alert as it
    stands. With ``config``, a resolve lifts the muting it caused at once."""
    return _act(conn, alert_id=alert_id, action=action, now=now, config=config, teams=teams, notifier=notifier)[0]


def escalate(conn: psycopg.Connection[Any], *, alert_id: int, now: datetime, config: AlertingConfig,
             teams: TeamDirectory, notifier: NotifierSettings | None) -> Alert | None:
    """Escalate one alert if it is (still) due, decided again under its patient's lock: the
    alert handed over (or reminded), or None when another instance got there first."""
    router = teams.router(config)

    def action(alert: Alert) -> Escalate:
        return Escalate(sla=router.sla(alert.severity), owner_name=teams.name(alert.team_key))

    alert, changed = _act(conn, alert_id=alert_id, action=action, now=now, config=config, teams=teams,
                          notifier=notifier)
    return alert if changed else None


def _act(
    conn: psycopg.Connection[Any], *, alert_id: int, action: Callable[[Alert], Action], now: datetime,
    config: AlertingConfig | None, teams: TeamDirectory | None, notifier: NotifierSettings | None,
) -> tuple[Alert, bool]:
    with conn.transaction():
        row = conn.execute("SELECT patient_id FROM alerts WHERE id = %s", (alert_id,)).fetchone()
        if row is None:
            raise AlertNotFound(alert_id)
        lock_patients(conn, [int(row[0])])
        alert = get_alert(conn, alert_id, for_update=True)
        try:
            updated, effects = apply_action(alert, action(alert), now)
        except ActionRefused as exc:
            raise InvalidTransition(str(exc)) from None
        if not effects:
            return updated, False
        grouped: list[Effect] = group(effects)
        if config is not None and updated.state == "resolved" and config.routing.inhibit_rules:
            patient = load_patients(conn, [alert.patient_id])[alert.patient_id]
            router = (teams or TeamDirectory()).router(config)
            others = {a.id: a for a in active_alerts(conn, [alert.patient_id]).values() if a.id != alert_id}
            _, grouped = settle(patient, others, effects, now, router)
        write(conn, grouped, notifier=notifier, contacts=config.routing.team_contacts if config else None)
        return updated, True
