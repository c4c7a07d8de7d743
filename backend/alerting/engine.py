"""The readings sink: evaluate stored readings against the rules and apply the lifecycle.

Ingest calls :meth:`AlertEngine.on_stored` after each commit. One batch is decided in one
transaction (fast path); if it fails, each patient is retried in its own transaction, and a
reading that still cannot be evaluated is written to ``alert_evaluation_failures`` with the
error, to be retried by a scheduled job: a long-running ingest never crashes on it and no
reading silently escapes the rules.
"""

from __future__ import annotations

import bisect
import json
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from alert_rules.baseline import Baseline
from alert_rules.errors import ThresholdError
from alert_rules.evaluate import Context, Finding, Observation, evaluate
from alert_rules.model import AnyRule, MissingRule, ScoreRule, TrendRule
from backend.alerting import lifecycle
from backend.alerting.clock import Clock, SystemClock
from backend.alerting.config import AlertingConfig, NotifierSettings
from backend.alerting.thresholds import ThresholdCache
from backend.readings import StoredReading
from vitals.kinds import MeasurementKind

log = logging.getLogger(__name__)


def _history_hours(rules: Sequence[AnyRule]) -> float:
    hours = 0.0
    for r in rules:
        if isinstance(r, TrendRule):
            hours = max(hours, r.thresholds.window_hours)
        elif isinstance(r, ScoreRule):
            hours = max(hours, r.thresholds.recent_hours)
    return hours


