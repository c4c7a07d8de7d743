"""The scheduled work, as plain functions of (connection, now): the scheduler only calls them.

Each is idempotent against the database, so a missed run, a rerun or a second instance adds
nothing twice: the state lives in the rows, not in the scheduler.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from alert_rules.baseline import compute_baseline
from alert_rules.evaluate import AgentStatus, DeviceStatus, evaluate_agent, evaluate_device
from alert_rules.lifecycle import PatientFinding
from alert_rules.model import AgentOfflineRule, BaselineRule, BatteryLowRule
from alert_rules.quality import ARTEFACT_FLAGS
from backend.alerting import lifecycle
from backend.alerting.config import AlertingConfig, NotifierSettings
from backend.readings import StoredReading
from vitals.kinds import MeasurementKind

log = logging.getLogger(__name__)


def run_escalations(conn: psycopg.Connection[Any], *, now: datetime, config: AlertingConfig,
                    teams: lifecycle.TeamDirectory | None = None,
                    notifier: NotifierSettings | None = None, limit: int = 500) -> list[lifecycle.Alert]:
    """Hand every open alert past its SLA to the next team, once. Safe to run anywhere, any time:
    the due time lives in the row and moves forward in the same transaction as the handover,
    and each alert is decided again under its patient's lock in a short transaction of its own."""
    teams = teams or lifecycle.TeamDirectory()
    teams.refresh(conn)
    due = conn.execute(
        "SELECT id FROM alerts WHERE state = 'open' AND escalation_due_at <= %s AND inhibited_by IS NULL"
        " AND (snoozed_until IS NULL OR snoozed_until <= %s) ORDER BY escalation_due_at LIMIT %s",
        (now, now, limit),
    ).fetchall()
    lifecycle.end_implicit_transaction(conn)
    out: list[lifecycle.Alert] = []
    for (alert_id,) in due:
        updated = lifecycle.escalate(conn, alert_id=alert_id, now=now, config=config, teams=teams, notifier=notifier)
        if updated is not None:
            out.append(updated)
    return out


def check_technical(conn: psycopg.Connection[Any], *, now: datetime, config: AlertingConfig,
                    teams: lifecycle.TeamDirectory | None = None,
                    notifier: NotifierSettings | None = None) -> list[lifecycle.Alert]:
    """Agents offline beyond the limit, and devices reporting a low battery.

    This job only gathers the facts (each agent's status and last contact, each device's battery
    flag); the rules decide (:func:`alert_rules.evaluate.evaluate_agent`, ``evaluate_device``)
    and the state machine acts, one patient per short transaction under the patient's lock."""
    teams = teams or lifecycle.TeamDirectory()
    teams.refresh(conn)
    offline = next((r for r in config.ruleset.by_id.values() if isinstance(r, AgentOfflineRule)), None)
    battery = next((r for r in config.ruleset.by_id.values() if isinstance(r, BatteryLowRule)), None)
    findings: dict[int, list[PatientFinding]] = defaultdict(list)
    patients: dict[int, lifecycle.PatientInfo] = {}
    agents = conn.execute(
        "SELECT patient_id, id, online, coalesce(last_seen_at, status_at, enrolled_at) FROM agents"
        " WHERE active AND patient_id IS NOT NULL").fetchall() if offline is not None else []
    devices = conn.execute(
        "SELECT DISTINCT a.patient_id, d.address, d.model FROM devices d JOIN agents a ON a.id = d.agent_id"
        " WHERE d.battery_low AND d.removed_at IS NULL AND a.active AND a.patient_id IS NOT NULL"
    ).fetchall() if battery is not None else []
    if agents or devices:
        patients = lifecycle.load_patients(conn, {int(r[0]) for r in (*agents, *devices)})
    lifecycle.end_implicit_transaction(conn)
    for pid, agent_id, online, seen in agents:
        assert offline is not None
        f = evaluate_agent(offline, AgentStatus(agent_id=agent_id, online=bool(online), last_seen_at=seen), now)
        if f is not None and pid in patients:
            # A standing condition: the alert opens once and stays as it is while it lasts.
            findings[pid].append(PatientFinding(patients[pid], f, None, offline.auto_resolve_after, repeat="keep",
                                                resolve_note="udstyret er online igen"))
    for pid, address, model in devices:
        assert battery is not None
        f = evaluate_device(battery, DeviceStatus(address=address, model=model, battery_low=True))
        if f is not None and pid in patients:
            findings[pid].append(PatientFinding(patients[pid], f, None, battery.auto_resolve_after, repeat="keep"))
    out: list[lifecycle.Alert] = []
    for pid, fs in sorted(findings.items()):
        with conn.transaction():
            lifecycle.lock_patients(conn, [pid])
            out += lifecycle.decide_for_patient(conn, patient=patients[pid], findings=fs, now=now, config=config,
                                                teams=teams, notifier=notifier)
    return out


