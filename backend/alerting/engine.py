"""The readings sink: evaluate stored readings against the rules and apply the lifecycle.

Ingest calls :meth:`AlertEngine.on_stored` after each commit. One batch is decided in one
transaction: each finding goes through the pure state machine (:mod:`alert_rules.lifecycle`),
the inhibition and grouping stages run over the touched patients' alerts, and one writer
(:func:`backend.alerting.lifecycle.write`) stores the effects in a few statements. If it fails,
each patient is retried in its own transaction, and a
reading that still cannot be evaluated is written to ``alert_evaluation_failures`` with the
error, to be retried by a scheduled job: a long-running ingest never crashes on it and no
reading silently escapes the rules.
"""

from __future__ import annotations

import bisect
import collections
import json
import logging
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from alert_rules import drive
from alert_rules.baseline import Baseline
from alert_rules.errors import ThresholdError
from alert_rules.evaluate import Context, Finding, Observation, evaluate, history_hours, history_kinds
from alert_rules.lifecycle import Effect, PatientFinding, Router, group
from alert_rules.model import AnyRule, MissingRule
from alert_rules.order import (
    LATE_REPLAY_LIMIT,
    LATE_REPLAY_MAX_READINGS,
    OPEN_BEFORE_READINGS,
    Evaluated,
    open_before,
    reach_back,
    replay_in_order,
)
from alert_rules.plans import awaited, missing_clear
from backend.alerting import lifecycle
from backend.alerting.clock import Clock, SystemClock
from backend.alerting.config import AlertingConfig, NotifierSettings
from backend.alerting.thresholds import ThresholdCache
from backend.readings import StoredReading
from vitals.kinds import MeasurementKind

log = logging.getLogger(__name__)




