"""Evaluation in measurement order: a late reading is evaluated in its place, with no flapping.

Readings of one citizen can reach the rules out of order (two ingest workers committing a
backlog's batches in any order, the catch-up job picking up a reading after newer ones). A
reading that arrives after a newer one of the same citizen is *late*. Evaluating it against the
alerts as they now stand lets stale data decide: an old in-range reading resolves an alert that
a newer reading opened, and the next reading opens it again.

Instead the backend replays the citizen's readings from the earliest late one onward, in
measurement order, on a scratch copy of the alerts, and brings the stored alerts to what that
replay records:

1. The span starts at the earliest late reading, or earlier at the newest breach before it of
   an alert with a breach in the span (:func:`reach_back`), or of a run still open when the
   span begins (:func:`open_before`), so that the state before the span is exact.
2. :func:`rewind`: each rule's earliest stored alert that the span touches (unresolved, or
   resolved with a breach in the span) as it stood before the span, on a scratch copy (the
   span's breaches taken out; None when it opened within the span).
3. :func:`replay`: every finding of the span, late and already-evaluated readings alike, each
   evaluated with its history as of its own time, through :func:`alert_rules.lifecycle.transition`
   on that scratch copy: per rule, its runs (episodes) in measurement order.
4. :func:`reconcile`: per rule, the stored alerts and the runs matched by the breaches they
   share. A run with no stored alert is created (as history, resolved and not notified, when it
   is over; opened and notified when not); a stored alert takes its run's evidence (breaches,
   last value and reading, in-range count) and is worsened, resolved, or opened again as its
   run says. Never an open → resolve → open of one run: an alert the replay continues stays the
   one alert (its id, owner, kvittering and SLA), and its severity is never lowered.

What cannot be made equal to an evaluation in measurement order without rewriting what
clinicians have seen (transitions already written, alerts already stored) is listed in
:func:`reconcile` and in ``backend/alerting/README.md``.

:func:`replay_in_order` is 2 to 4. The limits (:data:`LATE_REPLAY_LIMIT`,
:data:`LATE_REPLAY_MAX_READINGS`) are the backend's: beyond them it evaluates in arrival order
and logs it.
"""

from __future__ import annotations

import dataclasses
import itertools
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
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
OPEN_BEFORE_READINGS = 20
"""How many evaluated readings before the span the engine reads to find a run still open when
the span begins (:func:`open_before`)."""


@dataclass(frozen=True, slots=True)
class Evaluated:
    """An already-evaluated reading of the replayed span, as its evaluation row recorded it."""

    reading_id: uuid.UUID
    fired: frozenset[str]
    """The rules it breached: each breach was folded into the alert open at the time."""
    cleared: frozenset[str]
    """The rules it was in range for: each counted towards that alert's auto-resolve."""