def recompute_baselines(conn: psycopg.Connection[Any], *, now: datetime, config: AlertingConfig,
                        tz: str = "Europe/Copenhagen") -> int:
    """Each patient's baseline per (kind, component) of their programme's baseline rules.

    A day on which the patient had a red or yellow alert is not stable and is left out, and so is
    a reading with a device artefact flag (:data:`alert_rules.quality.ARTEFACT_FLAGS`)."""
    zone = ZoneInfo(tz)
    today = now.astimezone(zone).date()
    written = 0
    for prog_file in config.ruleset.files.values():
        rules = [r for r in prog_file.rules if isinstance(r, BaselineRule)]
        if not rules:
            continue
        days = max(r.thresholds.days for r in rules)
        since = now - timedelta(days=days * 2 + 2)
        unstable: dict[int, set[date]] = defaultdict(set)
        for pid, opened, closed in conn.execute(
            "SELECT a.patient_id, a.opened_at, coalesce(a.resolved_at, %s) FROM alerts a JOIN patients p"
            " ON p.id = a.patient_id WHERE p.programme = %s AND a.severity IN ('red', 'yellow')"
            " AND coalesce(a.resolved_at, %s) >= %s", (now, prog_file.programme, now, since),
        ).fetchall():
            d, last = opened.astimezone(zone).date(), closed.astimezone(zone).date()
            while d <= last:
                unstable[int(pid)].add(d)
                d += timedelta(days=1)
        for rule in rules:
            comp = rule.component_name
            rows = conn.execute(
                "SELECT m.patient_id, (m.measured_at AT TIME ZONE %s)::date AS day,"
                " avg((m.components ->> %s)::double precision) FROM measurements m JOIN patients p"
                " ON p.id = m.patient_id WHERE p.programme = %s AND p.active AND m.kind = %s AND m.measured_at >= %s"
                " AND m.components ? %s AND NOT (m.quality && %s::text[]) GROUP BY 1, 2",
                (tz, comp, prog_file.programme, rule.measurement.value, since, comp, sorted(ARTEFACT_FLAGS)),
            ).fetchall()
            series: dict[int, list[tuple[date, float]]] = defaultdict(list)
            for pid, day, mean in rows:
                if mean is not None:
                    series[int(pid)].append((day, float(mean)))
            with conn.transaction():
                for pid, daily in series.items():
                    b = compute_baseline(daily, today=today, days=rule.thresholds.days,
                                         min_days=rule.thresholds.min_days, unstable_days=unstable.get(pid, set()))
                    if b is None:
                        conn.execute("DELETE FROM patient_baselines WHERE patient_id = %s AND kind = %s"
                                     " AND component = %s", (pid, rule.measurement.value, comp))
                        continue
                    conn.execute(
                        "INSERT INTO patient_baselines (patient_id, kind, component, mean, sd, n_days, last_day,"
                        " computed_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (patient_id, kind, component)"
                        " DO UPDATE SET mean = EXCLUDED.mean, sd = EXCLUDED.sd, n_days = EXCLUDED.n_days,"
                        " last_day = EXCLUDED.last_day, computed_at = EXCLUDED.computed_at",
                        (pid, rule.measurement.value, comp, b.mean, b.sd, b.n_days, b.last_day, now),
                    )
                    written += 1
    return written


READING_COLUMNS = (
    "m.id, m.patient_id, m.agent_id, m.kind, m.components, m.measured_at, m.stored_at, m.quality, m.flags,"
    " m.device_id"
)
"""The columns :func:`readings_from_rows` rebuilds a stored reading from (``measurements m``)."""


def readings_from_rows(conn: psycopg.Connection[Any], rows: Sequence[Any]) -> list[StoredReading]:
    """Stored readings from rows of :data:`READING_COLUMNS`, in each citizen's measurement order.
    A kind the rules do not know cannot be evaluated: it is recorded as an evaluation failure
    rather than scanned again forever."""
    out = []
    for mid, pid, agent, kind, comps, at, stored, quality, flags, device in rows:
        try:
            out.append(StoredReading(mid, int(pid), agent, MeasurementKind(kind), comps, at, stored,
                                     tuple(quality or ()), tuple(flags or ()), device))
        except ValueError:
            conn.execute("INSERT INTO alert_evaluation_failures (measurement_id, patient_id, error)"
                         " VALUES (%s,%s,%s) ON CONFLICT DO NOTHING", (mid, pid, f"unknown kind {kind!r}"))
    out.sort(key=lambda r: (r.patient_id, r.measured_at))
    return out