ASYNC_COMMIT = "SET LOCAL synchronous_commit = off"
"""An evaluation commits without waiting for its WAL flush (PostgreSQL's asynchronous commit):
what it writes (alerts, transitions, notification rows, evaluation marks) is derived from readings
that ingest committed durably, and a crash can lose only the last evaluations whole, never in
part (WAL order). What feeds the engine hands such readings in again: the rules inbox keeps a
reading until the delete that follows its evaluation is itself on disk, and the catch-up job finds
any stored reading without an evaluation. So nothing is lost; a live event already sent for a lost
evaluation is sent again when it is redone. The gain is the flush wait, twice per batch, under
ingest's heavy WAL traffic."""


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
        self.history = HistoryCache()
        self._by_kind: dict[tuple[str, str], tuple[list[AnyRule], float]] = {}
        self._missing: dict[str, list[MissingRule]] = {}
        self._need: dict[str, tuple[float, frozenset[str]]] = {}
        self._auto_resolve: dict[str, int] | None = None
        self.evaluated = 0
        self.failed = 0
        self.skipped = 0
        self.late = 0
        """Late readings (older than the citizen's newest evaluated one) evaluated in their place."""
        self.late_in_arrival_order = 0
        """Late readings beyond the replay limits, evaluated in arrival order (and logged)."""

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
        failed: list[int] = []
        for pid, rs in by_patient.items():
            try:
                with self.pool.connection() as conn:
                    self._process(conn, rs)
                self.evaluated += len(rs)
            except Exception as exc:
                log.exception("alert evaluation for patient %s failed; recorded for retry", pid)
                self.failed += len(rs)
                self._record_failure(rs, exc)
                failed.append(pid)
        if failed:
            self._raise_failure_alerts(failed)

    def _raise_failure_alerts(self, pids: Sequence[int]) -> None:
        """A technical alert to the owning team at once (issue 12: failures are loud)."""
        from backend.alerting.failures import check_evaluation_failures

        try:
            with self.pool.connection() as conn:
                check_evaluation_failures(conn, now=self.clock.now(), config=self.config, teams=self.teams,
                                          notifier=self.notifier, patient_ids=pids)
        except Exception:
            log.exception("could not raise evaluation-failure alerts for patients %s", list(pids))

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
        self.thresholds.refresh(conn)
        with conn.transaction():
            pids = sorted({r.patient_id for r in readings})
            # One round trip for the lock and everything the batch reads: the server runs the
            # statements in order, so each read takes its snapshot after the locks are held.
            with conn.pipeline():
                # Everything this transaction writes is derived from committed readings: it need
                # not wait for the WAL flush (see ASYNC_COMMIT).
                conn.execute(ASYNC_COMMIT)
                lifecycle.lock_patients(conn, pids)
                # Under the patients' locks: a reading the queue and the catch-up job both hand
                # in (or a redelivery) is decided once, so it never opens or notifies twice.
                # Ids as a JSON array: psycopg quotes array parameters element by element.
                done_cur = conn.execute(
                    "SELECT measurement_id FROM reading_evaluations WHERE measurement_id IN"
                    " (SELECT jsonb_array_elements_text(%s::jsonb)::uuid)",
                    (json.dumps([str(r.id) for r in readings]),))
                patients_cur = lifecycle.query_patients(conn, pids)
                overrides_cur = self.thresholds.query_overrides(conn, pids)
                baselines_cur = _query_baselines(conn, pids)
                actives_cur = lifecycle.query_active_alerts(conn, pids)
                newest_cur = _query_newest_evaluated(conn, pids)
                done = {row[0] for row in done_cur.fetchall()}
                patients = lifecycle.patients_from_rows(patients_cur.fetchall())
                overrides = self.thresholds.overrides_from_rows(
                    {pid: p.programme for pid, p in patients.items()}, overrides_cur.fetchall())
                baselines = _baselines_from_rows(baselines_cur.fetchall())
                actives = lifecycle.active_alerts_from_rows(actives_cur.fetchall())
                newest = {int(p): at for p, at in newest_cur.fetchall() if at is not None}
            fresh: list[StoredReading] = []
            for r in readings:
                if r.id not in done:
                    done.add(r.id)
                    fresh.append(r)
            self.skipped += len(readings) - len(fresh)
            if not fresh:
                return
            # Each citizen's readings in measurement order; one older than the citizen's newest
            # evaluated reading is late, and is evaluated in its place (alert_rules.order).
            fresh.sort(key=_measurement_order)
            spans = self._late_spans(conn, fresh, newest, actives) if newest else {}
            history = self._load_history(
                conn, [*fresh, *(r for late in spans.values() for r, _ in late.span)] if spans else fresh, patients)
            evaluations: list[str] = []
            with conn.pipeline():
                effects = self._decide_all(conn, fresh, patients, overrides, baselines, actives, history, now,
                                           evaluations, spans)
                lifecycle.write(conn, effects, notifier=self.notifier, contacts=self.config.routing.team_contacts,
                                patients=patients)
                # The evaluation rows (and the end of any recorded failure) in one statement,
                # queued with the rest: no round trip of its own.
                conn.execute(
                    "WITH x AS (SELECT * FROM jsonb_to_recordset(%s::jsonb) AS x(m uuid, p bigint, at timestamptz,"
                    "  t jsonb, f jsonb)),"
                    " d AS (DELETE FROM alert_evaluation_failures WHERE measurement_id IN (SELECT m FROM x))"
                    " INSERT INTO reading_evaluations (measurement_id, patient_id, measured_at, evaluated_at,"
                    " thresholds, fired) SELECT m, p, at, %s, t, f FROM x",
                    ("[" + ",".join(evaluations) + "]", now),
                )

    def _decide_all(self, conn: psycopg.Connection[Any], readings: Sequence[StoredReading],
                    patients: Mapping[int, lifecycle.PatientInfo], overrides: Mapping[int, Any],
                    baselines: Mapping[int, Any], actives: dict[tuple[int, str], lifecycle.Alert],
                    history: Mapping[int, tuple[list[datetime], list[Observation]]], now: datetime,
                    evaluations: list[str],
                    spans: Mapping[int, _Late] | None = None) -> list[Effect]:
        """Every reading's findings through the state machine, then the inhibition and grouping
        stages: the batch's effects, for the one writer. The readings of a patient in ``spans``
        (late ones) are replayed in measurement order with the span's evaluated readings instead
        (:meth:`_replay`)."""
        router = self.teams.router(self.config)
        ids = self.alert_ids.iterator(conn)
        effects: list[Effect] = []
        settle: set[int] = set()  # patients whose set of alerts or severities changed: inhibition runs
        in_force_json: dict[tuple[int, str, tuple[str, ...]], str] = {}
        fired_json: dict[tuple[tuple[str, str | None], ...], str] = {}
        by_id = self.config.ruleset.by_id
        for r in readings:
            if spans and r.patient_id in spans:
                continue  # late: replayed below, in measurement order
            patient = patients.get(r.patient_id)
            if patient is None:
                raise LookupError(f"reading {r.id} names unknown patient {r.patient_id}")
            kind = MeasurementKind(r.kind)
            rules, hours = self._rules_for(patient.programme, kind)
            times, observations = history.get(r.patient_id, ([], []))
            ctx = Context(
                programme=patient.programme,
                history=drive.window(times, observations, r.measured_at, hours, reading=str(r.id)),
                baselines=baselines.get(r.patient_id, {}),
                overrides=overrides.get(r.patient_id, {}),
            )
            obs = Observation(kind=kind, components=r.components, measured_at=r.measured_at,
                              id=str(r.id), quality=tuple(r.quality))
            findings = self._evaluate(rules, ctx, obs, patient.programme)
            # A patient's thresholds are the same all batch: dump them once per set of rules.
            force_key = (r.patient_id, kind.value, tuple(f.rule_id for f in findings))
            in_force = in_force_json.get(force_key)
            if in_force is None:
                in_force = in_force_json[force_key] = json.dumps({f.rule_id: f.thresholds for f in findings},
                                                                 default=float)
            fired_key = tuple((f.rule_id, f.severity) for f in findings if f.fired)
            fired = fired_json.get(fired_key)
            if fired is None:
                fired = fired_json[fired_key] = json.dumps(dict(fired_key))
            # Built as text: the thresholds and severities are JSON already, ids and times need no escaping.
            evaluations.append(f'{{"m":"{r.id}","p":{int(r.patient_id)},"at":"{r.measured_at.isoformat()}",'
                               f'"t":{in_force},"f":{fired}}}')
            drive.apply_findings(actives, r.patient_id, patient, findings, r.id, by_id, now, router, ids, effects,
                                 settle)
            # A reading of a kind a blue alert is waiting for counts as back in range.
            for rule in self._missing_rules(patient.programme):
                key = (r.patient_id, rule.id)
                active = actives.get(key)
                if active is None or r.kind not in awaited(active.detail):
                    continue
                self._step(actives, key, active,
                           PatientFinding(patient, missing_clear(rule), r.id, rule.auto_resolve_after),
                           now, router, ids, effects, settle)
        for pid, late in (spans or {}).items():
            self._replay(conn, pid, [r for r in readings if r.patient_id == pid], late, patients, overrides,
                         baselines, actives, history, now, router, ids, effects, settle, evaluations)
        drive.settle_inhibition(actives, settle, patients, self.config.routing, now, router, effects)
        return group(effects)

    def _late_spans(
        self, conn: psycopg.Connection[Any], fresh: Sequence[StoredReading], newest: Mapping[int, datetime],
        actives: Mapping[tuple[int, str], lifecycle.Alert],
    ) -> dict[int, _Late]:
        """The patients with late readings, each with the span of already-evaluated readings to
        replay with them (from the earliest late one, or from an open alert's last breach before
        it: :func:`alert_rules.order.reach_back`, or a run's still open before it:
        :func:`alert_rules.order.open_before`), in measurement order, with the resolved alerts
        that have a breach in it and the evaluated readings just before it. A patient beyond
        the limits (:data:`LATE_REPLAY_LIMIT`, :data:`LATE_REPLAY_MAX_READINGS`) is left out: its
        readings are evaluated in arrival order, and logged."""
        since: dict[int, datetime] = {}
        late: dict[int, int] = defaultdict(int)
        for r in fresh:
            top = newest.get(r.patient_id)
            if top is not None and r.measured_at < top:
                late[r.patient_id] += 1
                if r.patient_id not in since:
                    since[r.patient_id] = r.measured_at  # fresh is in measurement order
        if not since:
            return {}
        for pid, t in list(since.items()):
            if newest[pid] - t > LATE_REPLAY_LIMIT:
                self._arrival_order(pid, late[pid], f"{newest[pid] - t} behind the newest evaluated reading")
                del since[pid]
        resolve_after = self._resolve_after()
        spans: dict[int, list[tuple[StoredReading, Evaluated]]] = {}
        pasts: dict[int, list[lifecycle.Alert]] = {}
        befores: dict[int, list[Evaluated]] = {}
        todo = dict(since)
        # From the earliest late reading back to a breach of each run the span continues (an
        # alert's, or one still open before the span), so that the state before the span is
        # exact; a reach back brings more readings in, so look again (a few times at most).
        for n in range(3):
            loaded = _load_spans(conn, todo)
            if n:  # a reach back beyond the replay limit: the span stays where it was
                loaded = {p: s for p, s in loaded.items() if len(s) <= LATE_REPLAY_MAX_READINGS}
                todo = {p: t for p, t in todo.items() if p in loaded}
                since.update(todo)
            spans.update(loaded)
            befores.update(_load_before(conn, todo))
            pasts.update(_load_past(conn, {p: [r.id for r, _ in spans.get(p, [])] for p in todo}))
            back: dict[int, list[uuid.UUID]] = {}
            for pid in todo:
                span = spans.get(pid, [])
                if len(span) > LATE_REPLAY_MAX_READINGS:
                    continue
                alerts = [*(a for (p, _rule), a in actives.items() if p == pid), *pasts.get(pid, [])]
                ids = reach_back(alerts, [e for _, e in span]) + open_before(befores.get(pid, []), resolve_after)
                if ids:
                    back[pid] = ids
            if not back:
                break
            rows = conn.execute(
                "SELECT patient_id, min(measured_at) FROM reading_evaluations WHERE measurement_id = ANY(%s)"
                " GROUP BY 1", ([i for ids in back.values() for i in ids],)).fetchall()
            # Within the limit only; beyond it the span starts where it is (the state before it is
            # then the stored alert's, less what the span added).
            todo = {int(p): at for p, at in rows
                    if at < since[int(p)] and newest[int(p)] - at <= LATE_REPLAY_LIMIT}
            if not todo:
                break
        out: dict[int, _Late] = {}
        for pid in since:
            span = spans.get(pid, [])
            if len(span) > LATE_REPLAY_MAX_READINGS:
                self._arrival_order(pid, late[pid], f"more than {LATE_REPLAY_MAX_READINGS} evaluated readings since")
                continue
            out[pid] = _Late(span, pasts.get(pid, []), befores.get(pid, []))
            self.late += late[pid]
        if out:
            log.info("%d late readings of %d patients evaluated in their place (%d evaluated readings replayed)",
                     sum(late[p] for p in out), len(out), sum(len(s.span) for s in out.values()))
        return out

    def _arrival_order(self, pid: int, n: int, why: str) -> None:
        self.late_in_arrival_order += n
        log.warning("patient %s: %d late readings evaluated in arrival order (%s; replay limits %s, %d readings)",
                    pid, n, why, LATE_REPLAY_LIMIT, LATE_REPLAY_MAX_READINGS)

    def _replay(self, conn: psycopg.Connection[Any], pid: int, fresh: Sequence[StoredReading], late: _Late,
                patients: Mapping[int, lifecycle.PatientInfo], overrides: Mapping[int, Any],
                baselines: Mapping[int, Any], actives: dict[tuple[int, str], lifecycle.Alert],
                history: Mapping[int, tuple[list[datetime], list[Observation]]], now: datetime, router: Router,
                ids: Iterator[int], effects: list[Effect], settle: set[int], evaluations: list[str]) -> None:
        """One patient's fresh readings, some late, evaluated in measurement order together with
        the span's already-evaluated readings (each with its history as of its own time), on a
        rewound copy of its alerts; the stored alerts the span touches are brought to what that
        records (:func:`alert_rules.order.replay_in_order`). Evaluation rows for the fresh readings only:
        the span's keep theirs."""
        patient = patients.get(pid)
        if patient is None:
            raise LookupError(f"readings {[str(r.id) for r in fresh]} name unknown patient {pid}")
        span = late.span
        by_id = self.config.ruleset.by_id
        mine = {r.id for r in fresh}
        findings: list[PatientFinding] = []
        for r in sorted([*fresh, *(r for r, _ in span)], key=_measurement_order):
            kind = MeasurementKind(r.kind)
            rules, hours = self._rules_for(patient.programme, kind)
            times, observations = history.get(pid, ([], []))
            ctx = Context(programme=patient.programme,
                          history=drive.window(times, observations, r.measured_at, hours, reading=str(r.id)),
                          baselines=baselines.get(pid, {}), overrides=overrides.get(pid, {}))
            obs = Observation(kind=kind, components=r.components, measured_at=r.measured_at, id=str(r.id),
                              quality=tuple(r.quality))
            found = self._evaluate(rules, ctx, obs, patient.programme)
            if r.id in mine:
                evaluations.append(json.dumps({
                    "m": str(r.id), "p": pid, "at": r.measured_at.isoformat(),
                    "t": {f.rule_id: f.thresholds for f in found},
                    "f": {f.rule_id: f.severity for f in found if f.fired}}, default=float))
            findings += [PatientFinding(patient, f, r.id, by_id[f.rule_id].auto_resolve_after) for f in found]
        current = {rule_id: a for (p, rule_id), a in actives.items() if p == pid}
        measured = {r.id: r.measured_at for r in fresh} | {r.id: r.measured_at for r, _ in span}
        after, out = replay_in_order(patient, current, [e for _, e in span], findings, now, router, ids=ids,
                                     past=late.past, times=measured, before=late.before)
        for rule_id, a in after.items():
            if a is None:
                actives.pop((pid, rule_id), None)
            else:
                actives[(pid, rule_id)] = a
        if out:
            effects += out
            settle.add(pid)
        # A reading of a kind a blue alert is waiting for counts as back in range (in arrival
        # order: the missed-measurement alerts are the scheduler's, not the readings').
        for r in fresh:
            for rule in self._missing_rules(patient.programme):
                key = (pid, rule.id)
                active = actives.get(key)
                if active is None or r.kind not in awaited(active.detail):
                    continue
                self._step(actives, key, active,
                           PatientFinding(patient, missing_clear(rule), r.id, rule.auto_resolve_after),
                           now, router, ids, effects, settle)

    @staticmethod
    def _step(actives: dict[tuple[int, str], lifecycle.Alert], key: tuple[int, str], active: lifecycle.Alert | None,
              pf: PatientFinding, now: datetime, router: Router, ids: Iterator[int], effects: list[Effect],
              settle: set[int]) -> None:
        drive.step(actives, key, active, pf, now, router, ids, effects, settle)

    def _rules_for(self, programme: str, kind: MeasurementKind) -> tuple[list[AnyRule], float]:
        """The rules a reading of this kind can fire (what ``evaluate`` would pick itself), and
        the hours of history they look back."""
        key = (programme, kind.value)
        hit = self._by_kind.get(key)
        if hit is None:
            hit = self._by_kind[key] = drive.rules_for_kind(self.config.ruleset.rules_for(programme), kind)
        return hit

    def _missing_rules(self, programme: str) -> list[MissingRule]:
        hit = self._missing.get(programme)
        if hit is None:
            hit = self._missing[programme] = [r for r in self.config.ruleset.rules_for(programme)
                                              if isinstance(r, MissingRule)]
        return hit

    def _resolve_after(self) -> dict[str, int]:
        """Each rule's ``auto_resolve_after``."""
        if self._auto_resolve is None:
            self._auto_resolve = {rid: r.auto_resolve_after for rid, r in self.config.ruleset.by_id.items()}
        return self._auto_resolve

    def _evaluate(self, rules: Sequence[AnyRule], ctx: Context, obs: Observation, programme: str) -> list[Finding]:
        try:
            return evaluate(rules, ctx, obs)
        except ThresholdError as exc:
            # An override that no longer fits a changed programme default: evaluate this reading
            # on the programme defaults rather than not at all, and say so.
            log.error("patient thresholds invalid (%s); evaluating on programme defaults", exc)
            return evaluate(rules, Context(programme=programme, history=ctx.history, baselines=ctx.baselines,
                                           overrides=self.thresholds.programme_overrides(programme)), obs)

    def _history_need(self, programme: str) -> tuple[float, frozenset[str]]:
        hit = self._need.get(programme)
        if hit is None:
            rules = self.config.ruleset.rules_for(programme)
            hit = self._need[programme] = (history_hours(rules), frozenset(k.value for k in history_kinds(rules)))
        return hit

    def _load_history(
        self, conn: psycopg.Connection[Any], readings: Sequence[StoredReading],
        patients: Mapping[int, lifecycle.PatientInfo],
    ) -> dict[int, tuple[list[datetime], list[Observation]]]:
        need: dict[int, float] = {}
        kinds: set[str] = set()
        for pid, p in patients.items():
            hours, prog_kinds = self._history_need(p.programme)
            if hours > 0:
                need[pid] = hours
                kinds |= prog_kinds
        if not need:
            return {}
        hours = max(need.values())
        oldest = min(r.measured_at for r in readings if r.patient_id in need) - timedelta(hours=hours)
        newest = max(r.measured_at for r in readings)
        return self.history.load(conn, pids=sorted(need), kinds=frozenset(kinds), oldest=oldest, newest=newest,
                                 readings=[r for r in readings if r.patient_id in need])


