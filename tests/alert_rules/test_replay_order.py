"""Evaluation in measurement order (alert_rules.order) on a fixed clock: readings that arrive
late are evaluated in their place, against an evaluation of the same readings in measurement
order. No database: the shipped rules and routing, and a citizen driven the way the engine
drives one."""

from __future__ import annotations

import dataclasses
import itertools
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from alert_rules.evaluate import Context, Observation, evaluate
from alert_rules.lifecycle import Alert, Effect, Notify, Patient, PatientFinding, Record, Router, Store, run_batch
from alert_rules.loader import ROUTING_FILE, Ruleset, default_dir, load_model, load_ruleset
from alert_rules.order import OPEN_BEFORE_READINGS, Evaluated, open_before, reach_back, replay_in_order, rewind
from alert_rules.routing import RoutingConfig
from vitals.kinds import MeasurementKind

CPH = ZoneInfo("Europe/Copenhagen")
PREVIOUS = default_dir() / "previous"
T0 = datetime(2026, 11, 24, 11, 0, tzinfo=CPH)
NOW = datetime(2026, 11, 24, 12, 30, tzinfo=CPH)  # the wall clock of every batch: fixed
SPO2 = "copd.spo2.absolute"
WEIGHT = "heart_failure.weight.trend"


@pytest.fixture(scope="module")
def rules() -> Ruleset:
    # The state machine and the rule kinds (absolute yellow/red bands, baseline, trend) on the
    # previous packaged defaults, kept in alert_rules/previous: the shipped defaults have no
    # absolute yellow SpO2 band or baseline rule any more (issue 11).
    return load_ruleset(PREVIOUS)


@pytest.fixture(scope="module")
def router() -> Router:
    return Router(config=load_model(default_dir() / ROUTING_FILE, RoutingConfig))