def rewind(alert: Alert, evaluated: Sequence[Evaluated], *, earlier: bool = True) -> Alert | None:
    """The alert as it stood before the span whose already-evaluated readings are ``evaluated``
    (in measurement order), on a scratch copy: None when every breach behind it is in the span
    (it opened within the span). Otherwise its breaches from the span are taken out (those up to
    its last breach: later ones of its rule are another alert's), and its in-range count is the
    one before the span when its last breach is older than the span, else 0 (the span's own
    breach resets it; :func:`reach_back` starts the span at a breach, so that this is exact). An
    alert the system resolved is open again on the copy (the replay decides afresh where its
    run ends). Severity, owner and kvittering are kept. ``earlier`` False: no breach of its rule
    was evaluated just before the span, so an alert whose remembered readings are all in the
    span opened within it (None), however many breaches it counts."""
    rule = alert.rule_id
    last = alert.last_reading_id
    ids = [e.reading_id for e in evaluated]
    own = evaluated[:ids.index(last) + 1] if last in ids else evaluated
    span = set(ids)
    remembered = [i for i in alert.reading_ids if i in span]
    fired = [e.reading_id for e in own if rule in e.fired] if last in ids else []
    # Exact when it remembers a breach before the span (the span's are newer: remembered too), or
    # remembers every breach it counts; else the evaluation rows say (up to its last breach).
    exact = bool(remembered) and (len(remembered) < len(alert.reading_ids)
                                  or len(alert.reading_ids) == alert.breach_count)
    if exact or len(fired) < len(remembered):
        fired = remembered  # every breach of it in the span is remembered: exact (the rows may differ
        # from the alert for a rule that looks at history, the replay having re-decided them)
    cleared = sum(1 for e in evaluated if rule in e.cleared)
    if alert.state == "resolved":
        alert = dataclasses.replace(
            alert, state="acknowledged" if alert.acknowledged_at is not None else "open", resolved_by=None,
            resolved_at=None, resolve_note=None)
    if not fired and not cleared:
        return alert
    breaches = alert.breach_count - len(fired)
    if breaches <= 0 or (fired and not earlier and len(remembered) == len(alert.reading_ids)):
        return None  # (every reading it remembers is in the span, and none of its rule just before it)
    kept = tuple(i for i in alert.reading_ids if i not in span)
    return dataclasses.replace(
        alert, breach_count=breaches, reading_ids=kept,
        last_reading_id=kept[-1] if kept and fired else alert.last_reading_id,
        in_range_count=0 if fired else max(0, alert.in_range_count - cleared),
    )


def reach_back(alerts: Iterable[Alert], evaluated: Sequence[Evaluated]) -> list[uuid.UUID]:
    """The readings the span should start from, so that :func:`rewind` is exact: for each alert
    (unresolved, or resolved with a breach in the span) with a breach in the span, its newest
    breach before the span (its in-range count before the span is then irrelevant: that breach
    resets it). Start the span at the oldest of these when it is older than the earliest late
    reading. An alert whose every remembered reading is in the span (it keeps the last
    :data:`~alert_rules.lifecycle.KEEP_READING_IDS`) names none."""
    span = {e.reading_id for e in evaluated}
    fired = {rule for e in evaluated for rule in e.fired}
    out = []
    for a in alerts:
        if a.rule_id in fired:
            before = [i for i in a.reading_ids if i not in span]
            if before and (a.state != "resolved" or len(before) < len(a.reading_ids)):
                out.append(before[-1])
    return out


def open_before(before: Sequence[Evaluated], resolve_after: Mapping[str, int]) -> list[uuid.UUID]:
    """The readings just before the span (``before``, in measurement order) at which a run was
    still open when the span begins: per rule, its newest breach there when fewer in-range
    readings than the rule's ``resolve_after`` follow it. Start the span at the oldest of these
    too: a late breach in the span then continues that run (as in measurement order) instead
    of opening an alert of its own, even when newer readings have since resolved it."""
    out: list[uuid.UUID] = []
    seen: set[str] = set()
    clears: dict[str, int] = {}
    for e in reversed(before):
        for rule in e.cleared:
            clears[rule] = clears.get(rule, 0) + 1
        for rule in e.fired:
            if rule not in seen:
                seen.add(rule)
                if clears.get(rule, 0) < resolve_after.get(rule, 2):
                    out.append(e.reading_id)
    return out


@dataclass(frozen=True, slots=True)
class Episode:
    """One alert's run as the replay leaves it (in measurement order)."""

    alert: Alert
    """Resolved (``state == "resolved"``) or not; a negative id: opened by the replay."""
    breaches: frozenset[uuid.UUID]
    """Every breach of the run within the span (the alert remembers only the last few)."""
    records: tuple[tuple[Record, uuid.UUID | None], ...]
    """Its transitions in the replay, each with the reading behind it."""
    peak: Alert | None
    """The alert right after the breach that raised it to its severity (opened or worsened)."""


