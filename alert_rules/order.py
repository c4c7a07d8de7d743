"""Evaluation in measurement order: a late reading is evaluated in its place, with no flapping.

Readings of one citizen can reach the rules out of order (two ingest workers committing a
backlog's batches in any order, the catch-up job picking up a reading after newer ones). A
reading that arrives after a newer one of the same citizen is *late*. Evaluating it against the
alerts as they now stand lets stale data decide: an old in-range reading resolves an alert that
a newer reading opened, and the next reading opens it again.

Instead the backend replays the citizen's readings from the earliest late one onward, in
measurement order, on a scratch copy of the alerts, and keeps only the net change:

1. :func:`rewind`: each unresolved alert as it stood before the replayed span (what the span's
   already-evaluated readings added, from their evaluation rows, taken out; None when the
   alert opened within the span). The span starts at the earliest late reading, or earlier at
   an alert's last breach before it (:func:`reach_back`), so that the rewound state is exact.
2. :func:`replay`: every finding of the span, late and already-evaluated readings alike, each
   evaluated with its history as of its own time, through :func:`alert_rules.lifecycle.transition`
   on that scratch copy.
3. :func:`reconcile`: per (patient, rule), the net change from the alert as it stands to the
   replayed final state: opened, resolved, worsened (once, whatever the steps), or the newest
   evidence folded in. Never the intermediate open → resolve → open: an alert that the replay
   resolves and opens again stays the one alert (its id, owner, kvittering and SLA), with the
   replayed evidence, and its severity is never lowered.

:func:`replay_in_order` is all three. The limits (:data:`LATE_REPLAY_LIMIT`,
:data:`LATE_REPLAY_MAX_READINGS`) are the backend's: beyond them it evaluates in arrival order
and logs it.
"""

from __future__ import annotations

import dataclasses
import itertools
import uuid
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from alert_rules.lifecycle import (
    Alert,
    Effect,
    Notify,
    Patient,
    PatientFinding,
    Record,
    Refresh,
    Router,
    Store,
    labels_for,
    transition,
)
from alert_rules.model import SEVERITY_RANK

LATE_REPLAY_LIMIT = timedelta(hours=72)
"""How late a reading may be (behind the citizen's newest evaluated reading) and still be
evaluated in its place. Later ones are evaluated in arrival order, and logged."""
LATE_REPLAY_MAX_READINGS = 2000
"""How many of the citizen's already-evaluated readings one replay re-evaluates at most. A span
with more is evaluated in arrival order, and logged."""


@dataclass(frozen=True, slots=True)
class Evaluated:
    """An already-evaluated reading of the replayed span, as its evaluation row recorded it."""

    reading_id: uuid.UUID
    fired: frozenset[str]
    """The rules it breached: each breach was folded into the alert open at the time."""
    cleared: frozenset[str]
    """The rules it was in range for: each counted towards that alert's auto-resolve."""


def rewind(alert: Alert, evaluated: Sequence[Evaluated]) -> Alert | None:
    """The alert as it stood before the span whose already-evaluated readings are ``evaluated``.

    None when every breach behind it is in the span (it opened within the span). Otherwise its
    breaches and readings from the span are taken out, and its in-range count is the one before
    the span when its last breach is older than the span (exact), else 0 (the span's own breach
    resets it, so the replay ends the same). Severity, owner and kvittering are kept."""
    rule = alert.rule_id
    fired = [e.reading_id for e in evaluated if rule in e.fired]
    cleared = sum(1 for e in evaluated if rule in e.cleared)
    if not fired and not cleared:
        return alert
    breaches = alert.breach_count - len(fired)
    if breaches <= 0:
        return None
    span = {e.reading_id for e in evaluated}
    kept = tuple(i for i in alert.reading_ids if i not in span)
    return dataclasses.replace(
        alert, breach_count=breaches, reading_ids=kept,
        last_reading_id=kept[-1] if kept and fired else alert.last_reading_id,
        in_range_count=0 if fired else max(0, alert.in_range_count - cleared),
    )