class Citizen:
    """One patient's readings evaluated batch by batch as the engine does: a batch with no late
    reading through ``run_batch`` in measurement order; a batch with late readings (older than
    the newest evaluated one) replayed from the earliest late one with ``replay_in_order``."""

    def __init__(self, rules: Ruleset, router: Router, programme: str = "copd") -> None:
        self.rules = rules
        self.router = router
        self.patient = Patient(id=7, programme=programme, municipality="Aarhus", external_ref="t-7")
        self.alerts: dict[str, Alert] = {}
        self.ids: Iterator[int] = itertools.count(100)
        self.history: list[Observation] = []
        self.evaluated: dict[str, tuple[Observation, Evaluated]] = {}
        self.log: list[Effect] = []
        self.stored: dict[int, Alert] = {}
        self.replays = 0

    def _findings(self, obs: Observation) -> list[PatientFinding]:
        ctx = Context(self.patient.programme, history=tuple(o for o in self.history if o.measured_at < obs.measured_at))
        found = evaluate(self.rules.rules_for(self.patient.programme), ctx, obs)
        assert obs.id is not None
        rid = uuid.UUID(obs.id)
        # Written once, as the engine writes evaluation rows: a replayed reading keeps its own.
        self.evaluated.setdefault(obs.id, (obs, Evaluated(rid, frozenset(f.rule_id for f in found if f.fired),
                                                 frozenset(f.rule_id for f in found if not f.fired))))
        return [PatientFinding(self.patient, f, rid, self.rules.rule(f.rule_id).auto_resolve_after) for f in found]

    def arrive(self, batch: Sequence[Observation]) -> list[Effect]:
        newest = max((o.measured_at for o, _ in self.evaluated.values()), default=None)
        late = [o for o in batch if newest is not None and o.measured_at < newest]
        self.history = sorted([*self.history, *batch], key=lambda o: o.measured_at)
        if not late:
            findings = [f for o in sorted(batch, key=lambda o: o.measured_at) for f in self._findings(o)]
            self.alerts, effects = run_batch(self.patient, self.alerts, findings, NOW, self.router, ids=self.ids)
        else:
            self.replays += 1
            since = min(o.measured_at for o in late)
            evaluated = sorted(self.evaluated.values(), key=lambda x: x[0].measured_at)
            resolve_after = {r.id: r.auto_resolve_after for r in self.rules.rules_for(self.patient.programme)}
            for _ in range(3):  # as the engine: reach back to a breach of each run the span continues
                span = [(o, e) for o, e in evaluated if o.measured_at >= since]
                before = [e for o, e in evaluated if o.measured_at < since][-OPEN_BEFORE_READINGS:]
                past = self._past(span)
                back = reach_back([*self.alerts.values(), *past], [e for _, e in span])
                back += open_before(before, resolve_after)
                earlier = min([since, *(self.evaluated[str(i)][0].measured_at for i in back)])
                if earlier >= since:
                    break
                since = earlier
            span = [(o, e) for o, e in evaluated if o.measured_at >= since]
            before = [e for o, e in evaluated if o.measured_at < since][-OPEN_BEFORE_READINGS:]
            readings = sorted([*batch, *(o for o, _ in span)], key=lambda o: o.measured_at)
            findings = [f for o in readings for f in self._findings(o)]
            times = {uuid.UUID(o.id or ""): o.measured_at for o in readings}
            after, effects = replay_in_order(self.patient, self.alerts, [e for _, e in span], findings, NOW,
                                             self.router, ids=self.ids, past=self._past(span), times=times,
                                             before=before)
            for rule, a in after.items():
                if a is None:
                    self.alerts.pop(rule, None)
                else:
                    self.alerts[rule] = a
        self.log += effects
        for e in effects:
            if isinstance(e, Store):
                self.stored[e.alert.id] = e.alert
        return effects

    def _past(self, span: Sequence[tuple[Observation, Evaluated]]) -> list[Alert]:
        """The resolved alerts with a breach in the span (as the engine reads them)."""
        ids = {e.reading_id for _, e in span}
        return [a for _, a in sorted(self.stored.items()) if a.state == "resolved" and ids & set(a.reading_ids)]

    def records(self, rule_id: str) -> list[tuple[str, str]]:
        return [(e.action, e.alert.severity) for e in self.log if isinstance(e, Record) and e.alert.rule_id == rule_id]

    def records_of(self, alert_id: int) -> list[tuple[str, str]]:
        return [(e.action, e.alert.severity) for e in self.log if isinstance(e, Record) and e.alert.id == alert_id]

    def rows(self, rule_id: str) -> list[tuple[object, ...]]:
        """The rule's stored alerts in measurement order (of their newest breach), as the
        fault test compares them."""
        at = {uuid.UUID(o.id or ""): o.measured_at for o in self.history}
        alerts = sorted((a for a in self.stored.values() if a.rule_id == rule_id),
                        key=lambda a: at[a.last_reading_id] if a.last_reading_id else T0)
        return [(a.state, a.severity, a.last_value, a.last_reading_id, a.breach_count, a.in_range_count)
                for a in alerts]

    def state(self, rule_id: str) -> tuple[object, ...] | None:
        a = self.alerts.get(rule_id)
        if a is None:
            return None
        return (a.state, a.severity, a.last_value, a.last_reading_id, a.reading_ids, a.breach_count, a.in_range_count)


def spo2(at: datetime, value: float) -> Observation:
    return Observation(MeasurementKind.SPO2, {"spo2": value}, at, id=str(uuid.uuid4()))


def weight(at: datetime, value: float) -> Observation:
    return Observation(MeasurementKind.WEIGHT, {"weight": value}, at, id=str(uuid.uuid4()))


def in_order(rules: Ruleset, router: Router, readings: Sequence[Observation], programme: str = "copd") -> Citizen:
    c = Citizen(rules, router, programme)
    for o in sorted(readings, key=lambda o: o.measured_at):
        c.arrive([o])
    return c


def newest_first(rules: Ruleset, router: Router, readings: Sequence[Observation], size: int,
                 programme: str = "copd") -> Citizen:
    """The batches of ``size`` readings arrive newest batch first (two ingest workers draining
    a backlog, the catch-up job finding the older ones later)."""
    ordered = sorted(readings, key=lambda o: o.measured_at)
    batches = [ordered[i:i + size] for i in range(0, len(ordered), size)]
    c = Citizen(rules, router, programme)
    for b in reversed(batches):
        c.arrive(b)
    return c


