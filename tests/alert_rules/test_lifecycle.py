"""The pure alert state machine on a fixed clock: no database, the shipped rules and routing."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from alert_rules.evaluate import (
    AgentStatus,
    Context,
    DeviceStatus,
    Finding,
    Observation,
    evaluate,
    evaluate_agent,
    evaluate_device,
)
from alert_rules.lifecycle import (
    Acknowledge,
    ActionRefused,
    Alert,
    Effect,
    Escalate,
    Notify,
    Patient,
    PatientFinding,
    Record,
    Refresh,
    Resolve,
    Router,
    Snooze,
    Store,
    apply_action,
    escalation_due,
    group,
    inhibit,
    run_batch,
    transition,
)
from alert_rules.loader import ROUTING_FILE, Ruleset, default_dir, load_model, load_ruleset
from alert_rules.model import AgentOfflineRule, BatteryLowRule, MissingRule
from alert_rules.plans import PlanLine, missed_slots, planned_slots
from alert_rules.routing import InhibitRule, RoutingConfig
from vitals.kinds import MeasurementKind

CPH = ZoneInfo("Europe/Copenhagen")
PREVIOUS = default_dir() / "previous"
TUESDAY_EVENING = datetime(2026, 11, 24, 17, 0, tzinfo=CPH)  # municipal cover; not the hospital's day shift
TEAMS = frozenset({"aarhus-sygepleje", "randers-akutteam", "silkeborg-sygepleje", "auh-lungeteam", "auh-hjerteteam",
                   "auh-akut"})
NAMES = {"aarhus-sygepleje": "Aarhus Kommune sygepleje", "auh-lungeteam": "AUH udgående lungeteam"}


@pytest.fixture(scope="module")
def rules() -> Ruleset:
    # The state machine and the rule kinds (absolute yellow/red bands, baseline, trend) on the
    # previous packaged defaults, kept in alert_rules/previous: the shipped defaults have no
    # absolute yellow SpO2 band or baseline rule any more (issue 11).
    return load_ruleset(PREVIOUS)


@pytest.fixture(scope="module")
def routing() -> RoutingConfig:
    return load_model(default_dir() / ROUTING_FILE, RoutingConfig)


@pytest.fixture
def router(routing: RoutingConfig) -> Router:
    return Router(config=routing, teams=TEAMS)


class Citizen:
    """One patient's alerts driven through the pipeline the way the engine drives them: each
    reading evaluated on the shipped rules, each finding through ``transition``, then the
    inhibition and grouping stages (``run_batch``)."""

    def __init__(self, rules: Ruleset, router: Router, programme: str = "copd", municipality: str = "Aarhus") -> None:
        self.rules = rules
        self.router = router
        self.patient = Patient(id=7, programme=programme, municipality=municipality, external_ref="t-7")
        self.alerts: dict[str, Alert] = {}
        self.ids: Iterator[int] = itertools.count(100)
        self.log: list[Effect] = []

    def read(self, kind: str, at: datetime, **values: float) -> list[Effect]:
        rid = uuid.uuid4()
        obs = Observation(MeasurementKind(kind), values, at, id=str(rid))
        found = evaluate(self.rules.rules_for(self.patient.programme), Context(self.patient.programme), obs)
        findings = [PatientFinding(self.patient, f, rid, self.rules.rule(f.rule_id).auto_resolve_after)
                    for f in found if f.fired or f.rule_id in self.alerts]
        return self.batch(findings, at)

    def batch(self, findings: Sequence[PatientFinding], now: datetime) -> list[Effect]:
        self.alerts, effects = run_batch(self.patient, self.alerts, findings, now, self.router, ids=self.ids)
        self.log += effects
        return effects

    def act(self, rule_id: str, action: Acknowledge | Snooze | Resolve | Escalate, now: datetime) -> list[Effect]:
        alert, effects = apply_action(self.alerts[rule_id], action, now)
        if alert.state == "resolved":
            del self.alerts[rule_id]
        else:
            self.alerts[rule_id] = alert
        self.log += effects
        return list(effects)

    def escalate(self, rule_id: str, now: datetime) -> list[Effect]:
        a = self.alerts[rule_id]
        return self.act(rule_id, Escalate(sla=self.router.sla(a.severity), owner_name=NAMES.get(a.team_key,
                                                                                             a.team_key)), now)


def records(effects: Sequence[Effect], rule_id: str | None = None) -> list[tuple[str, str]]:
    return [(e.action, e.alert.severity) for e in effects
            if isinstance(e, Record) and (rule_id is None or e.alert.rule_id == rule_id)]


def notified(effects: Sequence[Effect]) -> list[tuple[str, str]]:
    return [(e.record.alert.rule_id, e.record.action) for e in effects if isinstance(e, Notify)]


def test_open_then_worsen_is_one_alert_rerouted_never_a_duplicate(rules: Ruleset, router: Router) -> None:
    c = Citizen(rules, router)
    opened = c.read("spo2", TUESDAY_EVENING, spo2=88.0)
    yellow = c.alerts["copd.spo2.absolute"]
    assert records(opened) == [("opened", "yellow")] and notified(opened) == [("copd.spo2.absolute", "opened")]
    assert (yellow.team_key, yellow.escalation_due_at) == ("aarhus-sygepleje", TUESDAY_EVENING + timedelta(hours=4))
    worse = c.read("spo2", TUESDAY_EVENING + timedelta(minutes=5), spo2=84.0)
    red = c.alerts["copd.spo2.absolute"]
    assert red.id == yellow.id
    assert (red.severity, red.state, red.last_value, red.breach_count) == ("red", "open", 84.0, 2)
    assert records(worse) == [("worsened", "red")]
    note = next(e.note for e in worse if isinstance(e, Record))
    assert note is not None and note.startswith("yellow → red")
    assert red.escalation_due_at == TUESDAY_EVENING + timedelta(minutes=35)  # red's SLA of 30 min, from now
    # A lesser breach afterwards is folded into the red alert: no downgrade, no transition, a live refresh.
    again = c.read("spo2", TUESDAY_EVENING + timedelta(minutes=10), spo2=88.0)
    assert records(again) == [] and [type(e) for e in again] == [Store, Refresh]
    assert c.alerts["copd.spo2.absolute"].severity == "red" and c.alerts["copd.spo2.absolute"].last_value == 88.0
    assert len({e.alert.id for e in c.log if isinstance(e, Store)}) == 1  # one identity for (patient, rule)
    assert next(c.ids) == 101  # exactly one id was taken


def test_auto_resolve_after_readings_back_in_range(rules: Ruleset, router: Router) -> None:
    c = Citizen(rules, router)
    t = TUESDAY_EVENING
    c.read("spo2", t, spo2=88.0)
    first = c.read("spo2", t + timedelta(hours=1), spo2=95.0)
    assert records(first) == [] and c.alerts["copd.spo2.absolute"].in_range_count == 1
    c.read("spo2", t + timedelta(hours=2), spo2=88.0)  # a breach between: counting starts again
    assert c.alerts["copd.spo2.absolute"].in_range_count == 0
    c.read("spo2", t + timedelta(hours=3), spo2=95.0)
    done = c.read("spo2", t + timedelta(hours=4), spo2=96.0)
    assert records(done) == [("resolved", "yellow")] and "copd.spo2.absolute" not in c.alerts
    resolved = next(e.alert for e in done if isinstance(e, Record))
    assert (resolved.state, resolved.resolved_by, resolved.resolve_note, resolved.escalation_due_at) == (
        "resolved", "system", "2 målinger tilbage inden for grænserne", None)
    # The next breach opens a new alert.
    c.read("spo2", t + timedelta(hours=5), spo2=88.0)
    assert c.alerts["copd.spo2.absolute"].id != resolved.id


def test_escalation_past_the_sla_hands_over_with_a_record(rules: Ruleset, router: Router) -> None:
    c = Citizen(rules, router)
    c.read("spo2", TUESDAY_EVENING, spo2=83.0)
    red = c.alerts["copd.spo2.absolute"]
    assert (red.team_key, red.escalate_to) == ("aarhus-sygepleje", ("auh-lungeteam", "auh-akut"))
    assert c.escalate("copd.spo2.absolute", TUESDAY_EVENING + timedelta(minutes=29)) == []  # within the SLA
    t1 = TUESDAY_EVENING + timedelta(minutes=31)
    handover = c.escalate("copd.spo2.absolute", t1)
    a = c.alerts["copd.spo2.absolute"]
    assert (a.team_key, a.escalation_level, a.escalate_to, a.owner_since) == ("auh-lungeteam", 1, ("auh-akut",), t1)
    assert a.escalation_due_at == t1 + timedelta(minutes=30)
    rec = next(e for e in handover if isinstance(e, Record))
    assert (rec.action, rec.from_team, rec.alert.team_key) == ("escalated", "aarhus-sygepleje", "auh-lungeteam")
    assert rec.note == "ingen kvittering fra Aarhus Kommune sygepleje inden for SLA"
    assert notified(handover) == [("copd.spo2.absolute", "escalated")]
    # Run again at once (a second scheduler): not due any more, nothing happens.
    assert c.escalate("copd.spo2.absolute", t1 + timedelta(seconds=1)) == []
    # Late: the note says by how much.
    t2 = t1 + timedelta(minutes=95)
    late = c.escalate("copd.spo2.absolute", t2)
    rec2 = next(e for e in late if isinstance(e, Record))
    assert c.alerts["copd.spo2.absolute"].team_key == "auh-akut" and "(afviklet 65 min. for sent)" in (rec2.note or "")
    # Nobody further up: the owner keeps it and is reminded once.
    last = c.escalate("copd.spo2.absolute", t2 + timedelta(minutes=31))
    assert records(last) == [("sla_breached", "red")] and c.alerts["copd.spo2.absolute"].team_key == "auh-akut"
    assert c.alerts["copd.spo2.absolute"].escalation_due_at is None
    assert c.escalate("copd.spo2.absolute", t2 + timedelta(hours=5)) == []


def test_a_red_spo2_mutes_a_yellow_pulse_when_the_rule_says_so(rules: Ruleset, routing: RoutingConfig) -> None:
    # The shipped rule mutes lesser alerts of the same kind only; a rule with equal: [patient]
    # mutes every lesser alert of the citizen.
    wide = routing.model_copy(update={"inhibit_rules": (
        InhibitRule(source_match={"severity": "red"}, target_match={"severity": "yellow"}, equal=("patient",)),)})
    c = Citizen(rules, Router(config=wide, teams=TEAMS), programme="heart_failure")
    t = TUESDAY_EVENING + timedelta(hours=1)
    c.read("spo2", t, spo2=89.0)  # red (<= 91)
    pulse = c.read("pulse", t + timedelta(minutes=1), pulse=115.0)  # yellow
    red, yellow = c.alerts["heart_failure.spo2.absolute"], c.alerts["heart_failure.pulse.absolute"]
    assert yellow.inhibited_by == red.id and red.inhibited_by is None
    assert records(pulse) == [("opened", "yellow")]
    assert next(e for e in pulse if isinstance(e, Record)).alert.inhibited_by == red.id  # the live event says muted
    assert notified(pulse) == []  # muted: nobody is paged for it
    assert not escalation_due(yellow, t + timedelta(days=1))  # nor is it escalated
    # The red resolves (a clinician): the yellow is un-muted, its SLA starting now.
    t2 = t + timedelta(hours=2)
    c.act("heart_failure.spo2.absolute", Resolve(by="nurse", note="ringet op"), t2)
    assert inhibit(list(c.alerts.values()), c.patient, wide) == {}
    c.batch([], t2)  # nothing new; the stages run with the next batch that changes something
    after = c.read("pulse", t2, pulse=90.0)  # one reading back in range: the stages run for this patient
    unmuted = c.alerts["heart_failure.pulse.absolute"]
    assert unmuted.inhibited_by is None and unmuted.escalation_due_at == t2 + timedelta(hours=4)
    assert any(isinstance(e, Refresh) for e in after)


def test_the_shipped_inhibition_is_per_kind(rules: Ruleset, router: Router) -> None:
    c = Citizen(rules, router, programme="heart_failure")
    t = TUESDAY_EVENING + timedelta(hours=1)
    c.read("spo2", t, spo2=89.0)
    c.read("pulse", t, pulse=115.0)
    assert c.alerts["heart_failure.pulse.absolute"].inhibited_by is None
    muted = inhibit([*c.alerts.values(), _yellow_like(c.alerts["heart_failure.spo2.absolute"])], c.patient,
                    router.config)
    assert muted == {999: c.alerts["heart_failure.spo2.absolute"].id}


def _yellow_like(red: Alert) -> Alert:
    import dataclasses

    return dataclasses.replace(red, id=999, rule_id="heart_failure.spo2.other", severity="yellow")


def test_snooze_holds_escalation_until_it_expires(rules: Ruleset, router: Router) -> None:
    c = Citizen(rules, router)
    c.read("spo2", TUESDAY_EVENING, spo2=88.0)  # yellow, SLA 4 h
    t = TUESDAY_EVENING + timedelta(minutes=10)
    until = t + timedelta(hours=2)
    with pytest.raises(ActionRefused, match="future"):
        c.act("copd.spo2.absolute", Snooze(by="nurse", until=t, reason="x", sla=timedelta(hours=4)), t)
    with pytest.raises(ActionRefused, match="reason"):
        c.act("copd.spo2.absolute", Snooze(by="nurse", until=until, reason=" ", sla=timedelta(hours=4)), t)
    effects = c.act("copd.spo2.absolute", Snooze(by="nurse", until=until, reason="ringer tilbage",
                                                 sla=timedelta(hours=4)), t)
    a = c.alerts["copd.spo2.absolute"]
    assert records(effects) == [("snoozed", "yellow")] and a.snoozed(t) and a.snoozed_until == until
    assert a.escalation_due_at == until + timedelta(hours=4)  # its SLA starts again when the snooze ends
    # A breach while snoozed: a repeat keeps the snooze and the clock; a worse one re-routes and
    # sets a fresh SLA, but still no escalation until the snooze ends.
    c.read("spo2", t + timedelta(minutes=5), spo2=88.0)
    assert c.alerts["copd.spo2.absolute"].escalation_due_at == until + timedelta(hours=4)
    worse = c.read("spo2", t + timedelta(minutes=20), spo2=84.0)
    red = c.alerts["copd.spo2.absolute"]
    assert records(worse) == [("worsened", "red")] and red.snoozed_until == until
    assert red.escalation_due_at == t + timedelta(minutes=50)
    assert not escalation_due(red, t + timedelta(minutes=51))
    assert c.escalate("copd.spo2.absolute", t + timedelta(minutes=51)) == []
    # Expiry writes nothing: the alert is simply due again once the snooze is over.
    assert not red.snoozed(until) and escalation_due(red, until)
    assert records(c.escalate("copd.spo2.absolute", until)) == [("escalated", "red")]


def test_acknowledge_then_a_new_breach(rules: Ruleset, router: Router) -> None:
    c = Citizen(rules, router)
    c.read("spo2", TUESDAY_EVENING, spo2=88.0)
    t = TUESDAY_EVENING + timedelta(minutes=3)
    effects = c.act("copd.spo2.absolute", Acknowledge(by="nurse-1", note="ringet op"), t)
    a = c.alerts["copd.spo2.absolute"]
    assert records(effects) == [("acknowledged", "yellow")] and notified(effects) == []
    assert (a.state, a.acknowledged_by, a.acknowledged_at, a.escalation_due_at) == ("acknowledged", "nurse-1", t, None)
    with pytest.raises(ActionRefused, match="only an open alert"):
        c.act("copd.spo2.absolute", Acknowledge(by="nurse-2", note="igen"), t)
    # The same breach again: the kvittering covers it.
    same = c.read("spo2", t + timedelta(minutes=10), spo2=88.5)
    assert records(same) == [] and c.alerts["copd.spo2.absolute"].state == "acknowledged"
    assert not escalation_due(c.alerts["copd.spo2.absolute"], t + timedelta(days=1))
    # A worse one needs fresh eyes: open again, routed again, notified.
    worse = c.read("spo2", t + timedelta(minutes=20), spo2=84.0)
    w = c.alerts["copd.spo2.absolute"]
    assert records(worse) == [("worsened", "red")] and notified(worse) == [("copd.spo2.absolute", "worsened")]
    assert (w.id, w.state, w.escalation_level) == (a.id, "open", 0)
    c.act("copd.spo2.absolute", Resolve(by="nurse-1", note="indlagt"), t + timedelta(hours=1))
    with pytest.raises(ActionRefused, match="already resolved"):
        apply_action(next(e.alert for e in reversed(c.log) if isinstance(e, Record)), Resolve(by="x", note="y"), t)
    c.read("spo2", t + timedelta(hours=2), spo2=88.0)
    assert c.alerts["copd.spo2.absolute"].id != a.id  # resolved: the next breach is a new alert


def test_passive_interval_plans_no_slot_and_raises_no_blue(rules: Ruleset, router: Router) -> None:
    c = Citizen(rules, router)
    missing = next(r for r in rules.rules_for("copd") if isinstance(r, MissingRule))
    lines = [PlanLine(MeasurementKind.SPO2, (datetime(2026, 1, 1, 8, 0).time(),), grace_minutes=120)]
    day = datetime(2026, 11, 24, 0, 0, tzinfo=CPH)
    now = day + timedelta(hours=12)

    def blue_findings(passive: Sequence[tuple[datetime, datetime | None]]) -> list[PatientFinding]:
        slots = planned_slots(lines, start=day, end=now, tz="Europe/Copenhagen", passive=passive)
        missed = missed_slots(slots, {}, now=now)
        return [PatientFinding(c.patient, Finding(missing.id, missing.kind, s.kind.value, "blue", None, missing.title,
                                                  {"grace_minutes": 120.0},
                                                  {"missed": [{"kind": s.kind.value, "due_at": s.due_at.isoformat()}]}),
                               None, missing.auto_resolve_after, repeat="record") for s in missed]

    # Hospitalised all day: nothing was planned, so nothing is missed and no blue alert opens.
    assert c.batch(blue_findings([(day, day + timedelta(days=1))]), now) == []
    assert c.alerts == {}
    # Without the interval the 08:00 slot is missed by 10:00.
    opened = c.batch(blue_findings([]), now)
    assert records(opened) == [("opened", "blue")] and c.alerts[missing.id].team_key == "aarhus-sygepleje"
    # The late reading of that kind clears it (the engine feeds such a clear).
    clear = Finding(missing.id, missing.kind, None, None, None, missing.title, {})
    done = c.batch([PatientFinding(c.patient, clear, uuid.uuid4(), missing.auto_resolve_after)], now)
    assert records(done) == [("resolved", "blue")] and c.alerts == {}


def test_agent_offline_and_battery_are_decided_by_the_rules(rules: Ruleset, router: Router) -> None:
    c = Citizen(rules, router)
    offline = next(r for r in rules.rules_for("copd") if isinstance(r, AgentOfflineRule))
    battery = next(r for r in rules.rules_for("copd") if isinstance(r, BatteryLowRule))
    now = TUESDAY_EVENING

    def agent(online: bool, hours: float) -> Finding | None:
        return evaluate_agent(offline, AgentStatus("ag-1", online, now - timedelta(hours=hours)), now)

    assert agent(False, 23) is None  # offline, but not for a day yet
    back_online = agent(True, 30)
    assert back_online is not None and back_online.severity is None  # online: a clear
    stale = agent(False, 25)
    assert stale is not None and stale.severity == "technical" and stale.detail["agent_id"] == "ag-1"

    def feed(f: Finding | None, at: datetime) -> list[Effect]:
        assert f is not None
        return c.batch([PatientFinding(c.patient, f, None, offline.auto_resolve_after, repeat="keep",
                                       resolve_note="udstyret er online igen")], at)

    assert records(feed(stale, now)) == [("opened", "technical")]
    assert feed(agent(False, 30), now + timedelta(minutes=5)) == []  # still offline: a standing condition, no noise
    back = feed(agent(True, 0), now + timedelta(minutes=10))
    assert records(back) == [("resolved", "technical")]
    assert next(e.alert.resolve_note for e in back if isinstance(e, Record)) == "udstyret er online igen"
    assert evaluate_device(battery, DeviceStatus("AA:BB", "Nonin 3230", battery_low=False)) is None
    low = evaluate_device(battery, DeviceStatus("AA:BB", "Nonin 3230", battery_low=True))
    assert low is not None and low.severity == "technical" and low.detail == {"device": "AA:BB", "model": "Nonin 3230"}


def test_group_keeps_one_row_per_alert_and_orders_records(rules: Ruleset, router: Router) -> None:
    c = Citizen(rules, router)
    p = c.patient
    spo2 = next(r for r in rules.rules_for("copd") if r.id == "copd.spo2.absolute")

    def breach(sev: str, value: float) -> PatientFinding:
        return PatientFinding(p, Finding(spo2.id, spo2.kind, "spo2", sev, value, spo2.title, {}), uuid.uuid4(), 2)

    effects = c.batch([breach("yellow", 88.0), breach("yellow", 88.5), breach("red", 84.0)], TUESDAY_EVENING)
    stores = [e for e in effects if isinstance(e, Store)]
    assert len(stores) == 1 and stores[0].new and stores[0].alert.severity == "red"
    assert stores[0].labels is not None and stores[0].labels["severity"] == "red"
    assert records(effects) == [("opened", "yellow"), ("worsened", "red")]
    assert not any(isinstance(e, Refresh) for e in effects)  # its transitions carry the live events
    assert group(effects) == effects


def test_transition_is_pure(rules: Ruleset, router: Router) -> None:
    c = Citizen(rules, router)
    c.read("spo2", TUESDAY_EVENING, spo2=88.0)
    before = c.alerts["copd.spo2.absolute"]
    pf = PatientFinding(c.patient, Finding("copd.spo2.absolute", "absolute", "spo2", "red", 84.0, "x", {}), None, 2)
    a1, e1 = transition(before, pf, TUESDAY_EVENING + timedelta(hours=1), router, ids=iter(()))
    a2, e2 = transition(before, pf, TUESDAY_EVENING + timedelta(hours=1), router, ids=iter(()))
    assert a1 == a2 and e1 == e2 and before.severity == "yellow"
    with pytest.raises(ValueError, match="resolved"):
        transition(apply_action(before, Resolve(by="x", note="y"), TUESDAY_EVENING)[0], pf, TUESDAY_EVENING, router,
                   ids=iter(()))


def test_the_machine_imports_nothing_of_the_backend() -> None:
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, alert_rules.lifecycle, alert_rules.replay;"
            "bad=[m for m in sys.modules if m.split('.')[0] in ('backend','psycopg','fastapi','paho','edge_agent')];"
            "print(bad); sys.exit(1 if bad else 0)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])