@dataclass(slots=True)
class _PatientHistory:
    covered_from: datetime
    """Complete from here on, as far as this process knows (checked against a count)."""
    kinds: frozenset[str]
    times: list[datetime]
    observations: list[Observation]
    ids: set[str]


class HistoryCache:
    """Recent observations per patient, so a batch does not read every patient's whole trend
    window from the database again.

    It only ever holds stored readings (loaded from the database, or readings ingest stored and
    handed over), so it is a subset of the database; each batch counts the window's rows in the
    database and reloads a patient whose count differs (another process evaluated readings of
    the same patient, a reading was deleted). The lock is held across the count and its use:
    a reading is committed before anyone hands it over, so whatever the cache holds is visible
    to that count."""

    def __init__(self, *, max_patients: int = 50_000) -> None:
        self.max_patients = max_patients
        self._patients: collections.OrderedDict[int, _PatientHistory] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.loads = 0

    def load(
        self, conn: psycopg.Connection[Any], *, pids: Sequence[int], kinds: frozenset[str], oldest: datetime,
        newest: datetime, readings: Sequence[StoredReading],
    ) -> dict[int, tuple[list[datetime], list[Observation]]]:
        with self._lock:
            for r in readings:
                entry = self._patients.get(r.patient_id)
                if entry is not None and r.kind.value in entry.kinds and str(r.id) not in entry.ids:
                    self._add(entry, Observation(MeasurementKind(r.kind), r.components, r.measured_at, str(r.id),
                                                 tuple(r.quality)))
            counts = dict(conn.execute(
                "SELECT patient_id, count(*) FROM measurements WHERE patient_id = ANY(%s) AND kind = ANY(%s)"
                " AND measured_at >= %s AND measured_at <= %s GROUP BY 1",
                (list(pids), sorted(kinds), oldest, newest),
            ).fetchall())
            out: dict[int, tuple[list[datetime], list[Observation]]] = {}
            stale: list[int] = []
            for pid in pids:
                entry = self._patients.get(pid)
                if entry is not None and entry.covered_from <= oldest and entry.kinds == kinds:
                    lo = bisect.bisect_left(entry.times, oldest)
                    hi = bisect.bisect_right(entry.times, newest)
                    if hi - lo == counts.get(pid, 0):
                        self.hits += 1
                        self._patients.move_to_end(pid)
                        out[pid] = (entry.times[lo:hi], entry.observations[lo:hi])
                        continue
                stale.append(pid)
            if stale:
                self.loads += len(stale)
                fresh = {pid: _PatientHistory(oldest, kinds, [], [], set()) for pid in stale}
                for pid, mid, kind, comps, at, quality in conn.execute(
                    "SELECT patient_id, id, kind, components, measured_at, quality FROM measurements"
                    " WHERE patient_id = ANY(%s) AND kind = ANY(%s) AND measured_at >= %s ORDER BY measured_at",
                    (stale, sorted(kinds), oldest),
                ).fetchall():
                    try:
                        obs = Observation(MeasurementKind(kind), comps, at, str(mid), tuple(quality or ()))
                    except ValueError:
                        continue
                    entry = fresh[int(pid)]
                    entry.times.append(at)
                    entry.observations.append(obs)
                    entry.ids.add(str(mid))
                for pid, entry in fresh.items():
                    self._patients[pid] = entry
                    self._patients.move_to_end(pid)
                    hi = bisect.bisect_right(entry.times, newest)
                    out[pid] = (entry.times[:hi], entry.observations[:hi])
            for pid in pids:
                self._trim(self._patients[pid], oldest)
            while len(self._patients) > self.max_patients:
                self._patients.popitem(last=False)
            return out

    @staticmethod
    def _add(entry: _PatientHistory, obs: Observation) -> None:
        if obs.measured_at < entry.covered_from:
            return
        i = bisect.bisect_right(entry.times, obs.measured_at)
        entry.times.insert(i, obs.measured_at)
        entry.observations.insert(i, obs)
        entry.ids.add(obs.id or "")

    @staticmethod
    def _trim(entry: _PatientHistory, oldest: datetime) -> None:
        # Keep a day before this batch's window: readings synced late still find their history.
        keep = oldest - timedelta(hours=24)
        cut = bisect.bisect_left(entry.times, keep)
        if cut:
            for o in entry.observations[:cut]:
                entry.ids.discard(o.id or "")
            del entry.times[:cut], entry.observations[:cut]
            entry.covered_from = max(entry.covered_from, keep)