def test_the_red_reading_first_then_199_older_in_range_ones_is_one_red_alert_never_resolved(
    rules: Ruleset, router: Router,
) -> None:
    readings = [spo2(T0 + timedelta(seconds=i), 96.0 if i < 199 else 80.0) for i in range(200)]
    scrambled = newest_first(rules, router, readings, size=30)
    reference = in_order(rules, router, readings)
    assert scrambled.replays == 6
    assert scrambled.records(SPO2) == reference.records(SPO2) == [("opened", "red")]
    assert scrambled.state(SPO2) == reference.state(SPO2)
    assert scrambled.state(SPO2) is not None and scrambled.state(SPO2)[:3] == ("open", "red", 80.0)  # type: ignore[index]


def test_late_in_range_readings_never_resolve_an_alert_whose_newest_evidence_is_a_breach(
    rules: Ruleset, router: Router,
) -> None:
    # 88 % opened a yellow alert; 87 % is the newest reading; the 96 % readings between them come late.
    first, last = spo2(T0, 88.0), spo2(T0 + timedelta(minutes=10), 87.0)
    middle = [spo2(T0 + timedelta(minutes=m), 96.0) for m in range(1, 10)]
    c = Citizen(rules, router)
    c.arrive([first])
    c.arrive([last])
    alert = c.alerts[SPO2]
    for o in middle:
        c.arrive([o])
    # The open alert is never resolved, never opened again ...
    assert c.records_of(alert.id) == [("opened", "yellow")]
    after = c.alerts[SPO2]
    assert (after.id, after.state, after.severity, after.opened_at) == (alert.id, "open", "yellow", alert.opened_at)
    # The newest evidence is the 87 % reading; in measurement order the 96 % readings ended the
    # 88 % run, so the alert's run is the 87 % reading alone (as an in-order evaluation has it).
    assert (after.last_value, after.reading_ids, after.breach_count, after.in_range_count) == (
        87.0, (uuid.UUID(last.id or ""),), 1, 0)
    reference = in_order(rules, router, [first, *middle, last])
    assert reference.state(SPO2) == c.state(SPO2)
    # ... and the 88 % run the late readings ended is an alert of its own, as in measurement order:
    # resolved, with its transitions dated by its readings, nobody notified (it is over).
    assert c.rows(SPO2) == reference.rows(SPO2)
    episode = [a for a in c.stored.values() if a.rule_id == SPO2 and a.id != alert.id]
    assert len(episode) == 1 and episode[0].state == "resolved" and episode[0].last_value == 88.0
    assert c.records_of(episode[0].id) == [("opened", "yellow"), ("resolved", "yellow")]
    assert [e.at for e in c.log if isinstance(e, Record) and e.alert.id == episode[0].id] == [
        T0, T0 + timedelta(minutes=2)]
    assert not [e for e in c.log if isinstance(e, Notify) and e.record.alert.id == episode[0].id]


def test_a_late_breach_that_newer_in_range_readings_resolved_is_history_not_an_open_alert(
    rules: Ruleset, router: Router,
) -> None:
    newer = [spo2(T0 + timedelta(minutes=5), 96.0), spo2(T0 + timedelta(minutes=6), 97.0)]
    late = spo2(T0, 80.0)
    c = Citizen(rules, router)
    c.arrive(newer)
    effects = c.arrive([late])
    # Opened and auto-resolved within the span: stored as the episode it was, nothing left open,
    # nobody notified (it is over), as an evaluation in measurement order records it.
    assert c.alerts == {} and not [e for e in effects if isinstance(e, Notify)]
    assert c.records(SPO2) == [("opened", "red"), ("resolved", "red")]
    stored = [e.alert for e in effects if isinstance(e, Store) and e.alert.rule_id == SPO2]
    assert [(a.state, a.last_value, a.last_reading_id, a.in_range_count) for a in stored] == [
        ("resolved", 80.0, uuid.UUID(late.id or ""), 2)]
    assert stored[0].id > 0 and all(e.alert.id == stored[0].id for e in effects
                                    if isinstance(e, Record) and e.alert.rule_id == SPO2)
    reference = in_order(rules, router, [late, *newer])
    assert reference.records(SPO2) == c.records(SPO2)
    # One newer in-range reading is not enough to resolve it (auto_resolve_after 2): it opens, as in order.
    c = Citizen(rules, router)
    c.arrive([spo2(T0 + timedelta(minutes=5), 96.0)])
    late = spo2(T0, 80.0)
    c.arrive([late])
    assert c.records(SPO2) == [("opened", "red")]
    a = c.alerts[SPO2]
    assert (a.state, a.last_value, a.last_reading_id, a.in_range_count) == ("open", 80.0, uuid.UUID(late.id or ""), 1)


