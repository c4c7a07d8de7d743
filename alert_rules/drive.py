"""Driving the pure evaluator and state machine over readings: the one path the backend's engine
and ``nearcare rules replay`` share.

The engine (:mod:`backend.alerting.engine`) loads a batch from the database and writes the
effects; the replay (:mod:`alert_rules.replay`) keeps the same state in memory. Between those
edges both call these functions, so what replay shows is what production does:

- :func:`rules_for_kind`: which rules a reading of a kind can fire, and how far back they look;
- :func:`window`: the history a reading is evaluated against (measured before it or at the same instant, within reach);
- :func:`apply_findings`: each finding through :func:`alert_rules.lifecycle.transition`
  (a finding in range with no alert open is the common case and does nothing);
- :func:`settle_inhibition`: the inhibition stage over the patients whose alerts changed.
"""

from __future__ import annotations

import bisect
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta

from alert_rules.evaluate import Finding, Observation, history_hours
from alert_rules.lifecycle import Alert, Effect, Patient, PatientFinding, Router, apply_inhibition, inhibit, transition
from alert_rules.model import AnyRule, BatteryLowRule
from alert_rules.routing import RoutingConfig
from vitals.kinds import MeasurementKind

Actives = dict[tuple[int, str], Alert]
"""The unresolved alerts, by (patient id, rule id)."""


def rules_for_kind(rules: Sequence[AnyRule], kind: MeasurementKind) -> tuple[list[AnyRule], float]:
    """The rules a reading of ``kind`` can fire (what ``evaluate`` would pick itself), and the
    hours of history they look back."""
    picked = [r for r in rules if kind in r.measurement_kinds or isinstance(r, BatteryLowRule)]
    return picked, history_hours(picked)


def window(times: Sequence[datetime], observations: Sequence[Observation], at: datetime,
           hours: float, *, reading: str | None = None) -> Sequence[Observation]:
    """The observations measured no more than ``hours`` before ``at``, up to and including ``at``
    itself, except the reading being evaluated (id ``reading``); ``times`` are the observations'
    times, ascending.

    Readings taken at the same instant belong together: an oximeter reports SpO2 and pulse as one
    measurement, so the pulse reading's evaluation sees the SpO2 taken with it (and the other way
    round), never only yesterday's. Both paths hand in every stored reading of the citizen up to
    ``at`` (the engine from the database, the replay from its input), so both see the same."""
    cut = bisect.bisect_right(times, at)
    first = bisect.bisect_left(times, at - timedelta(hours=hours), 0, cut)
    out = observations[first:cut]
    if reading is None or not out or times[cut - 1] != at:
        return out
    return [o for o in out if o.id != reading]


def step(actives: Actives, key: tuple[int, str], active: Alert | None, pf: PatientFinding, now: datetime,
         router: Router, ids: Iterator[int], effects: list[Effect], settle: set[int]) -> None:
    """One finding through the state machine; the patient joins ``settle`` when its set of
    alerts or a severity changed (the inhibition stage then runs for it)."""
    alert, out = transition(active, pf, now, router, ids=ids)
    if not out:
        return
    effects += out
    if alert is None or alert.state == "resolved":
        actives.pop(key, None)
        settle.add(key[0])
    else:
        actives[key] = alert
        if active is None or alert.severity != active.severity:
            settle.add(key[0])


def apply_findings(actives: Actives, patient_id: int, patient: Patient, findings: Sequence[Finding],
                   reading_id: uuid.UUID | None, rules_by_id: Mapping[str, AnyRule], now: datetime, router: Router,
                   ids: Iterator[int], effects: list[Effect], settle: set[int]) -> None:
    """One reading's findings through the state machine, in order (each rule's
    ``auto_resolve_after`` from ``rules_by_id``)."""
    for f in findings:
        key = (patient_id, f.rule_id)
        active = actives.get(key)
        if active is None and not f.fired:
            continue  # in range, nothing open: the common case
        pf = PatientFinding(patient, f, reading_id, rules_by_id[f.rule_id].auto_resolve_after)
        step(actives, key, active, pf, now, router, ids, effects, settle)


def settle_inhibition(actives: Actives, settle: set[int], patients: Mapping[int, Patient],
                      config: RoutingConfig, now: datetime, router: Router, effects: list[Effect]) -> None:
    """The inhibition stage for the patients in ``settle``: muted alerts stored and refreshed."""
    if not settle or not config.inhibit_rules:
        return
    mine: dict[int, list[Alert]] = {}
    for (pid, _rule), a in actives.items():
        if pid in settle:
            mine.setdefault(pid, []).append(a)
    for pid in settle:
        muted = inhibit(mine.get(pid, []), patients[pid], config)
        changed, more = apply_inhibition(mine.get(pid, []), muted, now, router)
        effects += more
        for a in changed.values():
            actives[(pid, a.rule_id)] = a
