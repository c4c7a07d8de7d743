"""The readings sink: evaluate stored readings against the rules and apply the lifecycle.

Ingest calls :meth:`AlertEngine.on_stored` after each commit. One batch is decided in one
transaction (fast path); if it fails, each patient is retried in its own transaction, and a
reading that still cannot be evaluated is written to ``alert_evaluation_failures`` with the
error, to be retried by a scheduled job: a long-running ingest never crashes on it and no
reading silently escapes the rules.
"""

from __future__ import annotations

import bisect
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
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
            patients = lifecycle.load_patients(conn, pids)
            overrides = self.thresholds.overrides_for(conn, pids)
            baselines = _load_baselines(conn, pids)
            actives = lifecycle.active_alerts(conn, pids)
            history = self._load_history(conn, readings, patients)
            evaluations: list[tuple[Any, ...]] = []
            with conn.pipeline():
                self._decide_all(conn, readings, patients, overrides, baselines, actives, history, now, evaluations)
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO reading_evaluations (measurement_id, patient_id, measured_at, evaluated_at,"
                    " thresholds, fired) VALUES (%s,%s,%s,%s,%s,%s) ON CONFLICT (measurement_id) DO UPDATE"
                    " SET evaluated_at = EXCLUDED.evaluated_at, thresholds = EXCLUDED.thresholds,"
                    " fired = EXCLUDED.fired",
                    evaluations,
                )
                cur.execute("DELETE FROM alert_evaluation_failures WHERE measurement_id = ANY(%s)",
                            ([r.id for r in readings],))

    def _decide_all(self, conn: psycopg.Connection[Any], readings: Sequence[StoredReading],
                    patients: Mapping[int, lifecycle.PatientInfo], overrides: Mapping[int, Any],
                    baselines: Mapping[int, Any], actives: dict[tuple[int, str], lifecycle.Alert],
                    history: Mapping[int, tuple[list[datetime], list[Observation]]], now: datetime,
                    evaluations: list[tuple[Any, ...]]) -> None:
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
            in_force = {f.rule_id: dict(f.thresholds) for f in findings}
            fired = {f.rule_id: f.severity for f in findings if f.fired}
            evaluations.append((r.id, r.patient_id, r.measured_at, now, Jsonb(in_force), Jsonb(fired)))
            for f in findings:
                key = (r.patient_id, f.rule_id)
                active = actives.get(key)
                if f.fired:
                    others = any(k[0] == r.patient_id and k != key for k in actives)
                    alert, _ = lifecycle.apply_breach(
                        conn, patient=patient, finding=f, reading_id=r.id, now=now, active=active,
                        config=self.config, teams=self.teams, notifier=self.notifier, others=others,
                        ids=self.alert_ids,
                    )
                    actives[key] = alert
                elif active is not None:
                    rule = self.config.ruleset.by_id[f.rule_id]
                    if lifecycle.apply_in_range(conn, active=active, resolve_after=rule.auto_resolve_after,
                                                now=now, config=self.config, reading_id=r.id) is not None:
                        del actives[key]
            self._missing_met(conn, r, rules, actives, now)

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
                     actives: dict[tuple[int, str], lifecycle.Alert], now: datetime) -> None:
        """A reading of a kind a blue alert is waiting for counts as back in range."""
        for rule in rules:
            if not isinstance(rule, MissingRule):
                continue
            active = actives.get((r.patient_id, rule.id))
            if active is None:
                continue
            kinds = {m.get("kind") for m in active.detail.get("missed", [])}
            if r.kind in kinds and lifecycle.apply_in_range(
                conn, active=active, resolve_after=rule.auto_resolve_after, now=now, config=self.config,
            ) is not None:
                del actives[(r.patient_id, rule.id)]

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


def _load_baselines(conn: psycopg.Connection[Any], pids: Sequence[int]) -> dict[int, dict[tuple[str, str], Baseline]]:
    rows = conn.execute(
        "SELECT patient_id, kind, component, mean, sd, n_days, last_day FROM patient_baselines"
        " WHERE patient_id = ANY(%s)", (list(pids),),
    ).fetchall()
    out: dict[int, dict[tuple[str, str], Baseline]] = defaultdict(dict)
    for pid, kind, comp, mean, sd, n, last in rows:
        out[int(pid)][(kind, comp)] = Baseline(mean, sd, n, last)
    return out