def test_a_late_breach_that_is_the_worst_of_an_open_alerts_run_worsens_it_once(
    rules: Ruleset, router: Router,
) -> None:
    readings = [spo2(T0, 88.0), spo2(T0 + timedelta(minutes=1), 80.0), spo2(T0 + timedelta(minutes=2), 87.0),
                spo2(T0 + timedelta(minutes=3), 88.0)]
    c = Citizen(rules, router)
    c.arrive([readings[0]])
    c.arrive(readings[2:])
    alert = c.alerts[SPO2]
    assert c.records(SPO2) == [("opened", "yellow")]
    worsened = c.arrive([readings[1]])
    assert c.records(SPO2) == [("opened", "yellow"), ("worsened", "red")]
    assert sum(isinstance(e, Record) and e.alert.rule_id == SPO2 for e in worsened) == 1
    after = c.alerts[SPO2]
    assert (after.id, after.severity, after.state, after.last_value, after.breach_count) == (alert.id, "red", "open",
                                                                                            88.0, 4)
    assert after.reading_ids == tuple(uuid.UUID(o.id or "") for o in readings)  # measurement order
    reference = in_order(rules, router, readings)
    assert reference.records(SPO2) == c.records(SPO2) and reference.state(SPO2) == c.state(SPO2)
    # The fall to 80 % was a trend episode, over by 87 %: history, as in measurement order.
    assert c.records("copd.spo2.trend") == reference.records("copd.spo2.trend") == [("opened", "yellow"),
                                                                                    ("resolved", "yellow")]


def test_a_weight_trend_opened_at_11_59_03_is_not_resolved_by_readings_from_11_58_that_arrive_late(
    rules: Ruleset, router: Router,
) -> None:
    day = datetime(2026, 11, 24, tzinfo=CPH)
    earlier = [weight(day - timedelta(days=2) + timedelta(hours=8), 80.0), weight(day + timedelta(hours=8), 80.3)]
    opened = weight(day.replace(hour=11, minute=59, second=3), 82.6)  # +2.6 kg within 3 days
    late = [weight(day.replace(hour=11, minute=58, second=19), 80.4), weight(day.replace(hour=11, minute=58, second=40),
                                                                              80.2)]
    again = weight(day.replace(hour=11, minute=59, second=5), 82.7)
    c = Citizen(rules, router, "heart_failure")
    c.arrive(earlier)
    c.arrive([opened])
    assert c.records(WEIGHT) == [("opened", "yellow")]
    alert = c.alerts[WEIGHT]
    c.arrive(late)  # in arrival order these two in-range readings resolved the alert…
    c.arrive([again])  # …and this one opened it again 2 s later
    assert c.records(WEIGHT) == [("opened", "yellow")]
    after = c.alerts[WEIGHT]
    assert (after.id, after.state, after.last_value) == (alert.id, "open", 82.7)
    reference = in_order(rules, router, [*earlier, *late, opened, again], "heart_failure")
    assert reference.records(WEIGHT) == c.records(WEIGHT) and reference.state(WEIGHT) == c.state(WEIGHT)


def test_a_late_in_range_reading_counts_towards_auto_resolve_in_its_place(rules: Ruleset, router: Router) -> None:
    # 88 % opened it; one newer reading back in range; a late in-range reading between them is
    # the second: in measurement order the alert resolved at the newer one.
    readings = [spo2(T0, 88.0), spo2(T0 + timedelta(minutes=1), 95.0), spo2(T0 + timedelta(minutes=2), 96.0)]
    c = Citizen(rules, router)
    c.arrive([readings[0]])
    c.arrive([readings[2]])
    assert c.alerts[SPO2].in_range_count == 1
    c.arrive([readings[1]])
    assert c.records(SPO2) == [("opened", "yellow"), ("resolved", "yellow")] and SPO2 not in c.alerts
    reference = in_order(rules, router, readings)
    assert reference.records(SPO2) == c.records(SPO2)