def replay(alerts: Mapping[str, Alert | None], findings: Iterable[PatientFinding], now: datetime,
           routing: Router) -> dict[str, list[Episode]]:
    """Findings in measurement order over a scratch copy of one patient's alerts (by rule; None:
    none before the span). Returns per rule its runs in the span, in measurement order: the
    first may continue the alert of the start state (its id), the others the replay opened
    (negative ids, scratch only); all but the last are resolved."""
    runs: dict[str, list[Episode]] = {rule: [Episode(a, frozenset(), (), None)]
                                      for rule, a in alerts.items() if a is not None}
    scratch = {rule: a for rule, a in alerts.items() if a is not None}
    ids = itertools.count(-1, -1)
    for pf in findings:
        rule = pf.finding.rule_id
        before = scratch.get(rule)
        if before is None and pf.finding.severity is None:
            continue
        alert, out = transition(before, pf, now, routing, ids=ids)
        if alert is None or (not out and alert is before):
            continue
        mine = runs.setdefault(rule, [])
        if before is None:
            mine.append(Episode(alert, frozenset(), (), None))
        ep = mine[-1]
        breaches = ep.breaches | {pf.reading_id} if pf.finding.severity is not None and pf.reading_id else ep.breaches
        recs = (*ep.records, *((e, pf.reading_id) for e in out if isinstance(e, Record)))
        peak = alert if (before is None or alert.severity != before.severity) and alert.state != "resolved" \
            else ep.peak
        mine[-1] = Episode(alert, breaches, recs, peak)
        if alert.state == "resolved":
            scratch.pop(rule, None)
        else:
            scratch[rule] = alert
    return runs


def reconcile(patient: Patient, stored: Mapping[str, Sequence[Alert]], runs: Mapping[str, Sequence[Episode]],
              now: datetime, routing: Router, *, ids: Iterator[int], times: Mapping[uuid.UUID, datetime] | None = None,
              ) -> tuple[dict[str, Alert | None], list[Effect]]:
    """The change, per rule, from the patient's stored alerts that the span touches (``stored``,
    by rule, in measurement order: the resolved ones with a breach in the span, then the
    unresolved one) to the replay's runs (:func:`replay`).

    A stored alert and a run are the same when they share a breach (or the run continues the
    alert). Each run with no stored alert is written: resolved within the span as history (the
    alert and its transitions, dated by the readings' times, not notified: it is over), or
    opened (its transitions, notified). A stored alert with its run takes the run's evidence
    (breaches, last value and reading, in-range count) and: is worsened when the run is worse;
    resolved when the run ended; opened again when the system resolved it but the run goes on
    (its late breaches came after the clears that resolved it). A stored alert with no run (its
    breaches no longer fire in measurement order) is resolved. Limits (never an open → resolve
    → open of what clinicians saw): a stored alert whose run the replay splits into several
    (late in-range readings between its breaches) stays one alert, with their evidence, and its
    severity is never lowered; stored alerts the replay joins into one run (a late breach
    between an alert the system resolved and a newer one) stay apart, the newest taking the
    run's evidence. Transitions already written stay written.

    Returns each touched rule's unresolved alert as it now stands (None: none) and the effects."""
    times = times or {}
    after: dict[str, Alert | None] = {}
    first: list[Effect] = []
    effects: list[Effect] = []
    for rule in sorted({*stored, *runs}):
        alerts = list(stored.get(rule, ()))
        eps = list(runs.get(rule, ()))
        after[rule] = None
        # Components of the overlap between stored alerts and runs (both in measurement order).
        owner: list[int | None] = []
        for ep in eps:
            hit = [i for i, a in enumerate(alerts)
                   if ep.alert.id == a.id or a.last_reading_id in ep.breaches
                   or not ep.breaches.isdisjoint(a.reading_ids)]
            owner.append(hit[-1] if hit else None)
        claimed = {i for i in owner if i is not None}
        for i, a in enumerate(alerts):
            if i not in claimed and a.state != "resolved":
                note = "genvurderet i målerækkefølge"
                done = dataclasses.replace(a, state="resolved", resolved_by="system", resolved_at=now,
                                           resolve_note=note, updated_at=now, escalation_due_at=None,
                                           inhibited_by=None)
                first += (Store(done), Record(done, "resolved", "system", now, note, a.state))
        # A stored alert the replay splits into several runs (late in-range readings between its
        # breaches) takes the last of them as severe as it (its severity is never lowered), else
        # the last; the others are alerts of their own.
        last_run: dict[int, int] = {}
        for n, o in enumerate(owner):
            if o is not None and (o not in last_run or eps[n].alert.severity == alerts[o].severity
                                  or eps[last_run[o]].alert.severity != alerts[o].severity):
                last_run[o] = n
        for i, n in last_run.items():
            out, now_open = _settle(patient, alerts[i], eps[n], now, routing)
            effects += out
            if now_open is not None:
                after[rule] = now_open
        for n, (ep, o) in enumerate(zip(eps, owner, strict=True)):
            if o is not None and last_run[o] == n:
                continue
            if ep.alert.state == "resolved":
                effects += _history(patient, ep, next(ids), times, now)
            else:
                new_id = next(ids)
                opened = dataclasses.replace(ep.alert, id=new_id)
                labels = labels_for(patient, rule_id=opened.rule_id, rule_kind=opened.rule_kind,
                                    severity=opened.severity, measurement=opened.measurement)
                recs = [dataclasses.replace(r, alert=dataclasses.replace(r.alert, id=new_id)) for r, _ in ep.records]
                effects += (Store(opened, new=True, labels=labels), *recs)
                if recs:
                    effects.append(Notify(recs[-1]))
                after[rule] = opened
    return after, [*first, *effects]


