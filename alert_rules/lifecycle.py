"""The alert state machine, pure: what one finding or one clinician's action does to an alert.

No I/O and no clock: ``now`` is passed in, routing is a value (:class:`Router`), and new alert
ids come from an iterator the caller owns. The backend runs every alert change through these
functions and persists the effects with one batch writer; ``nearcare rules replay`` runs the
same functions over history, so what replay shows is what production does.

The pipeline, in Alertmanager's order, for one batch (a set of readings, or one scheduled check):

1. :func:`transition` per (patient, rule) finding, and :func:`apply_action` per clinician
   action or escalation: the alert as it now stands and its effects.
2. :func:`inhibit` over each touched patient's unresolved alerts, applied with
   :func:`apply_inhibition`: which alerts are muted, and the notifications that are dropped.
3. :func:`group`: one stored row and at most one live-worklist refresh per alert.
4. The writer (backend) persists the effects in one transaction.

Identity is (patient, rule): at most one unresolved alert per pair; a worse breach updates
and re-routes the open alert, it never opens a second one.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from alert_rules.errors import AlertRulesError
from alert_rules.evaluate import Finding
from alert_rules.model import SEVERITY_RANK
from alert_rules.routing import Decision, RoutingConfig, inhibited_by, route

log = logging.getLogger(__name__)

NOTIFY_ACTIONS = frozenset({"opened", "worsened", "escalated", "sla_breached"})
"""Transitions that are sent to the owning team (webhook, e-mail) unless the alert is muted."""
KEEP_READING_IDS = 20
"""The readings an alert remembers (for the "seen" receipt and the history)."""


class ActionRefused(AlertRulesError):
    """An action that does not fit the alert's state (acknowledging a resolved alert, a snooze
    that ends in the past)."""


@dataclass(frozen=True, slots=True)
class Patient:
    """What the state machine needs to know about the citizen: the routing labels."""

    id: int
    programme: str
    municipality: str
    department: str | None = None
    external_ref: str = ""
    """The citizen's reference in the notification payload (never a name or a value)."""


@dataclass(frozen=True, slots=True)
class Alert:
    """The state of one alert (one row of ``alerts``)."""

    id: int
    patient_id: int
    rule_id: str
    rule_kind: str
    measurement: str | None
    severity: str
    state: str
    """open, acknowledged or resolved."""
    title: str
    opened_at: datetime
    updated_at: datetime
    last_value: float | None
    last_reading_id: uuid.UUID | None
    reading_ids: tuple[uuid.UUID, ...]
    breach_count: int
    thresholds: dict[str, Any]
    detail: dict[str, Any]
    team_key: str
    owner_since: datetime
    escalation_level: int
    escalation_due_at: datetime | None
    escalate_to: tuple[str, ...]
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    ack_note: str | None
    resolved_by: str | None
    resolved_at: datetime | None
    resolve_note: str | None
    snoozed_until: datetime | None
    snooze_reason: str | None
    inhibited_by: int | None
    in_range_count: int = 0
    """Readings (or checks) back in range since the last breach: auto-resolve counts these."""

    @property
    def active(self) -> bool:
        return self.state != "resolved"

    def snoozed(self, now: datetime) -> bool:
        """Held back by a snooze at ``now`` (a snooze simply expires: nothing is written then)."""
        return self.snoozed_until is not None and self.snoozed_until > now


@dataclass(frozen=True, slots=True)
class PatientFinding:
    """What the evaluator found for one (patient, rule) at one reading or one scheduled check."""

    patient: Patient
    finding: Finding
    """``finding.severity`` None: back in range (a clear); otherwise a breach."""
    reading_id: uuid.UUID | None = None
    """The reading behind it; None for a scheduled check (missed measurement, technical)."""
    resolve_after: int = 2
    """The rule's ``auto_resolve_after``: clears that resolve the alert; 0: only a clinician does."""
    repeat: Literal["fold", "record", "keep"] = "fold"
    """What a breach no worse than the open alert does: ``fold`` it in (new value, a live
    refresh, no transition: a reading), ``record`` an "updated" transition (a new missed
    slot), or ``keep`` the alert as it is (a standing technical condition)."""
    resolve_note: str | None = None
    """The note of an auto-resolve; default: "N målinger tilbage inden for grænserne"."""