def failed_readings(conn: psycopg.Connection[Any], *, limit: int = 500) -> list[StoredReading]:
    """Readings whose evaluation failed earlier, rebuilt from the store for a retry."""
    rows = conn.execute(
        f"SELECT {READING_COLUMNS} FROM alert_evaluation_failures f JOIN measurements m ON m.id = f.measurement_id"
        " ORDER BY m.measured_at LIMIT %s", (limit,),
    ).fetchall()
    return readings_from_rows(conn, rows)


@dataclass(frozen=True, slots=True)
class CatchUp:
    found: int
    high_water: datetime
    complete: bool
    """False when ``limit`` cut the scan short: run again soon."""


_UNEVALUATED = (
    " FROM measurements m WHERE m.stored_at >= %s AND m.stored_at < %s AND m.patient_id IS NOT NULL"
    " AND NOT EXISTS (SELECT 1 FROM reading_evaluations e WHERE e.measurement_id = m.id)"
    " AND NOT EXISTS (SELECT 1 FROM alert_evaluation_failures f WHERE f.measurement_id = m.id)"
)


def catch_up(conn: psycopg.Connection[Any], *, evaluate: Callable[[Sequence[StoredReading]], None],
             grace: timedelta = timedelta(seconds=30), limit: int = 5000) -> CatchUp:
    """Evaluate every stored reading that has neither an evaluation nor a recorded failure.

    Readings are found by ``stored_at`` from a high-water mark. ``stored_at`` is the inserting
    transaction's start (``DEFAULT now()``), but the row only becomes visible at its commit, so
    "everything up to the newest stored_at seen" would skip a slow transaction that commits
    later. The mark is therefore moved only up to H = (the start of the oldest transaction still
    open in this database, or now, whichever is earlier) - ``grace``, read in its own statement
    *before* the scan: a transaction that started before H had finished when H was read, so its
    rows are visible to the scan that follows; anything still open or started later has
    stored_at >= H and is scanned next time. ``grace`` also leaves fresh readings to the queue
    worker. A reading that neither evaluated nor got its failure recorded holds the mark back.
    Concurrent runs (a leader change) are harmless: the engine skips readings already
    evaluated, under the patient's lock. ``conn`` must not be in a transaction (each step
    commits, so each gets its own snapshot)."""
    row = conn.execute("SELECT high_water FROM alert_catch_up").fetchone()
    if row is None:
        conn.execute("INSERT INTO alert_catch_up (high_water) VALUES (now()) ON CONFLICT DO NOTHING")
        row = conn.execute("SELECT high_water FROM alert_catch_up").fetchone()
    assert row is not None
    mark: datetime = row[0]
    conn.commit()
    h = conn.execute(
        "SELECT least(clock_timestamp(), (SELECT min(xact_start) FROM pg_stat_activity"
        "  WHERE datname = current_database() AND xact_start IS NOT NULL AND pid <> pg_backend_pid())) - %s",
        (grace,),
    ).fetchone()[0]  # type: ignore[index]
    conn.commit()
    if h <= mark:
        return CatchUp(0, mark, True)
    rows = conn.execute(
        f"SELECT {READING_COLUMNS}" + _UNEVALUATED + " ORDER BY m.stored_at LIMIT %s",
        (mark, h, limit),
    ).fetchall()
    conn.commit()
    complete = len(rows) < limit
    upto = h if complete else rows[-1][6]
    readings = readings_from_rows(conn, rows)
    conn.commit()
    if readings:
        log.info("catch-up: %d stored readings had no evaluation", len(readings))
        evaluate(readings)
        left = conn.execute("SELECT min(m.stored_at)" + _UNEVALUATED, (mark, upto)).fetchone()
        if left is not None and left[0] is not None:
            upto = left[0]
            complete = False
    conn.execute("UPDATE alert_catch_up SET high_water = greatest(high_water, %s), ran_at = now(),"
                 " evaluated = evaluated + %s", (upto, len(readings)))
    conn.commit()
    return CatchUp(len(readings), upto, complete)