def test_an_alert_whose_breaches_no_longer_fire_in_measurement_order_is_resolved(
    rules: Ruleset, router: Router,
) -> None:
    # Re-evaluated with its history as of its own time, the one reading behind the alert is in
    # range now (the replay has no breach for it): the alert should never have opened.
    c = Citizen(rules, router)
    c.arrive([spo2(T0, 88.0)])
    a = c.alerts[SPO2]
    only = Evaluated(a.reading_ids[0], frozenset({SPO2}), frozenset())
    assert rewind(a, [only]) is None  # it opened within the span
    cleared = Evaluated(uuid.uuid4(), frozenset(), frozenset({SPO2}))
    assert rewind(a, [cleared]) == a  # its in-range count was 0 before the span too
    assert rewind(a, []) is a
    after, effects = replay_in_order(c.patient, {SPO2: a}, [only], [], NOW, router, ids=itertools.count(500))
    assert after == {SPO2: None}
    assert [(e.action, e.alert.id, e.alert.state, e.note) for e in effects if isinstance(e, Record)] == [
        ("resolved", a.id, "resolved", "genvurderet i målerækkefølge")]


def test_late_breaches_of_a_run_already_resolved_extend_that_alert_without_a_new_one(
    rules: Ruleset, router: Router,
) -> None:
    # Five readings at 88 % open a yellow alert; two newer readings at 95 % resolve it; then the
    # five 88 % readings between them arrive (the killed ingest worker's envelope, sent again):
    # in measurement order the run went on to the tenth breach and resolved after it.
    run = [spo2(T0 + timedelta(minutes=i), 88.0) for i in range(5)]
    late = [spo2(T0 + timedelta(minutes=5 + i), 87.5) for i in range(5)]
    after = [spo2(T0 + timedelta(minutes=10 + i), 95.0) for i in range(2)]
    c = Citizen(rules, router)
    c.arrive(run)
    c.arrive(after)
    assert c.records(SPO2) == [("opened", "yellow"), ("resolved", "yellow")] and SPO2 not in c.alerts
    effects = c.arrive(late)
    assert not [e for e in effects if isinstance(e, Record)] and SPO2 not in c.alerts
    reference = in_order(rules, router, [*run, *late, *after])
    assert c.records(SPO2) == reference.records(SPO2)
    mine = [a for a in c.stored.values() if a.rule_id == SPO2]
    theirs = [a for a in reference.stored.values() if a.rule_id == SPO2]
    assert len(mine) == len(theirs) == 1
    fields = ("state", "severity", "last_value", "breach_count", "in_range_count", "last_reading_id", "reading_ids")
    assert [getattr(mine[0], f) for f in fields] == [getattr(theirs[0], f) for f in fields]
    assert mine[0].breach_count == 10 and mine[0].resolved_at == NOW


def test_an_alert_the_system_resolved_opens_again_when_a_late_breach_shows_its_run_went_on(
    rules: Ruleset, router: Router,
) -> None:
    # 88 % opened a yellow alert; two newer readings at 95 % resolved it; then a reading at 87 %
    # between those two comes late: in measurement order the run never ended (one in-range
    # reading after its last breach, auto_resolve_after 2).
    first = spo2(T0, 88.0)
    clears = [spo2(T0 + timedelta(minutes=2), 95.0), spo2(T0 + timedelta(minutes=4), 95.0)]
    late = spo2(T0 + timedelta(minutes=3), 87.0)
    c = Citizen(rules, router)
    c.arrive([first])
    alert = c.alerts[SPO2]
    c.arrive(clears)
    assert SPO2 not in c.alerts
    effects = c.arrive([late])
    again = c.alerts[SPO2]
    assert again.id == alert.id and again.state == "open"  # the same alert, not a new one
    assert c.records_of(alert.id) == [("opened", "yellow"), ("resolved", "yellow"), ("opened", "yellow")]
    reopened = [e for e in effects if isinstance(e, Record) and e.alert.rule_id == SPO2]
    assert [(r.action, r.from_state) for r in reopened] == [("opened", "resolved")]
    assert [e.record for e in effects if isinstance(e, Notify) and e.record.alert.rule_id == SPO2] == reopened
    reference = in_order(rules, router, [first, *clears, late])
    assert c.rows(SPO2) == reference.rows(SPO2)
    assert c.state(SPO2) == reference.state(SPO2)