@dataclass(frozen=True, slots=True)
class Router:
    """Routing as a value: the route tree, plus the teams the backend knows (a snapshot of the
    teams table). With no known teams, every receiver is accepted (replay, tests)."""

    config: RoutingConfig
    municipal: Mapping[str, str] = field(default_factory=dict)
    """Normalised municipality -> municipal team key (after ``config.municipal_teams``)."""
    teams: frozenset[str] = frozenset()

    def decide(self, labels: Mapping[str, str], at: datetime) -> Decision:
        d = route(self.config, labels, at=at, municipal_lookup=self.municipal)
        if not self.teams:
            return d
        team = d.team
        if team not in self.teams:
            log.error("routing chose unknown team %r for %s; using fallback %r", team, labels.get("rule"),
                      self.config.fallback_team)
            team = self.config.fallback_team
        chain = tuple(t for t in d.escalate_to if t in self.teams)
        return dataclasses.replace(d, team=team, escalate_to=chain)

    def sla(self, severity: str) -> timedelta:
        """The default SLA of a severity (an escalation's next step, an un-muted alert)."""
        return timedelta(minutes=cast(dict[str, int], self.config.sla_minutes)[severity])


# Effects: what the writer persists. Frozen values; order matters only within one alert.


@dataclass(frozen=True, slots=True)
class Store:
    """The alert row as it now stands: inserted when ``new``, else updated (last one wins)."""

    alert: Alert
    new: bool = False
    labels: Mapping[str, str] | None = None
    """The routing labels, when (re)routed; None: unchanged."""
    narrow: bool = False
    """Only the breach columns changed (value, readings, counts, thresholds, detail, updated_at):
    the writer may store just those (the common case: a repeat breach, a reading in range)."""


@dataclass(frozen=True, slots=True)
class Record:
    """One ``alert_transitions`` row, its events-log row and the live-worklist event."""

    alert: Alert
    """The alert right after this transition."""
    action: str
    """opened, updated, worsened, acknowledged, snoozed, resolved, escalated, sla_breached."""
    actor: str
    at: datetime
    note: str | None = None
    from_state: str | None = None
    from_team: str | None = None
    """The team that handed the alert over (escalation, re-routing)."""


@dataclass(frozen=True, slots=True)
class Notify:
    """Send a transition to the owning team (webhook, e-mail), unless the alert ends the batch muted."""

    record: Record


@dataclass(frozen=True, slots=True)
class Refresh:
    """A live-worklist "updated" event with no transition (a repeat breach, a change of muting)."""

    alert: Alert


Effect = Store | Record | Notify | Refresh


