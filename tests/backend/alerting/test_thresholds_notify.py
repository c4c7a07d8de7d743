from __future__ import annotations

import re
import time
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from alert_rules.loader import default_dir
from backend.alerting import (
    FixedClock,
    InvalidThreshold,
    InvalidTransition,
    clear_threshold_override,
    set_programme_default,
    set_threshold_override,
    snooze,
    threshold_audit,
    thresholds_for,
    worklist,
)
from backend.alerting.config import NotifierSettings, load_config
from backend.alerting.engine import AlertEngine
from backend.alerting.jobs import run_escalations
from backend.alerting.notify import Dispatcher
from backend.embedded import free_port

# The engine, the writer and the order machinery on the previous packaged rules (alert_rules/
# previous): their absolute yellow/red SpO2 bands, baseline and trend rules; the shipped defaults
# have no yellow SpO2 band any more (issue 11).
PREVIOUS = default_dir() / "previous"

CPH = ZoneInfo("Europe/Copenhagen")


CFG = load_config(PREVIOUS)
"""One configuration for the engine and the screens' service functions, as a process has."""


def _t(rows: list[Any], rule: str, field: str) -> Any:
    return next(t for t in rows if t.rule_id == rule and t.field == field)


def test_override_stays_linked_and_is_audited(seed, db, pool) -> None:  # type: ignore[no-untyped-def]
    a, b = seed.patient("hypertension", "Aarhus"), seed.patient("hypertension", "Aarhus")
    set_threshold_override(db, config=CFG, patient_id=a, rule_id="hypertension.bp.systolic", field="yellow_high",
                           value=145, by="dr-l", reason="ældre borger, mål 145")
    with pytest.raises(InvalidThreshold):
        set_threshold_override(db, config=CFG, patient_id=a, rule_id="hypertension.bp.systolic", field="yellow_high",
                               value=200, by="dr-l", reason="over red_high")
    with pytest.raises(InvalidThreshold):
        set_threshold_override(db, config=CFG, patient_id=a, rule_id="copd.spo2.absolute", field="red_low", value=80,
                               by="dr-l", reason="wrong programme")
    set_programme_default(db, config=CFG, programme="hypertension", rule_id="hypertension.bp.systolic",
                          field="red_high", value=175, by="overlæge", reason="regional instruks")
    try:
        ta, tb = thresholds_for(db, config=CFG, patient_id=a), thresholds_for(db, config=CFG, patient_id=b)
        assert _t(ta, "hypertension.bp.systolic", "yellow_high").value == 145
        assert _t(ta, "hypertension.bp.systolic", "yellow_high").overridden
        assert _t(ta, "hypertension.bp.systolic", "red_high").value == 175  # the linked default reached a
        assert _t(tb, "hypertension.bp.systolic", "yellow_high").value == 135
        # Evaluation uses, and stores, what is in force
        clock = FixedClock(datetime(2026, 11, 24, 9, 0, tzinfo=CPH))
        engine = AlertEngine(pool=pool, config=load_config(PREVIOUS), clock=clock)
        r = seed.reading(a, "blood_pressure", clock.now(), systolic=140.0, diastolic=80.0, mean_arterial=100.0)
        engine.on_stored([r])
        row = db.execute("SELECT thresholds, fired FROM reading_evaluations WHERE measurement_id = %s",
                         (r.id,)).fetchone()
        assert row[0]["hypertension.bp.systolic"]["yellow_high"] == 145.0
        assert row[0]["hypertension.bp.systolic"]["red_high"] == 175.0 and row[1] == {}
        clear_threshold_override(db, config=CFG, patient_id=a, rule_id="hypertension.bp.systolic", field="yellow_high",
                                 by="dr-l", reason="tilbage til standard")
        after = thresholds_for(db, config=CFG, patient_id=a)
        assert not _t(after, "hypertension.bp.systolic", "yellow_high").overridden
        audit = threshold_audit(db, patient_id=a)
        assert [(c.scope, c.field, c.old_value, c.new_value) for c in reversed(audit)] == [
            ("patient", "yellow_high", 135.0, 145.0), ("programme", "red_high", 180.0, 175.0),
            ("patient", "yellow_high", 145.0, 135.0)]
        assert all(c.actor and c.reason for c in audit)
    finally:
        db.execute("DELETE FROM alert_programme_defaults WHERE programme = 'hypertension'")