class AlertEngine:
    def __init__(
        self,
        *,
        pool: ConnectionPool,
        config: AlertingConfig,
        clock: Clock | None = None,
        notifier: NotifierSettings | None = None,
    ) -> None:
        self.pool = pool
        self.config = config
        self.clock = clock or SystemClock()
        self.notifier = notifier
        self.teams = lifecycle.TeamDirectory()
        self.thresholds = ThresholdCache(config)
        self.alert_ids = lifecycle.AlertIds()
        self.evaluated = 0
        self.failed = 0
        self.skipped = 0

    # The ReadingsSink
    def on_stored(self, readings: Sequence[StoredReading]) -> None:
        if not readings:
            return
        try:
            with self.pool.connection() as conn:
                self._process(conn, readings)
            self.evaluated += len(readings)
            return
        except Exception:
            log.exception("alert evaluation of a batch of %d failed; retrying per patient", len(readings))
        by_patient: dict[int, list[StoredReading]] = defaultdict(list)
        for r in readings:
            by_patient[r.patient_id].append(r)
        for pid, rs in by_patient.items():
            try:
                with self.pool.connection() as conn:
                    self._process(conn, rs)
                self.evaluated += len(rs)
            except Exception as exc:
                log.exception("alert evaluation for patient %s failed; recorded for retry", pid)
                self.failed += len(rs)
                self._record_failure(rs, exc)

    def _record_failure(self, readings: Sequence[StoredReading], exc: Exception) -> None:
        try:
            with self.pool.connection() as conn, conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO alert_evaluation_failures (measurement_id, patient_id, error) VALUES (%s,%s,%s)"
                    " ON CONFLICT (measurement_id) DO UPDATE SET attempts = alert_evaluation_failures.attempts + 1,"
                    " error = EXCLUDED.error, failed_at = now()",
                    [(r.id, r.patient_id, f"{type(exc).__name__}: {exc}"[:2000]) for r in readings],
                )
        except Exception:
            log.exception("could not even record the evaluation failure of %d readings", len(readings))

    def _process(self, conn: psycopg.Connection[Any], readings: Sequence[StoredReading]) -> None:
        now = self.clock.now()
        self.teams.refresh(conn)
        with conn.transaction():
            pids = sorted({r.patient_id for r in readings})
            lifecycle.lock_patients(conn, pids)
            # Under the patients' locks: a reading the queue and the catch-up job both hand in
            # (or a redelivery) is decided once, so it never opens or notifies twice.
            done = {row[0] for row in conn.execute(
                "SELECT measurement_id FROM reading_evaluations WHERE measurement_id = ANY(%s)",
                ([r.id for r in readings],)).fetchall()}
            fresh: list[StoredReading] = []
            for r in readings:
                if r.id not in done:
                    done.add(r.id)
                    fresh.append(r)
            self.skipped += len(readings) - len(fresh)
            if not fresh:
                return
            patients = lifecycle.load_patients(conn, pids)
            overrides = self.thresholds.overrides_for(conn, pids)
            baselines = _load_baselines(conn, pids)
            actives, in_range = lifecycle.active_alerts_with_counts(conn, pids)
            history = self._load_history(conn, fresh, patients)
            batch = _BatchWrites(in_range=in_range)
            with conn.pipeline():
                self._decide_all(conn, fresh, patients, overrides, baselines, actives, history, now, batch)
                batch.flush(conn, now)
            with conn.cursor() as cur, cur.copy(
                "COPY reading_evaluations (measurement_id, patient_id, measured_at, evaluated_at, thresholds,"
                " fired) FROM STDIN"
            ) as copy:
                for row in batch.evaluations:
                    copy.write_row(row)
            conn.execute("DELETE FROM alert_evaluation_failures WHERE measurement_id = ANY(%s)",
                         ([r.id for r in fresh],))

    def _decide_all(self, conn: psycopg.Connection[Any], readings: Sequence[StoredReading],
                    patients: Mapping[int, lifecycle.PatientInfo], overrides: Mapping[int, Any],
                    baselines: Mapping[int, Any], actives: dict[tuple[int, str], lifecycle.Alert],
                    history: Mapping[int, tuple[list[datetime], list[Observation]]], now: datetime,
                    batch: _BatchWrites) -> None:
        per_patient: dict[int, set[str]] = defaultdict(set)
        for pid, rid in actives:
            per_patient[pid].add(rid)
        for r in readings:
            patient = patients.get(r.patient_id)
            if patient is None:
                raise LookupError(f"reading {r.id} names unknown patient {r.patient_id}")
            rules = self.config.ruleset.rules_for(patient.programme)
            hist = history.get(r.patient_id, ([], []))
            cut = bisect.bisect_left(hist[0], r.measured_at)
            ctx = Context(
                programme=patient.programme,
                history=hist[1][:cut],
                baselines=baselines.get(r.patient_id, {}),
                overrides=overrides.get(r.patient_id, {}),
            )
            obs = Observation(kind=MeasurementKind(r.kind), components=r.components, measured_at=r.measured_at,
                              id=str(r.id), quality=tuple(r.quality))
            findings = self._evaluate(rules, ctx, obs, patient.programme)
            in_force = {f.rule_id: f.thresholds for f in findings}
            fired = {f.rule_id: f.severity for f in findings if f.fired}
            batch.evaluations.append((r.id, r.patient_id, r.measured_at, now, json.dumps(in_force, default=float),
                                      json.dumps(fired)))
            for f in findings:
                key = (r.patient_id, f.rule_id)
                active = actives.get(key)
                if f.fired:
                    if active is not None:
                        repeated = lifecycle.repeat_breach(active, finding=f, reading_id=r.id, now=now)
                        if repeated is not None:
                            actives[key] = repeated
                            batch.repeat(repeated, in_range=0)
                            continue
                        batch.flush_one(conn, active.id, now)
                    others = bool(per_patient[r.patient_id] - {f.rule_id})
                    alert, _ = lifecycle.apply_breach(
                        conn, patient=patient, finding=f, reading_id=r.id, now=now, active=active,
                        config=self.config, teams=self.teams, notifier=self.notifier, others=others,
                        ids=self.alert_ids,
                    )
                    batch.in_range[alert.id] = 0
                    actives[key] = alert
                    per_patient[r.patient_id].add(f.rule_id)
                elif active is not None:
                    rule = self.config.ruleset.by_id[f.rule_id]
                    if self._in_range(conn, active, rule.auto_resolve_after, now, batch):
                        del actives[key]
                        per_patient[r.patient_id].discard(f.rule_id)
            self._missing_met(conn, r, rules, actives, per_patient, now, batch)

    def _in_range(self, conn: psycopg.Connection[Any], active: lifecycle.Alert, resolve_after: int,
                  now: datetime, batch: _BatchWrites) -> bool:
        """Count a reading back in range (in memory, stored once per batch); resolve the alert
        after ``resolve_after`` of them. True if it was resolved."""
        if resolve_after <= 0:
            return False
        count = batch.in_range.get(active.id, 0) + 1
        batch.repeat(active, in_range=count, notify=False)
        if count < resolve_after:
            return False
        batch.flush_one(conn, active.id, now)
        lifecycle.resolve_alert(conn, alert=active, by="system", note=f"{count} målinger tilbage inden for grænserne",
                                now=now, config=self.config)
        return True

    def _evaluate(self, rules: Sequence[AnyRule], ctx: Context, obs: Observation, programme: str) -> list[Finding]:
        try:
            return evaluate(rules, ctx, obs)
        except ThresholdError as exc:
            # An override that no longer fits a changed programme default: evaluate this reading
            # on the programme defaults rather than not at all, and say so.
            log.error("patient thresholds invalid (%s); evaluating on programme defaults", exc)
            return evaluate(rules, Context(programme=programme, history=ctx.history, baselines=ctx.baselines,
                                           overrides=self.thresholds.programme_overrides(programme)), obs)

    def _missing_met(self, conn: psycopg.Connection[Any], r: StoredReading, rules: Sequence[AnyRule],
                     actives: dict[tuple[int, str], lifecycle.Alert], per_patient: dict[int, set[str]],
                     now: datetime, batch: _BatchWrites) -> None:
        """A reading of a kind a blue alert is waiting for counts as back in range."""
        for rule in rules:
            if not isinstance(rule, MissingRule):
                continue
            active = actives.get((r.patient_id, rule.id))
            if active is None:
                continue
            kinds = {m.get("kind") for m in active.detail.get("missed", [])}
            if r.kind in kinds and self._in_range(conn, active, rule.auto_resolve_after, now, batch):
                del actives[(r.patient_id, rule.id)]
                per_patient[r.patient_id].discard(rule.id)

    def _load_history(
        self, conn: psycopg.Connection[Any], readings: Sequence[StoredReading],
        patients: Mapping[int, lifecycle.PatientInfo],
    ) -> dict[int, tuple[list[datetime], list[Observation]]]:
        need: dict[int, float] = {}
        for pid, p in patients.items():
            hours = _history_hours(self.config.ruleset.rules_for(p.programme))
            if hours > 0:
                need[pid] = hours
        if not need:
            return {}
        hours = max(need.values())
        oldest = min(r.measured_at for r in readings if r.patient_id in need) - timedelta(hours=hours)
        newest = max(r.measured_at for r in readings)
        kinds = sorted({k.value for pid in need for r in self.config.ruleset.rules_for(patients[pid].programme)
                        if isinstance(r, TrendRule | ScoreRule) for k in r.measurement_kinds})
        rows = conn.execute(
            "SELECT patient_id, id, kind, components, measured_at, quality FROM measurements"
            " WHERE patient_id = ANY(%s) AND kind = ANY(%s) AND measured_at >= %s AND measured_at <= %s"
            " ORDER BY measured_at",
            (list(need), kinds, oldest, newest),
        ).fetchall()
        out: dict[int, tuple[list[datetime], list[Observation]]] = {}
        for pid, mid, kind, comps, at, quality in rows:
            try:
                obs = Observation(MeasurementKind(kind), comps, at, str(mid), tuple(quality or ()))
            except ValueError:
                continue
            times, obss = out.setdefault(int(pid), ([], []))
            times.append(at)
            obss.append(obs)
        return out