def labels_for(patient: Patient, *, rule_id: str, rule_kind: str, severity: str,
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


def alert_labels(patient: Patient, alert: Alert) -> dict[str, str]:
    return labels_for(patient, rule_id=alert.rule_id, rule_kind=alert.rule_kind, severity=alert.severity,
                      measurement=alert.measurement)


def transition(
    open_alert: Alert | None, finding: PatientFinding, now: datetime, routing: Router, *, ids: Iterator[int],
) -> tuple[Alert | None, tuple[Effect, ...]]:
    """One finding applied to the (patient, rule)'s unresolved alert (or None).

    Returns the alert as it now stands (``state == "resolved"`` when this resolved it; None
    when there is none) and the effects to persist. ``ids`` gives a new alert its id; it is
    advanced only when an alert opens."""
    f = finding.finding
    if open_alert is not None and open_alert.state == "resolved":
        raise ValueError(f"alert {open_alert.id} is resolved: pass None for a (patient, rule) with no open alert")
    if f.severity is None:
        return _clear(open_alert, finding, now)
    if open_alert is None:
        return _open(finding, now, routing, next(ids))
    if SEVERITY_RANK[f.severity] < SEVERITY_RANK[open_alert.severity]:
        return _worsen(open_alert, finding, now, routing)
    return _repeat(open_alert, finding, now)


def _clear(alert: Alert | None, pf: PatientFinding, now: datetime) -> tuple[Alert | None, tuple[Effect, ...]]:
    if alert is None or pf.resolve_after <= 0:
        return alert, ()
    count = alert.in_range_count + 1
    if count < pf.resolve_after:
        counted = dataclasses.replace(alert, in_range_count=count)
        return counted, (Store(counted, narrow=True),)
    note = pf.resolve_note or f"{count} målinger tilbage inden for grænserne"
    resolved = _resolved(alert, by="system", note=note, now=now, in_range_count=count)
    return resolved, (Store(resolved), Record(resolved, "resolved", "system", now, note, alert.state))


def _resolved(alert: Alert, *, by: str, note: str, now: datetime, in_range_count: int | None = None) -> Alert:
    return dataclasses.replace(
        alert, state="resolved", resolved_by=by, resolved_at=now, resolve_note=note, updated_at=now,
        escalation_due_at=None, inhibited_by=None,
        in_range_count=alert.in_range_count if in_range_count is None else in_range_count)


def _open(pf: PatientFinding, now: datetime, routing: Router, new_id: int) -> tuple[Alert, tuple[Effect, ...]]:
    f = pf.finding
    assert f.severity is not None
    labels = labels_for(pf.patient, rule_id=f.rule_id, rule_kind=f.rule_kind, severity=f.severity,
                        measurement=f.measurement)
    d = routing.decide(labels, now)
    alert = Alert(
        id=new_id, patient_id=pf.patient.id, rule_id=f.rule_id, rule_kind=f.rule_kind, measurement=f.measurement,
        severity=f.severity, state="open", title=f.title, opened_at=now, updated_at=now, last_value=f.value,
        last_reading_id=pf.reading_id, reading_ids=(pf.reading_id,) if pf.reading_id else (), breach_count=1,
        thresholds=dict(f.thresholds), detail=dict(f.detail), team_key=d.team, owner_since=now, escalation_level=0,
        escalation_due_at=now + d.sla, escalate_to=tuple(d.escalate_to), acknowledged_by=None, acknowledged_at=None,
        ack_note=None, resolved_by=None, resolved_at=None, resolve_note=None, snoozed_until=None, snooze_reason=None,
        inhibited_by=None,
    )
    rec = Record(alert, "opened", "system", now, " › ".join(d.route_path))
    return alert, (Store(alert, new=True, labels=labels), rec, Notify(rec))


def _breached(alert: Alert, pf: PatientFinding, now: datetime) -> Alert:
    """The alert with this breach's value and reading (severity and owner unchanged)."""
    f = pf.finding
    rid = pf.reading_id
    # Each reading is decided once (the engine skips readings already evaluated), so it is
    # never in the list yet.
    kept = (*alert.reading_ids, rid) if rid else alert.reading_ids
    return dataclasses.replace(
        alert, updated_at=now, last_value=f.value, last_reading_id=rid or alert.last_reading_id,
        reading_ids=kept[-KEEP_READING_IDS:], breach_count=alert.breach_count + 1, in_range_count=0,
        thresholds=dict(f.thresholds), detail=dict(f.detail),
    )


def _repeat(alert: Alert, pf: PatientFinding, now: datetime) -> tuple[Alert, tuple[Effect, ...]]:
    # A breach no worse than the alert: nothing a clinician must act on anew, so the owner,
    # the kvittering and the escalation clock all stand.
    if pf.repeat == "keep":
        return alert, ()
    updated = _breached(alert, pf, now)
    if pf.repeat == "record":
        return updated, (Store(updated, narrow=True), Record(updated, "updated", "system", now, None, alert.state))
    return updated, (Store(updated, narrow=True), Refresh(updated))


def _worsen(alert: Alert, pf: PatientFinding, now: datetime, routing: Router) -> tuple[Alert, tuple[Effect, ...]]:
    # Worse than before: it needs fresh eyes, so a kvittering no longer covers it; route it again.
    f = pf.finding
    assert f.severity is not None
    labels = labels_for(pf.patient, rule_id=f.rule_id, rule_kind=f.rule_kind, severity=f.severity,
                        measurement=f.measurement)
    d = routing.decide(labels, now)
    moved = d.team != alert.team_key
    worse = dataclasses.replace(
        _breached(alert, pf, now), severity=f.severity, state="open", team_key=d.team,
        escalate_to=tuple(d.escalate_to), escalation_level=0, escalation_due_at=now + d.sla,
        owner_since=now if moved else alert.owner_since,
    )
    note = f"{alert.severity} → {f.severity}; " + " › ".join(d.route_path)
    rec = Record(worse, "worsened", "system", now, note, alert.state, alert.team_key if moved else None)
    return worse, (Store(worse, labels=labels), rec, Notify(rec))


# Actions: a clinician's (kvittering, snooze, resolve) or the clock's (escalation).


@dataclass(frozen=True, slots=True)
class Acknowledge:
    """Kvittering: who, when, note. Stops escalation; the alert stays on the worklist until resolved."""

    by: str
    note: str


@dataclass(frozen=True, slots=True)
class Snooze:
    """Hold the alert back until ``until``: no escalation meanwhile; its SLA starts again then."""

    by: str
    until: datetime
    reason: str
    sla: timedelta
    """The alert's SLA, counted from the end of the snooze."""


@dataclass(frozen=True, slots=True)
class Resolve:
    by: str
    note: str


@dataclass(frozen=True, slots=True)
class Escalate:
    """The SLA passed with no kvittering: hand over to the next team, or remind the owner once."""

    sla: timedelta
    """The SLA the next owner gets."""
    owner_name: str
    """The current owner's name, for the handover note."""


Action = Acknowledge | Snooze | Resolve | Escalate


def escalation_due(alert: Alert, now: datetime) -> bool:
    """Past its SLA with no kvittering: open, not muted, not snoozed at ``now``."""
    return (alert.state == "open" and alert.escalation_due_at is not None and alert.escalation_due_at <= now
            and alert.inhibited_by is None and not alert.snoozed(now))


def apply_action(alert: Alert, action: Action, now: datetime) -> tuple[Alert, tuple[Effect, ...]]:
    """One action applied to an alert; :class:`ActionRefused` when it does not fit the state."""
    if isinstance(action, Acknowledge):
        if alert.state != "open":
            raise ActionRefused(f"alert {alert.id} is {alert.state}; only an open alert can be acknowledged")
        acked = dataclasses.replace(alert, state="acknowledged", acknowledged_by=action.by, acknowledged_at=now,
                                    ack_note=action.note, escalation_due_at=None, updated_at=now)
        return acked, (Store(acked), Record(acked, "acknowledged", action.by, now, action.note, "open"))
    if isinstance(action, Snooze):
        if action.until <= now:
            raise ActionRefused("a snooze must end in the future")
        if not action.reason.strip():
            raise ActionRefused("a snooze needs a reason")
        if alert.state == "resolved":
            raise ActionRefused(f"alert {alert.id} is resolved")
        due = action.until + action.sla if alert.state == "open" else None
        held = dataclasses.replace(alert, snoozed_until=action.until, snooze_reason=action.reason,
                                   escalation_due_at=due, updated_at=now)
        note = f"{action.reason} (til {action.until.isoformat()})"
        return held, (Store(held), Record(held, "snoozed", action.by, now, note, alert.state))
    if isinstance(action, Resolve):
        if alert.state == "resolved":
            raise ActionRefused(f"alert {alert.id} is already resolved")
        done = _resolved(alert, by=action.by, note=action.note, now=now)
        return done, (Store(done), Record(done, "resolved", action.by, now, action.note, alert.state))
    if not escalation_due(alert, now):
        return alert, ()
    if alert.escalate_to:
        nxt, rest = alert.escalate_to[0], alert.escalate_to[1:]
        handed = dataclasses.replace(alert, team_key=nxt, owner_since=now, escalate_to=rest,
                                     escalation_level=alert.escalation_level + 1,
                                     escalation_due_at=now + action.sla, updated_at=now)
        late = now - (alert.escalation_due_at or now)
        note = f"ingen kvittering fra {action.owner_name} inden for SLA" + (
            f" (afviklet {int(late.total_seconds() // 60)} min. for sent)" if late > action.sla else "")
        rec = Record(handed, "escalated", "system", now, note, alert.state, alert.team_key)
        return handed, (Store(handed), rec, Notify(rec))
    # Nobody further up: the owner keeps it, is reminded once, and it stays visible.
    kept = dataclasses.replace(alert, escalation_due_at=None, updated_at=now)
    rec = Record(kept, "sla_breached", "system", now, "SLA overskredet; ingen videre eskalering", alert.state)
    return kept, (Store(kept), rec, Notify(rec))


# Pipeline stages over one patient's alerts, after the transitions of a batch.


def inhibit(alerts: Sequence[Alert], patient: Patient, config: RoutingConfig) -> dict[int, int]:
    """Which of the patient's unresolved ``alerts`` are muted, and by which alert (Alertmanager's
    inhibit rules: a source alert mutes a target alert with the ``equal`` labels)."""
    if not config.inhibit_rules:
        return {}
    live = [(a.id, alert_labels(patient, a)) for a in alerts if a.state != "resolved"]
    muted: dict[int, int] = {}
    for aid, labels in live:
        by = inhibited_by(config, labels, [(i, lb) for i, lb in live if i != aid])
        if isinstance(by, int):
            muted[aid] = by
    return muted


def apply_inhibition(alerts: Iterable[Alert], muted: Mapping[int, int], now: datetime,
                     routing: Router) -> tuple[dict[int, Alert], tuple[Effect, ...]]:
    """The alerts whose muting changed, and their effects. An alert un-muted while open gets a
    fresh SLA from now: it was nobody's to answer while muted."""
    changed: dict[int, Alert] = {}
    effects: list[Effect] = []
    for a in alerts:
        if a.state == "resolved":
            continue
        by = muted.get(a.id)
        if by == a.inhibited_by:
            continue
        if by is None:
            due = now + routing.sla(a.severity) if a.state == "open" else a.escalation_due_at
            b = dataclasses.replace(a, inhibited_by=None, escalation_due_at=due)
        else:
            b = dataclasses.replace(a, inhibited_by=by)
        changed[a.id] = b
        effects += (Store(b), Refresh(b))
    return changed, tuple(effects)


def group(effects: Iterable[Effect]) -> list[Effect]:
    """A batch's effects grouped per alert: one :class:`Store` per alert (its last state, new if
    any was new, the latest labels, narrow only if every change was), records in order,
    notifications only for alerts that end the batch unmuted, and a :class:`Refresh` only for an
    alert with no transition in the batch (a transition carries its own live event)."""
    effects = list(effects)
    last: dict[int, Store] = {}
    recorded: set[int] = set()
    for e in effects:
        if type(e) is Store:
            aid = e.alert.id
            prev = last.get(aid)
            if prev is not None and (prev.new or prev.labels is not None or not prev.narrow):
                e = Store(e.alert, new=prev.new or e.new, labels=e.labels if e.labels is not None else prev.labels,
                          narrow=prev.narrow and e.narrow)
            last[aid] = e
        elif type(e) is Record:
            recorded.add(e.alert.id)
    out: list[Effect] = list(last.values())
    refreshed: set[int] = set()
    for e in effects:
        if type(e) is Record:
            # The live event says whether the alert is muted as the batch leaves it.
            final = last.get(e.alert.id)
            muted = final.alert.inhibited_by if final is not None and e.alert.state != "resolved" else None
            out.append(e if muted == e.alert.inhibited_by
                       else dataclasses.replace(e, alert=dataclasses.replace(e.alert, inhibited_by=muted)))
        elif type(e) is Notify:
            final = last.get(e.record.alert.id)
            if (final.alert if final is not None else e.record.alert).inhibited_by is None:
                out.append(e)
        elif type(e) is Refresh:
            aid = e.alert.id
            if aid not in recorded and aid not in refreshed:
                refreshed.add(aid)
                final = last.get(aid)
                out.append(e if final is None or final.alert is e.alert else Refresh(final.alert))
    return out


def settle(patient: Patient, alerts: Mapping[int, Alert], effects: Sequence[Effect], now: datetime,
           routing: Router) -> tuple[dict[int, Alert], list[Effect]]:
    """Stages 2 and 3 for one patient: inhibition over ``alerts`` (the patient's alerts after
    the batch's transitions, by id), then grouping. Returns the alerts as they now stand and
    the effects to write."""
    muted = inhibit(list(alerts.values()), patient, routing.config)
    changed, more = apply_inhibition(alerts.values(), muted, now, routing)
    return {**alerts, **changed}, group([*effects, *more])


def run_batch(
    patient: Patient, alerts: Mapping[str, Alert], findings: Iterable[PatientFinding], now: datetime,
    routing: Router, *, ids: Iterator[int],
) -> tuple[dict[str, Alert], list[Effect]]:
    """One patient's batch through the whole pipeline: each finding's :func:`transition` in
    order, then inhibition and grouping (:func:`settle`). ``alerts`` are the patient's unresolved
    alerts by rule id; returns them as the batch leaves them, and the effects to write."""
    current = dict(alerts)
    effects: list[Effect] = []
    for pf in findings:
        rule = pf.finding.rule_id
        alert, out = transition(current.get(rule), pf, now, routing, ids=ids)
        effects += out
        if alert is None or alert.state == "resolved":
            current.pop(rule, None)
        else:
            current[rule] = alert
    if not effects:
        return current, []
    final, grouped = settle(patient, {a.id: a for a in current.values()}, effects, now, routing)
    return {a.rule_id: a for a in final.values()}, grouped