def resume(alert: Alert, evaluated: Sequence[Evaluated]) -> Alert | None:
    """An alert the system resolved, as it stood before the span, when its run reaches into the
    span (its last breach is one of the span's readings, :func:`reach_back` makes it so): open
    again on the scratch copy, without the span's breaches, so the replay decides afresh where
    the run ends (late breaches of the run arrived after the clears that resolved it). None when
    its run does not reach into the span, or opened within it."""
    span = {e.reading_id for e in evaluated}
    if alert.resolved_by != "system" or not alert.reading_ids or alert.reading_ids[-1] not in span:
        return None
    kept = tuple(i for i in alert.reading_ids if i not in span)
    breaches = alert.breach_count - (len(alert.reading_ids) - len(kept))
    if breaches <= 0 or not kept:
        return None
    return dataclasses.replace(
        alert, state="acknowledged" if alert.acknowledged_at is not None else "open", resolved_by=None,
        resolved_at=None, resolve_note=None, breach_count=breaches, reading_ids=kept, last_reading_id=kept[-1],
        in_range_count=0)


def reach_back(current: Mapping[str, Alert], evaluated: Sequence[Evaluated]) -> list[uuid.UUID]:
    """The readings the span should start from, so that :func:`rewind` is exact: for each alert
    with a breach in the span, its newest breach before the span (its in-range count before the
    span is then irrelevant: that breach resets it). Start the span at the oldest of these when
    it is older than the earliest late reading. An alert whose every remembered reading is in
    the span (it keeps the last :data:`~alert_rules.lifecycle.KEEP_READING_IDS`) names none."""
    span = {e.reading_id for e in evaluated}
    fired = {rule for e in evaluated for rule in e.fired}
    out = []
    for rule, a in current.items():
        if rule in fired:
            before = [i for i in a.reading_ids if i not in span]
            if before:
                out.append(before[-1])
    return out


@dataclass(frozen=True, slots=True)
class Replayed:
    """What :func:`replay` leaves, per rule."""

    final: dict[str, Alert | None]
    """Every rule of the start state and every rule a finding touched: an unresolved alert, a
    resolved one (``state == "resolved"``, nothing opened after it), or None."""
    raised: dict[str, Alert]
    """The alert right after the breach that raised it to its severity (opened or worsened)."""
    episodes: dict[str, list[tuple[Alert, list[Record]]]]
    """Alerts the replay opened and resolved (whole episodes within the span, in order), each
    with its transition records."""
    closed: dict[int, Alert] = dataclasses.field(default_factory=dict)
    """Alerts of the start state (stored ones) as the replay resolved them, by id."""


def replay(alerts: Mapping[str, Alert | None], findings: Iterable[PatientFinding], now: datetime,
           routing: Router) -> Replayed:
    """Findings in measurement order over a scratch copy of one patient's alerts (by rule; None:
    none before the span). Alerts the replay opens have negative ids (scratch only)."""
    final: dict[str, Alert | None] = dict(alerts)
    raised: dict[str, Alert] = {}
    episodes: dict[str, list[tuple[Alert, list[Record]]]] = {}
    records: dict[int, list[Record]] = {}
    closed: dict[int, Alert] = {}
    scratch = {rule: a for rule, a in alerts.items() if a is not None}
    ids = itertools.count(-1, -1)
    for pf in findings:
        rule = pf.finding.rule_id
        before = scratch.get(rule)
        alert, out = transition(before, pf, now, routing, ids=ids)
        if alert is None:
            continue
        final[rule] = alert
        if alert.id < 0:
            records.setdefault(alert.id, []).extend(e for e in out if isinstance(e, Record))
        if alert.state == "resolved":
            scratch.pop(rule, None)
            if alert.id < 0:
                episodes.setdefault(rule, []).append((alert, records.pop(alert.id, [])))
            else:
                closed[alert.id] = alert
            continue
        scratch[rule] = alert
        if before is None or alert.severity != before.severity:
            raised[rule] = alert
    return Replayed(final, raised, episodes, closed)