def _settle(patient: Patient, a: Alert, ep: Episode, now: datetime,
            routing: Router) -> tuple[list[Effect], Alert | None]:
    """A stored alert ``a`` brought to its run ``ep``: the effects, and the alert if it is
    unresolved afterwards."""
    f = ep.alert
    merged = _with_evidence(a, f)
    worse = SEVERITY_RANK[f.severity] < SEVERITY_RANK[a.severity]
    ended = f.state == "resolved"
    labels = labels_for(patient, rule_id=a.rule_id, rule_kind=a.rule_kind,
                        severity=f.severity if worse else a.severity, measurement=a.measurement)
    effects: list[Effect] = []
    if a.state == "resolved":
        if worse:  # over before its worst reading came: the row says how bad it got
            merged = dataclasses.replace(merged, severity=f.severity)
        if ended or a.resolved_by != "system":
            # Resolved, as in measurement order; or a clinician closed it, which stands (a newer
            # breach opens a new alert).
            if merged != a:
                effects.append(Store(dataclasses.replace(merged, updated_at=now), labels=labels if worse else None))
            return effects, None
        # Resolved by the system on in-range readings that a late breach has since interrupted:
        # the run goes on, so the alert is open again (the same alert; a kvittering stands).
        d = routing.decide(labels, now)
        moved = d.team != a.team_key
        acked = a.acknowledged_at is not None
        back = dataclasses.replace(
            merged, state="acknowledged" if acked else "open", resolved_by=None, resolved_at=None,
            resolve_note=None, updated_at=now, inhibited_by=None, team_key=d.team,
            escalate_to=tuple(d.escalate_to), escalation_level=0, escalation_due_at=None if acked else now + d.sla,
            owner_since=now if moved else a.owner_since)
        note = "genåbnet: en sen måling viser at forløbet ikke var slut; " + " › ".join(d.route_path)
        rec = Record(_as_raised(back, ep.peak), "opened", "system", now, note, "resolved",
                     a.team_key if moved else None)
        return [Store(back, labels=labels), rec, Notify(rec)], back
    if worse:
        d = routing.decide(labels, now)
        moved = d.team != a.team_key
        merged = dataclasses.replace(
            merged, severity=f.severity, state="open", updated_at=now, team_key=d.team,
            escalate_to=tuple(d.escalate_to), escalation_level=0, escalation_due_at=now + d.sla,
            owner_since=now if moved else a.owner_since)
        note = f"{a.severity} → {f.severity}; " + " › ".join(d.route_path)
        rec = Record(_as_raised(merged, ep.peak), "worsened", "system", now, note, a.state,
                     a.team_key if moved else None)
        effects += (Store(merged, labels=labels), rec)
        if not ended:
            effects.append(Notify(rec))
        a = merged
    if ended:
        note = f.resolve_note or "genvurderet i målerækkefølge"
        done = dataclasses.replace(merged, state="resolved", resolved_by="system", resolved_at=now,
                                   resolve_note=note, updated_at=now, escalation_due_at=None, inhibited_by=None)
        effects += (Store(done), Record(done, "resolved", "system", now, note, a.state))
        return effects, None
    if merged != a:
        merged = dataclasses.replace(merged, updated_at=now)
        effects += (Store(merged, narrow=True), Refresh(merged))
    return effects, merged


