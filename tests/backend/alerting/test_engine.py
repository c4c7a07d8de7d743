from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from alert_rules.loader import default_dir
from backend.alerting import FixedClock, acknowledge, alert_history, worklist
from backend.alerting.config import load_config
from backend.alerting.engine import AlertEngine
from vitals.wire import Topics

# The engine, the writer and the order machinery on the previous packaged rules (alert_rules/
# previous): their absolute yellow/red SpO2 bands, baseline and trend rules; the shipped defaults
# have no yellow SpO2 band any more (issue 11).
PREVIOUS = default_dir() / "previous"

CPH = ZoneInfo("Europe/Copenhagen")


def test_yellow_then_red_is_one_alert_rerouted(seed, pool, db):  # type: ignore[no-untyped-def]
    pid = seed.patient("copd", "Aarhus")
    t0 = datetime(2026, 11, 24, 17, 0, tzinfo=CPH)  # a Tuesday evening: municipal cover
    clock = FixedClock(t0)
    engine = AlertEngine(pool=pool, config=load_config(PREVIOUS), clock=clock)
    engine.on_stored([seed.reading(pid, "spo2", t0, spo2=88.0)])
    clock.set(t0 + timedelta(minutes=5))
    engine.on_stored([seed.reading(pid, "spo2", t0 + timedelta(minutes=5), spo2=84.0)])
    entries = worklist(db, patient_ids=[pid])
    assert len(entries) == 1
    alerts = [a for a in entries[0].alerts if a.rule_id == "copd.spo2.absolute"]
    assert len(alerts) == 1
    a = alerts[0]
    assert (a.severity, a.state, a.team_key, a.last_value) == ("red", "open", "aarhus-sygepleje", 84.0)
    history = [t.action for t in alert_history(db, patient_id=pid) if t.rule_id == "copd.spo2.absolute"]
    assert history == ["opened", "worsened"]
    acked = acknowledge(db, alert_id=a.id, by="nurse-1", note="ringet op", topics=Topics())
    assert acked.state == "acknowledged" and acked.acknowledged_by == "nurse-1"


def test_seed_alerting_is_idempotent(seed, db):  # type: ignore[no-untyped-def]
    from backend.alerting import monitoring_plan
    from backend.alerting.demo import seed_alerting

    pid = seed.patient("heart_failure", "Randers")
    seed_alerting(db, config=load_config(PREVIOUS), topics=Topics())
    plan = monitoring_plan(db, config=load_config(PREVIOUS), patient_id=pid)
    assert not plan.is_default and {i.kind for i in plan.items} == {"weight", "blood_pressure"}
    again = seed_alerting(db, config=load_config(PREVIOUS), topics=Topics())
    assert not [d for d in again if d == f"plan for patient {pid}"]
