"""Evaluation failures are loud: a citizen whose readings cannot be evaluated gets a technical
alert to the owning team ("Alarmer kan ikke beregnes for denne borger"), ``/readyz`` says
degraded, and a metric counts them (issue 12: a year-10000 reading or a NaN threshold silently
switched a citizen's alarms off while ``/readyz`` said "ok").

The failures themselves are the rows of ``alert_evaluation_failures`` (the engine writes one per
reading it could not evaluate, per patient, and deletes it when a retry succeeds). This module
turns them into one standing technical alert per citizen, through the same state machine and
router as every other alert, and resolves it when the citizen's failures are gone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from prometheus_client import Gauge

from alert_rules.evaluate import Finding
from alert_rules.lifecycle import PatientFinding
from backend.alerting import lifecycle
from backend.alerting.config import AlertingConfig, NotifierSettings
from backend.metrics import REGISTRY

FAILED_READINGS = Gauge(
    "nearcare_alert_evaluation_failed_readings",
    "Stored readings whose alert evaluation failed and is waiting for a retry (0 when all is well).",
    registry=REGISTRY,
)
FAILED_PATIENTS = Gauge(
    "nearcare_alert_evaluation_failed_patients",
    "Citizens with at least one reading the alert rules could not evaluate: their alarms may be silent.",
    registry=REGISTRY,
)

log = logging.getLogger(__name__)

RULE_ID = "system.evaluation_failed"
RULE_KIND = "evaluation_failed"
TITLE = "Alarmer kan ikke beregnes for denne borger"


@dataclass(frozen=True, slots=True)
class FailureSummary:
    readings: int
    patients: int


def summary(conn: psycopg.Connection[Any]) -> FailureSummary:
    """The failures now; also sets the metrics."""
    row = conn.execute("SELECT count(*), count(DISTINCT patient_id) FROM alert_evaluation_failures").fetchone()
    assert row is not None
    out = FailureSummary(int(row[0]), int(row[1]))
    FAILED_READINGS.set(out.readings)
    FAILED_PATIENTS.set(out.patients)
    return out


def finding(readings: int, error: str | None) -> Finding:
    """Pure: the technical finding for a citizen with ``readings`` unevaluated readings (0: clear)."""
    return Finding(
        RULE_ID, RULE_KIND, None, "technical" if readings else None, float(readings) if readings else None, TITLE, {},
        {"readings": readings, "error": (error or "")[:300]} if readings else {},
    )


def check_evaluation_failures(
    conn: psycopg.Connection[Any], *, now: datetime, config: AlertingConfig, teams: lifecycle.TeamDirectory,
    notifier: NotifierSettings | None, patient_ids: Iterable[int] | None = None,
) -> list[lifecycle.Alert]:
    """Open (or keep) the technical alert for each citizen with evaluation failures, and resolve
    it for each citizen whose failures are gone. ``patient_ids`` limits the check (the engine
    calls it right after a failure; the scheduler runs it for everyone)."""
    only = sorted(set(patient_ids)) if patient_ids is not None else None
    summary(conn)
    teams.refresh(conn, force=True)  # rare, and a team created a moment ago must own its citizens
    failing = {
        int(pid): (int(n), str(err))
        for pid, n, err in conn.execute(
            "SELECT patient_id, count(*), max(error) FROM alert_evaluation_failures"
            " WHERE (%s::bigint[] IS NULL OR patient_id = ANY(%s)) GROUP BY patient_id",
            (only, only),
        ).fetchall()
    }
    standing = {
        int(r[0])
        for r in conn.execute(
            "SELECT DISTINCT patient_id FROM alerts WHERE rule_id = %s AND state <> 'resolved'"
            " AND (%s::bigint[] IS NULL OR patient_id = ANY(%s))",
            (RULE_ID, only, only),
        ).fetchall()
    }
    pids = set(failing) | standing
    if not pids:
        lifecycle.end_implicit_transaction(conn)
        return []
    patients = lifecycle.load_patients(conn, pids)
    lifecycle.end_implicit_transaction(conn)
    out: list[lifecycle.Alert] = []
    for pid in sorted(pids):
        if pid not in patients:
            continue
        n, err = failing.get(pid, (0, None))
        f = PatientFinding(patients[pid], finding(n, err), None, 1, repeat="keep",
                           resolve_note="alarmerne beregnes igen")
        try:
            with conn.transaction():
                lifecycle.lock_patients(conn, [pid])
                out += lifecycle.decide_for_patient(conn, patient=patients[pid], findings=[f], now=now,
                                                    config=config, teams=teams, notifier=notifier)
        except Exception:
            log.exception("could not raise the evaluation-failure alert for patient %s", pid)
    return out