def reconcile(patient: Patient, current: Mapping[str, Alert], replayed: Replayed, now: datetime,
              routing: Router, *, ids: Iterator[int], recorded: Mapping[str, Collection[uuid.UUID]] | None = None,
              resumed: Mapping[str, Alert] | None = None) -> tuple[dict[str, Alert | None], list[Effect]]:
    """The net change, per rule the replay touched, from the patient's unresolved alerts
    (``current``, by rule) to the replayed final state. Returns each of those rules' alert as
    it now stands (None: no unresolved alert) and the effects to write; ``ids`` gives an alert
    that opens its id. An "opened" or "worsened" transition names the value and reading that
    raised the alert to its severity, as in measurement order; the alert row keeps the newest
    evidence.

    A whole episode within the span (an alert the replay opened and resolved, that is not the
    rule's current alert) is written as history: the alert, resolved, with its transitions, as
    an evaluation in measurement order has it, but not notified (it is over); unless one of its
    readings is already behind a stored alert of the rule (``recorded``: an earlier replay wrote
    it, or the alert resolved before its late readings came), which stands as it is.

    ``resumed``: stored resolved alerts (by rule) the replay started from (:func:`resume`).
    One the replay resolves again keeps its resolution and takes the replayed evidence (its
    breaches, last value, severity if worse), with no new transition."""
    raised = replayed.raised
    recorded = dict(recorded or {})
    after: dict[str, Alert | None] = {}
    effects: list[Effect] = []
    for rule, r in (resumed or {}).items():
        c = replayed.closed.get(r.id)
        if c is None or rule in current:
            continue
        rises = SEVERITY_RANK[c.severity] < SEVERITY_RANK[r.severity]
        fuller = dataclasses.replace(_with_evidence(r, c), severity=c.severity if rises else r.severity)
        if fuller != r:
            effects.append(Store(fuller, labels=labels_for(
                patient, rule_id=r.rule_id, rule_kind=r.rule_kind, severity=fuller.severity,
                measurement=r.measurement) if rises else None))
        recorded[rule] = {*recorded.get(rule, ()), *c.reading_ids}
    for rule, f in replayed.final.items():
        a = current.get(rule)
        for episode, records in replayed.episodes.get(rule, ()):
            if a is not None and (episode is f or not a.reading_ids or set(episode.reading_ids) & set(a.reading_ids)):
                continue  # the current alert's own run: folded into it below, never an episode of its own
            known = recorded.get(rule, ())
            if known and any(i in known for i in episode.reading_ids):
                continue  # stored already
            effects += _history(patient, episode, records, next(ids))
        ended = f is not None and f.state == "resolved"
        if a is None:
            if f is None or ended:
                after[rule] = None  # nothing open (an episode within the span is history, above)
                continue
            # A new alert (a resumed one still open at the end opens anew: its stored row stands).
            opened = dataclasses.replace(f, id=next(ids), opened_at=now, owner_since=now) \
                if f.id < 0 or rule in (resumed or {}) else f
            labels = labels_for(patient, rule_id=opened.rule_id, rule_kind=opened.rule_kind,
                                severity=opened.severity, measurement=opened.measurement)
            d = routing.decide(labels, now)
            rec = Record(_as_raised(opened, raised.get(rule)), "opened", "system", now, " › ".join(d.route_path))
            effects += (Store(opened, new=True, labels=labels), rec, Notify(rec))
            after[rule] = opened
            continue
        if f is None or ended:
            note = f.resolve_note if f is not None and f.resolve_note else "genvurderet i målerækkefølge"
            base = _with_evidence(a, f) if f is not None else a
            done = dataclasses.replace(base, state="resolved", resolved_by="system", resolved_at=now,
                                       resolve_note=note, updated_at=now, escalation_due_at=None, inhibited_by=None)
            effects += (Store(done), Record(done, "resolved", "system", now, note, a.state))
            after[rule] = None
            continue
        if f is a:
            after[rule] = a
            continue
        merged = _with_evidence(a, f)
        if SEVERITY_RANK[f.severity] < SEVERITY_RANK[a.severity]:
            labels = labels_for(patient, rule_id=a.rule_id, rule_kind=a.rule_kind, severity=f.severity,
                                measurement=a.measurement)
            d = routing.decide(labels, now)
            moved = d.team != a.team_key
            worse = dataclasses.replace(
                merged, severity=f.severity, state="open", updated_at=now, team_key=d.team,
                escalate_to=tuple(d.escalate_to), escalation_level=0, escalation_due_at=now + d.sla,
                owner_since=now if moved else a.owner_since)
            note = f"{a.severity} → {f.severity}; " + " › ".join(d.route_path)
            rec = Record(_as_raised(worse, raised.get(rule)), "worsened", "system", now, note, a.state,
                         a.team_key if moved else None)
            effects += (Store(worse, labels=labels), rec, Notify(rec))
            after[rule] = worse
        elif merged != a:
            merged = dataclasses.replace(merged, updated_at=now)
            effects += (Store(merged, narrow=True), Refresh(merged))
            after[rule] = merged
        else:
            after[rule] = a
    return after, effects