@dataclass(frozen=True, slots=True)
class _Late:
    """A patient's late readings' replay: the span of evaluated readings, the resolved alerts
    with a breach in it, and the evaluated readings just before it (oldest first)."""

    span: list[tuple[StoredReading, Evaluated]]
    past: list[lifecycle.Alert]
    before: list[Evaluated]


def _load_past(conn: psycopg.Connection[Any], span_ids: Mapping[int, Sequence[uuid.UUID]],
               ) -> dict[int, list[lifecycle.Alert]]:
    """Each patient's resolved alerts with a breach among ``span_ids`` (the alert remembers its
    last :data:`~alert_rules.lifecycle.KEEP_READING_IDS` readings)."""
    out: dict[int, list[lifecycle.Alert]] = {}
    with conn.cursor(row_factory=dict_row) as cur:
        for pid, ids in span_ids.items():
            if ids:
                out[pid] = [lifecycle.alert_from_row(row) for row in cur.execute(
                    "SELECT * FROM alerts WHERE patient_id = %s AND state = 'resolved' AND reading_ids && %s::uuid[]"
                    " ORDER BY id", (pid, list(ids))).fetchall()]
    return out


def _load_before(conn: psycopg.Connection[Any], since: Mapping[int, datetime]) -> dict[int, list[Evaluated]]:
    """The last :data:`OPEN_BEFORE_READINGS` evaluated readings of each patient before ``since``,
    oldest first, with what their evaluation rows recorded."""
    if not since:
        return {}
    rows = conn.execute(
        "SELECT x.p, e.measurement_id, ARRAY(SELECT jsonb_object_keys(e.fired)),"
        " ARRAY(SELECT jsonb_object_keys(e.thresholds))"
        " FROM jsonb_to_recordset(%s::jsonb) AS x(p bigint, since timestamptz)"
        " CROSS JOIN LATERAL (SELECT * FROM reading_evaluations e WHERE e.patient_id = x.p"
        "  AND e.measured_at < x.since ORDER BY e.measured_at DESC LIMIT %s) e"
        " ORDER BY x.p, e.measured_at",
        (json.dumps([{"p": p, "since": t.isoformat()} for p, t in since.items()]), OPEN_BEFORE_READINGS),
    ).fetchall()
    out: dict[int, list[Evaluated]] = {p: [] for p in since}
    for pid, mid, fired, checked in rows:
        fired_rules = frozenset(fired)
        out[int(pid)].append(Evaluated(mid, fired_rules, frozenset(checked) - fired_rules))
    return out