def test_inhibition_snooze_and_no_duplicates(seed, db, pool) -> None:  # type: ignore[no-untyped-def]
    pid = seed.patient("heart_failure", "Aarhus")
    t0 = datetime(2026, 11, 24, 18, 0, tzinfo=CPH)
    clock = FixedClock(t0)
    engine = AlertEngine(pool=pool, config=load_config(PREVIOUS), clock=clock)
    engine.on_stored([seed.reading(pid, "spo2", t0, spo2=89.0)])  # red (<= 91)
    engine.on_stored([seed.reading(pid, "spo2", t0 + timedelta(minutes=1), spo2=88.0)])  # same alert, updated
    engine.on_stored([seed.reading(pid, "pulse", t0 + timedelta(minutes=1), pulse=115.0)])  # yellow, other kind
    entry = worklist(db, patient_ids=[pid])[0]
    assert sum(1 for a in entry.alerts if a.rule_id == "heart_failure.spo2.absolute") == 1
    pulse = next(a for a in entry.alerts if a.rule_id == "heart_failure.pulse.absolute")
    assert pulse.muted_by is None  # a red SpO2 mutes lesser alerts of the same kind only
    red = next(a for a in entry.alerts if a.rule_id == "heart_failure.spo2.absolute")
    snoozed = snooze(db, config=CFG, alert_id=red.id, until=t0 + timedelta(hours=2), reason="ringer tilbage",
                     by="sygeplejerske", now=t0)
    with pytest.raises(InvalidTransition):
        snooze(db, config=CFG, alert_id=red.id, until=t0 - timedelta(hours=1), reason="x", by="y", now=t0)
    assert snoozed.snoozed_until == t0 + timedelta(hours=2)
    esc = run_escalations(db, now=t0 + timedelta(hours=1), config=load_config(PREVIOUS))
    assert red.id not in {a.id for a in esc}  # snoozed: no escalation




def test_email_through_a_real_smtp_server_once(seed, db, pool) -> None:  # type: ignore[no-untyped-def]
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Sink

    class Keep(Sink):
        def __init__(self) -> None:
            self.messages: list[Any] = []

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            self.messages.append(envelope)
            return "250 OK"

    handler = Keep()
    port = free_port()
    ctl = Controller(handler, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        notifier = NotifierSettings(smtp_host="127.0.0.1", smtp_port=port, smtp_from="nearcare@test",
                                    webhook_url=None)
        pid = seed.patient("copd", "Aarhus")
        t0 = datetime(2026, 11, 24, 23, 0, tzinfo=CPH)  # night: the lung team, which has an email contact
        engine = AlertEngine(pool=pool, config=load_config(PREVIOUS), clock=FixedClock(t0), notifier=notifier)
        engine.on_stored([seed.reading(pid, "spo2", t0, spo2=83.0)])
        dispatcher = Dispatcher(pool=pool, settings=notifier)
        (log_id,) = db.execute(
            "SELECT n.id FROM notification_log n JOIN alerts a ON a.id = n.alert_id"
            " WHERE a.patient_id = %s AND n.channel = 'email'", (pid,)
        ).fetchone()

        def mine() -> list[Any]:
            # The session database is shared: other tests' pending notifications may be sent by
            # this dispatcher too, so pick this patient's by the id in its Message-ID.
            tag = f"<notification-{log_id}@nearcare>".encode()
            return [m for m in handler.messages if tag in m.content]

        deadline = time.monotonic() + 10
        while not mine() and time.monotonic() < deadline:
            dispatcher.deliver_due()
            time.sleep(0.05)
        dispatcher.deliver_due()
        assert len(mine()) == 1
        assert mine()[0].rcpt_tos == ["lungeteam@auh.example"]
        import email
        from email.policy import default

        msg = email.message_from_bytes(mine()[0].content, policy=default)
        assert str(msg["Subject"]).startswith("[RØD] Ny alarm: Lav iltmætning")
        assert str(msg["Message-ID"]).startswith("<notification-")
        # No health data in an email: the SpO2 of 83 must not appear. The random patient ref and
        # the link's alert id are not health data but may contain "83" by chance.
        (ref,) = db.execute("SELECT external_ref FROM patients WHERE id = %s", (pid,)).fetchone()
        body = re.sub(r"https?://\S+", "", msg.get_content().replace(ref, ""))
        assert "83" not in body
        row = db.execute("SELECT status, attempts FROM notification_log n JOIN alerts a ON a.id = n.alert_id"
                         " WHERE a.patient_id = %s AND n.channel = 'email'", (pid,)).fetchone()
        assert tuple(row) == ("sent", 1)
    finally:
        ctl.stop()


def test_webhook_failure_is_retried_with_backoff(seed, db, pool) -> None:  # type: ignore[no-untyped-def]
    notifier = NotifierSettings(webhook_url=f"http://127.0.0.1:{free_port()}/nobody", webhook_secret="k",
                                smtp_host=None, backoff_base_s=30)
    pid = seed.patient("copd", "Randers")
    t0 = datetime(2026, 11, 24, 23, 0, tzinfo=CPH)
    AlertEngine(pool=pool, config=load_config(PREVIOUS), clock=FixedClock(t0), notifier=notifier).on_stored(
        [seed.reading(pid, "spo2", t0, spo2=83.0)])
    Dispatcher(pool=pool, settings=notifier).deliver_due(limit=500)
    row = db.execute("SELECT status, attempts, last_error, next_attempt_at > now() + interval '20 seconds'"
                     " FROM notification_log n JOIN alerts a ON a.id = n.alert_id"
                     " WHERE a.patient_id = %s AND n.channel = 'webhook'", (pid,)).fetchone()
    assert row[0] == "pending" and row[1] == 1 and row[2] and row[3]
