"""The scheduled checks and the clinicians' actions through the state machine and the one writer,
against the real database."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from alert_rules.loader import default_dir
from alert_rules.routing import InhibitRule
from backend.alerting import FixedClock, alert_history, resolve, worklist
from backend.alerting.config import AlertingConfig, load_config
from backend.alerting.engine import AlertEngine
from backend.alerting.jobs import check_technical, run_escalations

# The engine, the writer and the order machinery on the previous packaged rules (alert_rules/
# previous): their absolute yellow/red SpO2 bands, baseline and trend rules; the shipped defaults
# have no yellow SpO2 band any more (issue 11).
PREVIOUS = default_dir() / "previous"

CPH = ZoneInfo("Europe/Copenhagen")


def _technical(db: Any, pid: int) -> list[Any]:
    return [t for t in alert_history(db, patient_id=pid) if t.rule_id.startswith("technical.")]


def test_agent_offline_opens_once_and_resolves_when_online(seed, db, pool) -> None:  # type: ignore[no-untyped-def]
    pid = seed.patient("copd", "Aarhus")
    agent = seed.agent_of(pid)
    now = datetime(2026, 11, 24, 10, 0, tzinfo=CPH)
    cfg = load_config(PREVIOUS)
    db.execute("UPDATE agents SET online = false, last_seen_at = %s WHERE id = %s", (now - timedelta(hours=23), agent))
    with pool.connection() as conn:  # a pool connection, as the scheduler's (autocommit off)
        assert [a for a in check_technical(conn, now=now, config=cfg) if a.patient_id == pid] == []
    db.execute("UPDATE agents SET last_seen_at = %s WHERE id = %s", (now - timedelta(hours=25), agent))
    with pool.connection() as conn:
        opened = [a for a in check_technical(conn, now=now, config=cfg) if a.patient_id == pid]
        again = [a for a in check_technical(conn, now=now + timedelta(minutes=5), config=cfg) if a.patient_id == pid]
    assert [(a.rule_id, a.severity, a.team_key) for a in opened] == [
        ("technical.agent_offline", "technical", "aarhus-sygepleje")]
    assert opened[0].detail["agent_id"] == agent and again == []
    assert [t.action for t in _technical(db, pid)] == ["opened"]  # a standing condition adds no noise
    db.execute("UPDATE agents SET online = true, last_seen_at = %s WHERE id = %s", (now, agent))
    with pool.connection() as conn:
        check_technical(conn, now=now + timedelta(minutes=10), config=cfg)
    ts = _technical(db, pid)
    assert [t.action for t in ts] == ["opened", "resolved"] and ts[-1].note == "udstyret er online igen"


def test_battery_low_device_opens_one_technical_alert(seed, db, pool) -> None:  # type: ignore[no-untyped-def]
    pid = seed.patient("heart_failure", "Randers")
    agent = seed.agent_of(pid)
    db.execute("UPDATE agents SET online = true WHERE id = %s", (agent,))
    db.execute("INSERT INTO devices (agent_id, address, model, battery_low) VALUES (%s, 'C0:FF:EE:00:00:01',"
               " 'Nonin 3230', true)", (agent,))
    now = datetime(2026, 11, 24, 10, 0, tzinfo=CPH)
    with pool.connection() as conn:
        first = [a for a in check_technical(conn, now=now, config=load_config(PREVIOUS)) if a.patient_id == pid]
        second = [a for a in check_technical(conn, now=now + timedelta(minutes=5), config=load_config(PREVIOUS))
                  if a.patient_id == pid]
    assert [(a.rule_id, a.detail) for a in first] == [
        ("technical.battery_low", {"device": "C0:FF:EE:00:00:01", "model": "Nonin 3230"})]
    assert second == [] and [t.action for t in _technical(db, pid)] == ["opened"]


def _wide_inhibition() -> AlertingConfig:
    cfg = load_config(PREVIOUS)
    routing = cfg.routing.model_copy(update={"inhibit_rules": (
        InhibitRule(source_match={"severity": "red"}, target_match={"severity": "yellow"}, equal=("patient",)),)})
    return AlertingConfig(ruleset=cfg.ruleset, routing=routing, directory=cfg.directory)


def test_red_mutes_in_the_batch_and_resolving_it_unmutes(seed, db, pool) -> None:  # type: ignore[no-untyped-def]
    cfg = _wide_inhibition()
    pid = seed.patient("heart_failure", "Aarhus")
    t0 = datetime(2026, 11, 24, 18, 0, tzinfo=CPH)
    engine = AlertEngine(pool=pool, config=cfg, clock=FixedClock(t0))
    # One batch: the yellow pulse opens first, the red SpO2 after it; the stage mutes the yellow.
    engine.on_stored([seed.reading(pid, "pulse", t0, pulse=115.0), seed.reading(pid, "spo2", t0, spo2=89.0)])
    alerts = {a.rule_id: a for a in worklist(db, patient_ids=[pid])[0].alerts}
    red, yellow = alerts["heart_failure.spo2.absolute"], alerts["heart_failure.pulse.absolute"]
    assert yellow.muted_by == red.id and red.muted_by is None
    events = db.execute(
        "SELECT n.payload -> 'data' ->> 'muted' FROM notification_log n JOIN alert_transitions t"
        " ON t.id = n.transition_id WHERE t.alert_id = %s AND t.action = 'opened' AND n.channel = 'events'",
        (yellow.id,)).fetchall()
    assert events == [("true",)]  # the opening's live event already says muted
    # Muted: not escalated, however late.
    assert yellow.id not in {a.id for a in run_escalations(db, now=t0 + timedelta(days=1), config=cfg)}
    t1 = t0 + timedelta(days=1, minutes=1)
    resolve(db, alert_id=red.id, by="sygeplejerske", note="ringet op", now=t1, config=cfg)
    row = db.execute("SELECT inhibited_by, escalation_due_at FROM alerts WHERE id = %s", (yellow.id,)).fetchone()
    assert row == (None, t1 + timedelta(hours=4))  # un-muted, its SLA starting now


def test_one_batch_opens_worsens_resolves_and_reopens_in_order(seed, db, pool) -> None:  # type: ignore[no-untyped-def]
    pid = seed.patient("copd", "Aarhus")
    t0 = datetime(2026, 11, 24, 17, 0, tzinfo=CPH)
    engine = AlertEngine(pool=pool, config=load_config(PREVIOUS), clock=FixedClock(t0))
    m = [t0 + timedelta(minutes=i) for i in range(5)]
    engine.on_stored([seed.reading(pid, "spo2", m[0], spo2=88.0), seed.reading(pid, "spo2", m[1], spo2=84.0),
                      seed.reading(pid, "spo2", m[2], spo2=95.0), seed.reading(pid, "spo2", m[3], spo2=96.0),
                      seed.reading(pid, "spo2", m[4], spo2=88.0)])
    ts = [t for t in alert_history(db, patient_id=pid) if t.rule_id == "copd.spo2.absolute"]
    # All at the batch's one "now": the history keeps the batch's order by transition id.
    assert [(t.action, t.severity) for t in ts] == [("opened", "yellow"), ("worsened", "red"), ("resolved", "red"),
                                                    ("opened", "yellow")]
    assert len({t.alert_id for t in ts[:3]}) == 1 and ts[3].alert_id != ts[0].alert_id
    (open_one,) = [a for a in worklist(db, patient_ids=[pid])[0].alerts if a.rule_id == "copd.spo2.absolute"]
    assert open_one.id == ts[3].alert_id and open_one.severity == "yellow"
    row = db.execute("SELECT labels ->> 'severity', breach_count, in_range_count FROM alerts WHERE id = %s",
                     (ts[0].alert_id,)).fetchone()
    assert row == ("red", 2, 2)


def test_technical_check_commits_each_patient_on_its_own(seed, db, pool, database_url) -> None:  # type: ignore[no-untyped-def]
    """The check takes one patient's lock per short transaction: while it waits for a patient
    someone else holds, the patients before it are committed and their locks are free."""
    import threading
    import time

    import psycopg

    from backend.alerting.lifecycle import PATIENT_LOCK_CLASS

    a, b = sorted([seed.patient("copd", "Aarhus"), seed.patient("copd", "Aarhus")])
    now = datetime(2026, 11, 24, 10, 0, tzinfo=CPH)
    for pid in (a, b):
        db.execute("UPDATE agents SET online = false, last_seen_at = %s WHERE patient_id = %s",
                   (now - timedelta(days=2), pid))
    with psycopg.connect(database_url, autocommit=True) as holder, \
            psycopg.connect(database_url, autocommit=True) as probe:
        holder.execute("SELECT pg_advisory_lock(%s, %s)", (PATIENT_LOCK_CLASS, b))
        done: list[Any] = []

        def run() -> None:
            with pool.connection() as conn:
                done.append(check_technical(conn, now=now, config=load_config(PREVIOUS)))

        worker = threading.Thread(target=run)
        worker.start()
        try:
            deadline = time.monotonic() + 30
            while not probe.execute("SELECT 1 FROM alerts WHERE patient_id = %s AND rule_id ="
                                    " 'technical.agent_offline'", (a,)).fetchone():
                assert time.monotonic() < deadline, "patient a's alert was not committed while b was locked"
                time.sleep(0.05)
            assert not done  # still waiting for b
            assert probe.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", (PATIENT_LOCK_CLASS, a)).fetchone()[0]
        finally:
            holder.execute("SELECT pg_advisory_unlock(%s, %s)", (PATIENT_LOCK_CLASS, b))
            worker.join(30)
    assert done and {x.patient_id for x in done[0]} >= {a, b}


def test_scheduled_checks_and_engine_run_together_without_deadlock(seed, db, pool, caplog) -> None:  # type: ignore[no-untyped-def]
    """The engine locks a batch's patients (sorted) for the batch; the escalation, technical
    and missed-measurement checks take one patient at a time. Run side by side on the same
    patients, in both orders, nothing fails and every escalation fires once."""
    import logging
    import threading

    from psycopg.types.json import Jsonb

    from backend.alerting import check_missed_measurements

    cfg = load_config(PREVIOUS)
    t0 = datetime(2026, 11, 24, 17, 0, tzinfo=CPH)
    pids = [seed.patient("copd", "Aarhus") for _ in range(12)]
    for pid in reversed(pids):  # rows stored newest patient first: a scan meets them in descending order
        db.execute("UPDATE agents SET online = false, last_seen_at = %s WHERE patient_id = %s",
                   (t0 - timedelta(days=2), pid))
        db.execute("INSERT INTO monitoring_plans (patient_id, measurements, updated_by, updated_at, starts_at)"
                   " VALUES (%s, %s, 'nurse', %s, %s)",
                   (pid, Jsonb([{"kind": "weight", "times": ["08:00"], "weekdays": list(range(7)),
                                 "grace_minutes": 60}]), t0 - timedelta(days=1), t0 - timedelta(days=1)))
    engine = AlertEngine(pool=pool, config=cfg, clock=FixedClock(t0))
    engine.on_stored([seed.reading(pid, "spo2", t0, spo2=83.0) for pid in pids])  # red, due at 17:30
    rounds = [[seed.reading(pid, "spo2", t0 + timedelta(minutes=i), spo2=83.0 + i % 3)
               for pid in (pids if i % 2 else list(reversed(pids)))] for i in range(1, 25)]
    errors: list[BaseException] = []

    def feed() -> None:
        try:
            for batch in rounds:
                engine.on_stored(batch)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def check() -> None:
        try:
            for i in range(8):
                now = t0 + timedelta(minutes=31 + i)
                with pool.connection() as conn:
                    run_escalations(conn, now=now, config=cfg)
                with pool.connection() as conn:
                    check_technical(conn, now=now, config=cfg)
                with pool.connection() as conn:
                    check_missed_measurements(conn, now=now, config=cfg)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    with caplog.at_level(logging.ERROR, logger="backend.alerting.engine"):
        threads = [threading.Thread(target=feed), threading.Thread(target=check)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    assert not errors, errors
    assert not [r for r in caplog.records if "failed" in r.getMessage()], [r.getMessage() for r in caplog.records]
    assert engine.failed == 0 and engine.evaluated == 12 * 25
    for pid in pids:
        actions = [(t.rule_id, t.action) for t in alert_history(db, patient_id=pid)]
        assert actions.count(("copd.spo2.absolute", "escalated")) == 1, actions
        assert ("technical.agent_offline", "opened") in actions and ("copd.missing", "opened") in actions