def test_a_clinicians_resolve_stands_when_late_breaches_show_the_run_went_on(rules: Ruleset, router: Router) -> None:
    first = spo2(T0, 88.0)
    c = Citizen(rules, router)
    c.arrive([first])
    closed = dataclasses.replace(c.alerts.pop(SPO2), state="resolved", resolved_by="sygeplejerske",
                                 resolved_at=NOW, resolve_note="ringet op")
    c.stored[closed.id] = closed
    c.arrive([spo2(T0 + timedelta(minutes=4), 95.0)])
    effects = c.arrive([spo2(T0 + timedelta(minutes=2), 86.0)])
    assert SPO2 not in c.alerts and not [e for e in effects if isinstance(e, Record | Notify)]
    row = c.stored[closed.id]
    assert (row.state, row.resolved_by, row.breach_count, row.last_value) == ("resolved", "sygeplejerske", 2, 86.0)


def _dip(seed: int) -> list[Observation]:
    """The fault test's COPD SpO2 series (tests/backend/alerting/_order.py), 30 hours."""
    import random

    from tests.backend.alerting._order import copd_spo2_dip

    values = copd_spo2_dip(random.Random(seed))
    return [spo2(T0 + timedelta(minutes=15 * i), v) for i, v in enumerate(values)]


def _envelopes(readings: Sequence[Observation], seed: int) -> list[list[Observation]]:
    """Envelopes of 5 committed out of order (any of the next 4 first; now and then one from
    anywhere behind: a killed worker's envelope sent again), claimed 1 to 3 at a time."""
    import random

    rng = random.Random(seed)
    pending = [list(readings[i:i + 5]) for i in range(0, len(readings), 5)]
    committed = []
    while pending:
        k = rng.randrange(len(pending)) if rng.random() < 0.1 else rng.randrange(min(4, len(pending)))
        committed.append(pending.pop(k))
    out, i = [], 0
    while i < len(committed):
        n = rng.randint(1, 3)
        out.append([o for e in committed[i:i + n] for o in e])
        i += n
    return out


@pytest.mark.parametrize("seed", range(12))
def test_a_dip_and_recovery_in_any_arrival_order_stores_the_in_order_alerts(
    rules: Ruleset, router: Router, seed: int,
) -> None:
    # Episodes that open and resolve within late spans, runs that late readings join or split,
    # alerts resolved before their late breaches came: the absolute limit's alert rows (state,
    # severity, last value and reading, breach and in-range counts) equal the in-order ones.
    readings = _dip(20261130 + seed)
    c = Citizen(rules, router)
    for batch in _envelopes(readings, seed):
        c.arrive(batch)
    assert c.replays > 0
    reference = in_order(rules, router, readings)
    assert reference.rows(SPO2) and c.rows(SPO2) == reference.rows(SPO2)
    # The trend rule (it looks at history): every in-order alert, and any other resolved.
    trend = "copd.spo2.trend"
    assert set(reference.rows(trend)) <= set(c.rows(trend))
    assert all(r[0] == "resolved" for r in set(c.rows(trend)) - set(reference.rows(trend)))
    # Never an alert open twice for one rule, and nothing left open that in order is resolved.
    assert [r[0] for r in c.rows(SPO2)].count("open") <= 1


@pytest.mark.parametrize("size", [5, 17, 40])
def test_a_dip_and_recovery_newest_batch_first_stores_both_episodes_as_in_order(
    rules: Ruleset, router: Router, size: int,
) -> None:
    readings = _dip(20261130)
    c = newest_first(rules, router, readings, size)
    reference = in_order(rules, router, readings)
    assert c.rows(SPO2) == reference.rows(SPO2)
    assert [(r[0], r[1]) for r in c.rows(SPO2)] == [("resolved", "red"), ("resolved", "yellow")]
    # The red dip, over long before its readings came, is history: nobody is notified of it.
    assert not [e for e in c.log if isinstance(e, Notify) and e.record.alert.severity == "red"]