def _history(patient: Patient, ep: Episode, new_id: int, times: Mapping[uuid.UUID, datetime],
             now: datetime) -> list[Effect]:
    """A run the replay opened and resolved, as stored rows: the alert (resolved) and its
    transitions, dated by the readings behind them (as far as known; never after ``now``), with
    no notification (it is over)."""
    def at(rid: uuid.UUID | None) -> datetime:
        t = times.get(rid) if rid is not None else None
        return now if t is None or t > now else t

    recs = [dataclasses.replace(r, alert=dataclasses.replace(r.alert, id=new_id), at=at(rid)) for r, rid in ep.records]
    opened_at = recs[0].at if recs else now
    resolved_at = recs[-1].at if recs else now
    alert = dataclasses.replace(ep.alert, id=new_id, opened_at=opened_at, owner_since=opened_at,
                                resolved_at=resolved_at, updated_at=resolved_at)
    labels = labels_for(patient, rule_id=alert.rule_id, rule_kind=alert.rule_kind, severity=alert.severity,
                        measurement=alert.measurement)
    return [Store(alert, new=True, labels=labels), *recs]


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
    past: Iterable[Alert] = (), times: Mapping[uuid.UUID, datetime] | None = None,
    before: Sequence[Evaluated] | None = None,
) -> tuple[dict[str, Alert | None], list[Effect]]:
    """One patient's span in measurement order. ``current``: its unresolved alerts by rule;
    ``past``: its resolved alerts with a breach in the span; ``evaluated``: the span's
    already-evaluated readings; ``findings``: the span's findings (late and already-evaluated
    readings, in measurement order); ``times``: the readings' measurement times (to date
    history); ``before``: the evaluated readings just before the span (:func:`open_before`), when
    known. Each rule's earliest stored alert of the span is rewound (:func:`rewind`), the
    findings replayed on that copy (:func:`replay`), and the stored alerts brought to the
    replay's runs (:func:`reconcile`). Returns the touched rules' unresolved alerts as they now
    stand (None: none) and the effects, for the inhibition and grouping stages and the writer."""
    order = {e.reading_id: n for n, e in enumerate(evaluated)}
    stored: dict[str, list[Alert]] = {}
    for a in sorted(past, key=lambda a: (order.get(a.last_reading_id, -1) if a.last_reading_id else -1, a.id)):
        if a.state == "resolved":
            stored.setdefault(a.rule_id, []).append(a)
    for rule, a in current.items():
        stored.setdefault(rule, []).append(a)
    fired_before = None if before is None else {rule for e in before for rule in e.fired}
    start = {rule: rewind(alerts[0], evaluated, earlier=fired_before is None or rule in fired_before)
             for rule, alerts in stored.items()}
    return reconcile(patient, stored, replay(start, findings, now, routing), now, routing, ids=ids, times=times)
