"""Monitoring plans (monitoreringsplan), passive intervals, missed measurements and adherence."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from alert_rules.lifecycle import PatientFinding
from alert_rules.model import MissingRule
from alert_rules.plans import PlanLine, Slot, missed_finding, missed_slots, planned_slots, slot_met
from backend import outbox
from backend.alerting import lifecycle
from backend.alerting.config import AlertingConfig, NotifierSettings
from backend.alerting.errors import InvalidPlan
from backend.alerting.models import Adherence, MonitoringPlanView, PassiveInterval, PlanItem
from vitals.kinds import MeasurementKind
from vitals.wire import MonitoringPlan, PlannedMeasurement, Topics

log = logging.getLogger(__name__)


def _item(raw: Mapping[str, Any] | PlannedMeasurement | PlanItem) -> PlanItem:
    if isinstance(raw, PlanItem):
        item = raw
    elif isinstance(raw, PlannedMeasurement):
        item = PlanItem(raw.kind.value, tuple(t.strftime("%H:%M") for t in raw.times), tuple(raw.weekdays),
                        raw.grace_minutes)
    else:
        try:
            pm = PlannedMeasurement.model_validate(dict(raw))
        except Exception as exc:
            raise InvalidPlan(f"not a planned measurement: {exc}") from None
        return _item(pm)
    try:
        MeasurementKind(item.kind)
        for t in item.times:
            time.fromisoformat(t)
    except ValueError as exc:
        raise InvalidPlan(str(exc)) from None
    return item


def _lines(items: Iterable[Mapping[str, Any]]) -> list[PlanLine]:
    return [PlanLine(MeasurementKind(i["kind"]), tuple(time.fromisoformat(t) for t in i["times"]),
                     tuple(i.get("weekdays", range(7))), int(i.get("grace_minutes", 120))) for i in items]


def monitoring_plan(conn: psycopg.Connection[Any], *, patient_id: int,
                    config: AlertingConfig) -> MonitoringPlanView:
    row = conn.execute(
        "SELECT measurements, paused_until, timezone, updated_by, updated_at FROM monitoring_plans"
        " WHERE patient_id = %s", (patient_id,),
    ).fetchone()
    if row is not None:
        items = tuple(_item(m) for m in row[0])
        return MonitoringPlanView(patient_id, items, row[1], row[2], row[3], row[4], is_default=False)
    prog = conn.execute("SELECT programme FROM patients WHERE id = %s", (patient_id,)).fetchone()
    if prog is None:
        raise InvalidPlan(f"no patient {patient_id}")
    cfg = config
    items = tuple(PlanItem(d.kind.value, tuple(t.strftime("%H:%M") for t in d.times), tuple(d.weekdays),
                           d.grace_minutes) for d in cfg.ruleset.default_plan(prog[0]))
    return MonitoringPlanView(patient_id, items, None, "Europe/Copenhagen", None, None, is_default=True)


def set_monitoring_plan(
    conn: psycopg.Connection[Any],
    *,
    patient_id: int,
    plan: Sequence[Mapping[str, Any] | PlannedMeasurement | PlanItem],
    by: str, topics: Topics, config: AlertingConfig, paused_until: datetime | None = None,
    now: datetime | None = None,
) -> MonitoringPlanView:
    """Store the plan, and in the same transaction queue it (retained) for each of the patient's
    tablets (:mod:`backend.outbox`): it reaches them if and only if the change commits, whichever
    process relays it. Slots before ``now`` are not planned retroactively."""
    items = [_item(p) for p in plan]
    at = now or datetime.now(UTC)
    data = [{"kind": i.kind, "times": list(i.times), "weekdays": list(i.weekdays), "grace_minutes": i.grace_minutes}
            for i in items]
    with conn.transaction():
        conn.execute(
            "INSERT INTO monitoring_plans (patient_id, measurements, paused_until, updated_by, updated_at, starts_at)"
            " VALUES (%s,%s,%s,%s,%s,%s) ON CONFLICT (patient_id) DO UPDATE SET measurements = EXCLUDED.measurements,"
            " paused_until = EXCLUDED.paused_until, updated_by = EXCLUDED.updated_by, updated_at = EXCLUDED.updated_at",
            (patient_id, Jsonb(data), paused_until, by, at, at),
        )
        agents = [r[0] for r in conn.execute(
            "SELECT id FROM agents WHERE patient_id = %s AND active", (patient_id,)).fetchall()]
        _queue_plan(conn, topics, agents, items, paused_until, at)
    return monitoring_plan(conn, patient_id=patient_id, config=config)


def _queue_plan(conn: psycopg.Connection[Any], topics: Topics, agents: Sequence[str], items: Sequence[PlanItem],
                paused: datetime | None, at: datetime) -> None:
    for agent_id in agents:
        msg = MonitoringPlan(
            agent_id=agent_id, issued_at=at, paused_until=paused,
            measurements=tuple(PlannedMeasurement(kind=MeasurementKind(i.kind),
                                                  times=tuple(time.fromisoformat(t) for t in i.times),
                                                  weekdays=i.weekdays, grace_minutes=i.grace_minutes) for i in items),
        )
        outbox.enqueue(conn, topic=topics.config(agent_id), payload=msg.to_json(), retain=True)


MAX_PASSIVE = timedelta(days=366)
"""The longest passive interval (issue 12: one ending in year 9999 was a 500 and silenced the
missed-measurement alerts for good)."""
_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def add_passive_interval(conn: psycopg.Connection[Any], *, patient_id: int, starts_at: datetime,
                         ends_at: datetime | None, reason: str, by: str) -> PassiveInterval:
    """Hospitalised, on holiday…: no missed-measurement alerts inside it."""
    if starts_at.tzinfo is None or (ends_at is not None and ends_at.tzinfo is None):
        raise InvalidPlan("times must be timezone-aware")
    if ends_at is not None and ends_at <= starts_at:
        raise InvalidPlan("a passive interval must end after it starts")
    if ends_at is None or ends_at - starts_at > MAX_PASSIVE:
        raise InvalidPlan(f"a passive interval may last at most {MAX_PASSIVE.days} days")
    if not _EARLIEST <= starts_at <= _LATEST:
        raise InvalidPlan(f"a passive interval must start between {_EARLIEST.year} and {_LATEST.year}")
    if not reason.strip():
        raise InvalidPlan("a passive interval needs a reason")
    row = conn.execute(
        "INSERT INTO passive_intervals (patient_id, starts_at, ends_at, reason, created_by) VALUES (%s,%s,%s,%s,%s)"
        " RETURNING id, created_at", (patient_id, starts_at, ends_at, reason, by),
    ).fetchone()
    assert row is not None
    return PassiveInterval(int(row[0]), patient_id, starts_at, ends_at, reason, by, row[1])


def passive_intervals(conn: psycopg.Connection[Any], *, patient_id: int) -> list[PassiveInterval]:
    return [PassiveInterval(*r) for r in conn.execute(
        "SELECT id, patient_id, starts_at, ends_at, reason, created_by, created_at FROM passive_intervals"
        " WHERE patient_id = %s ORDER BY starts_at", (patient_id,)).fetchall()]


def end_passive_interval(conn: psycopg.Connection[Any], *, interval_id: int, at: datetime, by: str) -> None:
    conn.execute("UPDATE passive_intervals SET ends_at = %s WHERE id = %s AND (ends_at IS NULL OR ends_at > %s)",
                 (at, interval_id, at))


def _plans(conn: psycopg.Connection[Any], patient_id: int | None) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT mp.patient_id, mp.measurements, mp.paused_until, mp.timezone, mp.starts_at FROM monitoring_plans mp"
        " JOIN patients p ON p.id = mp.patient_id WHERE p.active AND (%s::bigint IS NULL OR mp.patient_id = %s)",
        (patient_id, patient_id),
    ).fetchall()


def _slots_and_readings(
    conn: psycopg.Connection[Any], plans: Sequence[tuple[Any, ...]], start: datetime, end: datetime
) -> dict[int, tuple[list[Slot], dict[MeasurementKind, list[datetime]]]]:
    pids = [int(p[0]) for p in plans]
    passive: dict[int, list[tuple[datetime, datetime | None]]] = defaultdict(list)
    for pid, s, e in conn.execute(
        "SELECT patient_id, starts_at, ends_at FROM passive_intervals WHERE patient_id = ANY(%s)"
        " AND starts_at < %s AND (ends_at IS NULL OR ends_at > %s)", (pids, end, start - timedelta(days=1)),
    ).fetchall():
        passive[int(pid)].append((s, e))
    readings: dict[int, dict[MeasurementKind, list[datetime]]] = defaultdict(lambda: defaultdict(list))
    for pid, kind, at in conn.execute(
        "SELECT patient_id, kind, measured_at FROM measurements WHERE patient_id = ANY(%s)"
        " AND measured_at >= %s AND measured_at <= %s", (pids, start - timedelta(days=1), end + timedelta(days=1)),
    ).fetchall():
        try:
            readings[int(pid)][MeasurementKind(kind)].append(at)
        except ValueError:
            continue
    out = {}
    for pid, items, paused, tz, starts_at in plans:
        slots = planned_slots(_lines(items), start=max(start, starts_at), end=end, tz=tz,
                              passive=passive.get(int(pid), ()), paused_until=paused)
        out[int(pid)] = (slots, readings.get(int(pid), {}))
    return out


def check_missed_measurements(
    conn: psycopg.Connection[Any], *, now: datetime, config: AlertingConfig,
    teams: lifecycle.TeamDirectory | None = None, notifier: NotifierSettings | None = None,
    lookback: timedelta = timedelta(hours=36),
) -> list[lifecycle.Alert]:
    """Open or update a blue alert for every planned slot that passed its grace window unmet.
    Each slot is reported once (``missed_slots``), so reruns and restarts add nothing."""
    cfg = config
    teams = teams or lifecycle.TeamDirectory()
    teams.refresh(conn)
    plans = _plans(conn, None)
    if not plans:
        return []
    data = _slots_and_readings(conn, plans, now - lookback, now)
    lifecycle.end_implicit_transaction(conn)  # then one short transaction per patient, not savepoints of one
    out: list[lifecycle.Alert] = []
    for pid, (slots, readings) in data.items():
        missed = missed_slots(slots, readings, now=now)
        if not missed:
            continue
        with conn.transaction():
            lifecycle.lock_patients(conn, [pid])
            new = [s for s in missed if conn.execute(
                "INSERT INTO missed_slots (patient_id, kind, due_at) VALUES (%s,%s,%s) ON CONFLICT DO NOTHING"
                " RETURNING 1", (pid, s.kind.value, s.due_at)).fetchone()]
            if not new:
                continue
            patient = lifecycle.load_patients(conn, [pid])[pid]
            rule = next((r for r in cfg.ruleset.rules_for(patient.programme) if isinstance(r, MissingRule)), None)
            if rule is None:
                continue
            active = lifecycle.active_alerts(conn, [pid]).get((pid, rule.id))
            finding = missed_finding(rule, new, list(active.detail.get("missed", [])) if active else [])
            # A new missed slot is worth a transition even when the blue alert is open already.
            (alert,) = lifecycle.decide_for_patient(
                conn, patient=patient, now=now, config=cfg, teams=teams, notifier=notifier,
                findings=[PatientFinding(patient, finding, None, rule.auto_resolve_after, repeat="record")])
            conn.execute("UPDATE missed_slots SET alert_id = %s WHERE patient_id = %s AND due_at = ANY(%s)",
                         (alert.id, pid, [s.due_at for s in new]))
            out.append(alert)
    return out


def adherence(conn: psycopg.Connection[Any], *, patient_id: int | None = None, since: datetime,
              now: datetime | None = None) -> Adherence:
    """Share of planned measurements taken (passive intervals and pauses are not planned)."""
    end = now or datetime.now(UTC)
    plans = _plans(conn, patient_id)
    if not plans:
        return Adherence(patient_id, 0, 0, None)
    planned = taken = 0
    for _pid, (slots, readings) in _slots_and_readings(conn, plans, since, end).items():
        due = [s for s in slots if s.due_at + s.grace < end]
        planned += len(due)
        taken += sum(1 for s in due if slot_met(s, readings.get(s.kind, ())))
    return Adherence(patient_id, planned, taken, (taken / planned) if planned else None)