def _measurement_order(r: StoredReading) -> tuple[int, datetime]:
    return r.patient_id, r.measured_at


def _query_newest_evaluated(conn: psycopg.Connection[Any], pids: Sequence[int]) -> psycopg.Cursor[Any]:
    """Each patient's newest evaluated reading's time (index reading_evaluations_patient: one
    probe per patient); fetch later (pipeline mode)."""
    return conn.execute(
        "SELECT p, (SELECT max(e.measured_at) FROM reading_evaluations e WHERE e.patient_id = p)"
        " FROM unnest(%s::bigint[]) AS p", (list(pids),))


def _load_spans(conn: psycopg.Connection[Any], since: Mapping[int, datetime],
                ) -> dict[int, list[tuple[StoredReading, Evaluated]]]:
    """The evaluated readings of each patient from ``since`` on, in measurement order, with what
    their evaluation rows recorded (at most one more than the replay limit)."""
    if not since:
        return {}
    rows = conn.execute(
        "SELECT x.p, m.id, m.agent_id, m.kind, m.components, m.measured_at, m.stored_at, m.quality, m.flags,"
        " m.device_id, ARRAY(SELECT jsonb_object_keys(e.fired)), ARRAY(SELECT jsonb_object_keys(e.thresholds))"
        " FROM jsonb_to_recordset(%s::jsonb) AS x(p bigint, since timestamptz)"
        " CROSS JOIN LATERAL (SELECT * FROM reading_evaluations e WHERE e.patient_id = x.p"
        "  AND e.measured_at >= x.since ORDER BY e.measured_at LIMIT %s) e"
        " JOIN measurements m ON m.id = e.measurement_id AND m.measured_at = e.measured_at"
        " ORDER BY x.p, m.measured_at",
        (json.dumps([{"p": p, "since": t.isoformat()} for p, t in since.items()]), LATE_REPLAY_MAX_READINGS + 1),
    ).fetchall()
    out: dict[int, list[tuple[StoredReading, Evaluated]]] = {p: [] for p in since}
    for pid, mid, agent, kind, comps, at, stored, quality, flags, device, fired, checked in rows:
        r = StoredReading(mid, int(pid), agent, MeasurementKind(kind), comps, at, stored, tuple(quality or ()),
                          tuple(flags or ()), device)
        fired_rules = frozenset(fired)
        out[int(pid)].append((r, Evaluated(mid, fired_rules, frozenset(checked) - fired_rules)))
    return out


def _query_baselines(conn: psycopg.Connection[Any], pids: Sequence[int]) -> psycopg.Cursor[Any]:
    return conn.execute(
        "SELECT patient_id, kind, component, mean, sd, n_days, last_day FROM patient_baselines"
        " WHERE patient_id = ANY(%s)", (list(pids),),
    )


def _baselines_from_rows(rows: Sequence[Any]) -> dict[int, dict[tuple[str, str], Baseline]]:
    out: dict[int, dict[tuple[str, str], Baseline]] = defaultdict(dict)
    for pid, kind, comp, mean, sd, n, last in rows:
        out[int(pid)][(kind, comp)] = Baseline(mean, sd, n, last)
    return out