class _BatchWrites:
    """What a batch changes without a transition, written once at its end: the evaluation
    rows, and per alert its latest state and in-range count."""

    def __init__(self, *, in_range: dict[int, int]) -> None:
        self.evaluations: list[tuple[Any, ...]] = []
        self.in_range = in_range
        self._alerts: dict[int, lifecycle.Alert] = {}
        self._notify: set[int] = set()

    def repeat(self, alert: lifecycle.Alert, *, in_range: int, notify: bool = True) -> None:
        self._alerts[alert.id] = alert
        self.in_range[alert.id] = in_range
        if notify:
            self._notify.add(alert.id)

    def flush_one(self, conn: psycopg.Connection[Any], alert_id: int, now: datetime) -> None:
        """Before a lifecycle step that reads or rewrites the alert, store what is pending for it."""
        alert = self._alerts.pop(alert_id, None)
        if alert is not None:
            lifecycle.write_repeats(conn, [alert], self.in_range, now=now,
                                    notify=[alert_id] if alert_id in self._notify else ())
            self._notify.discard(alert_id)

    def flush(self, conn: psycopg.Connection[Any], now: datetime) -> None:
        lifecycle.write_repeats(conn, list(self._alerts.values()), self.in_range, now=now, notify=list(self._notify))
        self._alerts.clear()
        self._notify.clear()


def _load_baselines(conn: psycopg.Connection[Any], pids: Sequence[int]) -> dict[int, dict[tuple[str, str], Baseline]]:
    rows = conn.execute(
        "SELECT patient_id, kind, component, mean, sd, n_days, last_day FROM patient_baselines"
        " WHERE patient_id = ANY(%s)", (list(pids),),
    ).fetchall()
    out: dict[int, dict[tuple[str, str], Baseline]] = defaultdict(dict)
    for pid, kind, comp, mean, sd, n, last in rows:
        out[int(pid)][(kind, comp)] = Baseline(mean, sd, n, last)
    return out