def _history(patient: Patient, episode: Alert, records: Sequence[Record], new_id: int) -> list[Effect]:
    """An episode the replay opened and resolved, as stored rows: the alert (resolved) and its
    transitions, with no notification."""
    alert = dataclasses.replace(episode, id=new_id)
    labels = labels_for(patient, rule_id=alert.rule_id, rule_kind=alert.rule_kind, severity=alert.severity,
                        measurement=alert.measurement)
    out: list[Effect] = [Store(alert, new=True, labels=labels)]
    out += [dataclasses.replace(r, alert=dataclasses.replace(r.alert, id=new_id)) for r in records]
    return out


def _as_raised(a: Alert, peak: Alert | None) -> Alert:
    """``a`` as the transition record shows it: with the value and reading of the breach that
    raised it to its severity."""
    if peak is None or peak.severity != a.severity:
        return a
    return dataclasses.replace(a, last_value=peak.last_value, last_reading_id=peak.last_reading_id)


def _with_evidence(a: Alert, f: Alert) -> Alert:
    """``a`` with the replay's evidence: the newest breach's value, thresholds and detail, the
    run's readings and counts."""
    return dataclasses.replace(a, last_value=f.last_value, last_reading_id=f.last_reading_id,
                               reading_ids=f.reading_ids, breach_count=f.breach_count,
                               in_range_count=f.in_range_count, thresholds=f.thresholds, detail=f.detail)


def replay_in_order(
    patient: Patient, current: Mapping[str, Alert], evaluated: Sequence[Evaluated],
    findings: Iterable[PatientFinding], now: datetime, routing: Router, *, ids: Iterator[int],
    recorded: Mapping[str, Collection[uuid.UUID]] | None = None, resolved: Mapping[str, Alert] | None = None,
) -> tuple[dict[str, Alert | None], list[Effect]]:
    """One patient's span in measurement order: its unresolved alerts (``current``, by rule)
    rewound past the span's already-evaluated readings (``evaluated``), the span's ``findings``
    (late and already-evaluated readings, in measurement order) replayed on that copy, and the
    net change. Returns the touched rules' alerts as they now stand (None: none unresolved)
    and the effects, for the inhibition and grouping stages and the writer. ``recorded``: per
    rule, the span's readings already behind the patient's resolved alerts; ``resolved``: per
    rule with no unresolved alert, its latest resolved alert, resumed when its run reaches into
    the span (:func:`resume`)."""
    start: dict[str, Alert | None] = {rule: rewind(a, evaluated) for rule, a in current.items()}
    resumed: dict[str, Alert] = {}
    for rule, r in (resolved or {}).items():
        back = None if rule in current else resume(r, evaluated)
        if back is not None:
            start[rule] = back
            resumed[rule] = r
    return reconcile(patient, current, replay(start, findings, now, routing), now, routing, ids=ids,
                     recorded=recorded, resumed=resumed)
