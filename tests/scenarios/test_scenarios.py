"""End to end: simulated citizens -> real broker -> real ingest -> alert rules -> routing."""

from __future__ import annotations

import http.server
import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from backend.alerting import (
    FixedClock,
    add_passive_interval,
    alert_history,
    check_missed_measurements,
    set_monitoring_plan,
    worklist,
)
from backend.alerting.config import NotifierSettings, load_config
from backend.alerting.jobs import run_escalations
from backend.alerting.notify import sign
from backend.embedded import wait_for
from edge_agent.simulate import SimReading, readings_between

CPH = ZoneInfo("Europe/Copenhagen")
# A Monday in the past: ingest stores past readings as they are; the alerting clock is ours.
LIVE = datetime(2025, 11, 10, 6, 0, tzinfo=CPH).astimezone(UTC)


def transitions(conn: Any, pid: int, rule: str) -> list[Any]:
    return [t for t in alert_history(conn, patient_id=pid) if t.rule_id == rule]


def expected_copd_team(at: datetime, municipal: str) -> str:
    local = at.astimezone(CPH)
    t = local.hour + local.minute / 60
    if local.weekday() < 5 and 8 <= t < 15:
        return "auh-lungeteam"  # red in the hospital's day shift
    return municipal if 7 <= t < 22 else "auh-lungeteam"


def test_copd_exacerbation_yellow_then_red_routed(make_platform, citizen) -> None:  # type: ignore[no-untyped-def]
    p = citizen("copd_exacerbation", spo2=91.0)
    plat = make_platform(FixedClock(LIVE))
    pid = plat.enrol(p)
    history = list(readings_between(p, LIVE - timedelta(days=10), LIVE, live_start=LIVE))
    plat.send(p, history, at=LIVE)
    with plat.conn() as c:
        assert worklist(c, patient_ids=[pid]) == []  # a stable fortnight raises nothing
    for r in readings_between(p, LIVE, LIVE + timedelta(days=4), live_start=LIVE):
        plat.send(p, [r], at=r.at)
    with plat.conn() as c:
        # the shipped rules (issue 11): the personal composite (pulse up, SpO2 down against the
        # citizen's own fortnight) opens yellow first; SpO2 <= 85 % then opens red
        watch = [(t.action, t.severity) for t in transitions(c, pid, "copd.oximetry.personal")]
        assert watch and watch[0] == ("opened", "yellow"), watch
        opened = transitions(c, pid, "copd.oximetry.personal")[0]
        ts = transitions(c, pid, "copd.spo2.absolute")
        actions = [(t.action, t.severity) for t in ts]
        assert actions and actions[0] == ("opened", "red"), actions
        assert len({t.alert_id for t in ts}) == 1  # one alert identity, updated, never duplicated
        red = ts[0]
        assert opened.at < red.at  # the watch band saw it before the dangerous value
        assert opened.team_key == "aarhus-sygepleje"  # yellow: the citizen's municipal nurses
        assert red.team_key == expected_copd_team(red.at, "aarhus-sygepleje")
        entry = worklist(c, patient_ids=[pid])[0]
        assert entry.worst_severity == "red" and entry.municipality == "Aarhus"
        assert sum(1 for a in entry.alerts if a.rule_id == "copd.spo2.absolute") == 1


def test_heart_failure_weight_gain(make_platform, citizen) -> None:  # type: ignore[no-untyped-def]
    p = citizen("hf_weight_gain")
    plat = make_platform(FixedClock(LIVE))
    pid = plat.enrol(p)
    # a fortnight of history: the weight rule's baseline is the median of 21 days ending 7 days
    # back, active from 7 such days
    plat.send(p, list(readings_between(p, LIVE - timedelta(days=14), LIVE, live_start=LIVE)), at=LIVE)
    for day in range(4):
        batch = list(readings_between(p, LIVE + timedelta(days=day), LIVE + timedelta(days=day + 1), live_start=LIVE))
        if batch:
            plat.send(p, batch, at=batch[-1].at)
    with plat.conn() as c:
        ts = transitions(c, pid, "heart_failure.weight.personal")
        assert ts and ts[0].action == "opened" and ts[0].severity == "yellow"
        assert ts[0].team_key in ("randers-akutteam", "auh-hjerteteam")
        entry = worklist(c, patient_ids=[pid])[0]
        alert = next(a for a in entry.alerts if a.rule_id == "heart_failure.weight.personal")
        assert alert.title == "Vægtøgning i forhold til egen variation"
        row = c.execute("SELECT thresholds, detail FROM alerts WHERE id = %s", (alert.id,)).fetchone()
        packaged = load_config().ruleset.by_id["heart_failure.weight.personal"].thresholds
        assert row[0]["yellow"] == packaged.yellow and row[0]["lag_days"] == packaged.lag_days  # in force, stored
        assert row[1]["z"][0] >= packaged.yellow  # today's weight in the citizen's own day-to-day spreads


def _planned_citizen(plat: Any, citizen: Any) -> tuple[Any, int]:
    p = citizen("stable")
    pid = plat.enrol(p)
    with plat.conn() as c:
        set_monitoring_plan(c, patient_id=pid, by="nurse", now=LIVE - timedelta(days=3), topics=plat.settings.topics,
                            config=load_config(),
                            plan=[{"kind": "spo2", "times": ["08:00"], "grace_minutes": 120}])
    return p, pid


def test_missed_morning_measurement_raises_blue_to_municipal(make_platform, citizen) -> None:  # type: ignore[no-untyped-def]
    plat = make_platform(FixedClock(LIVE))
    p, pid = _planned_citizen(plat, citizen)
    # Yesterday's readings arrive through the broker; this morning's do not.
    yesterday = [r for r in readings_between(p, LIVE - timedelta(days=1), LIVE, live_start=LIVE)]
    plat.send(p, yesterday, at=LIVE)
    cfg = load_config()
    with plat.conn() as c:
        at_0950 = datetime(2025, 11, 10, 9, 50, tzinfo=CPH)
        assert check_missed_measurements(c, now=at_0950, config=cfg) == [] or all(
            a.patient_id != pid for a in check_missed_measurements(c, now=at_0950, config=cfg))  # still in grace
        raised = [a for a in check_missed_measurements(c, now=at_0950 + timedelta(minutes=15), config=cfg)
                  if a.patient_id == pid]
        assert len(raised) == 1 and raised[0].severity == "blue"
        assert raised[0].team_key == "silkeborg-sygepleje" and p.municipality == "Silkeborg"
        assert raised[0].detail["missed"][-1]["kind"] == "spo2"
        # Run again (a second instance, a restart): nothing new.
        assert [a for a in check_missed_measurements(c, now=at_0950 + timedelta(minutes=30), config=cfg)
                if a.patient_id == pid] == []
    # The late measurement arrives: the blue alert resolves itself.
    late = [r for r in readings_between(p, LIVE, LIVE + timedelta(hours=12), live_start=LIVE) if r.role == "oximeter"]
    plat.send(p, late[:1], at=datetime(2025, 11, 10, 10, 40, tzinfo=CPH))  # synced late
    with plat.conn() as c:
        ts = transitions(c, pid, "copd.missing")
        assert [t.action for t in ts] == ["opened", "resolved"]


def test_passive_interval_raises_no_blue(make_platform, citizen) -> None:  # type: ignore[no-untyped-def]
    plat = make_platform(FixedClock(LIVE))
    _p, pid = _planned_citizen(plat, citizen)
    with plat.conn() as c:
        add_passive_interval(c, patient_id=pid, starts_at=LIVE - timedelta(hours=2), ends_at=LIVE + timedelta(days=2),
                             reason="indlagt på AUH", by="nurse")
        cfg = load_config()
        at = datetime(2025, 11, 11, 12, 0, tzinfo=CPH)
        assert [a for a in check_missed_measurements(c, now=at, config=cfg) if a.patient_id == pid] == []
        assert worklist(c, patient_ids=[pid]) == []


class _Hook(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *a: Any) -> None:
        pass


def _red_at_1700(plat: Any, citizen: Any) -> tuple[Any, int]:
    p = citizen("copd_exacerbation")
    pid = plat.enrol(p)
    red = SimReading(at=datetime(2025, 11, 11, 16, 58, tzinfo=CPH).astimezone(UTC), role="oximeter",
                  values={"spo2": 83.0, "pulse": 104.0}, device_time=None)
    plat.send(p, [red], at=datetime(2025, 11, 11, 17, 0, tzinfo=CPH))
    return p, pid


def test_red_unacknowledged_at_1700_escalates_after_sla(make_platform, citizen) -> None:  # type: ignore[no-untyped-def]
    clock = FixedClock(LIVE)
    plat = make_platform(clock)
    _p, pid = _red_at_1700(plat, citizen)
    cfg = load_config()
    with plat.conn() as c:
        alert = next(a for a in worklist(c, patient_ids=[pid])[0].alerts if a.rule_id == "copd.spo2.absolute")
        assert (alert.severity, alert.team_key) == ("red", "aarhus-sygepleje")
        assert run_escalations(c, now=datetime(2025, 11, 11, 17, 29, tzinfo=CPH), config=cfg) == []
        done = run_escalations(c, now=datetime(2025, 11, 11, 17, 31, tzinfo=CPH), config=cfg)
        mine = [a for a in done if a.id == alert.id]
        assert len(mine) == 1 and mine[0].team_key == "auh-lungeteam" and mine[0].escalation_level == 1
        handover = transitions(c, pid, "copd.spo2.absolute")[-1]
        assert (handover.action, handover.from_team, handover.team_key) == ("escalated", "aarhus-sygepleje",
                                                                            "auh-lungeteam")
        assert "Aarhus Kommune sygepleje" in (handover.note or "")


def test_restart_in_the_middle_escalates_exactly_once(make_platform, citizen, settings) -> None:  # type: ignore[no-untyped-def]
    from backend import roles

    _Hook.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    notifier = NotifierSettings(webhook_url=f"http://127.0.0.1:{server.server_address[1]}/hook",
                                webhook_secret="s3cret", smtp_host=None)
    try:
        clock = FixedClock(LIVE)
        plat = make_platform(clock, notifier)
        _p, pid = _red_at_1700(plat, citizen)
        with plat.conn() as c:
            alert_id = c.execute("SELECT id FROM alerts WHERE patient_id = %s AND rule_id = 'copd.spo2.absolute'",
                                 (pid,)).fetchone()[0]
        plat.close()  # the backend goes down at 17:05, before the SLA ends
        plat_list: list[Any] = []
        # ...and two instances come back at 17:45; both run the scheduler, one leads.
        late = FixedClock(datetime(2025, 11, 11, 17, 45, tzinfo=CPH))
        for _ in range(2):
            parts = roles.open_parts(settings, roles=(roles.RULES, roles.SCHEDULER), clock=late, notifier=notifier)
            plat_list.append(roles.start(parts, (roles.RULES, roles.SCHEDULER)))

        def delivered() -> list[dict[str, Any]]:
            return [json.loads(b) for _h, b in _Hook.received if json.loads(b)["alert_id"] == alert_id]

        wait_for(lambda: any(d["event"] == "escalated" for d in delivered()), what="escalation webhook")
        import time

        time.sleep(2.5)  # several scheduler and dispatcher rounds on both instances
        for running in plat_list:
            roles.stop(running)
        with psycopg_connect(settings.database_url) as c:
            actions = [t.action for t in transitions(c, pid, "copd.spo2.absolute")]
            assert actions.count("escalated") == 1, actions
            rows = c.execute("SELECT channel, status FROM notification_log n JOIN alert_transitions t"
                             " ON t.id = n.transition_id WHERE t.alert_id = %s AND t.action = 'escalated'",
                             (alert_id,)).fetchall()
            assert sorted(rows) == [("events", "sent"), ("webhook", "sent")]
        escalations = [d for d in delivered() if d["event"] == "escalated"]
        assert len(escalations) == 1 and escalations[0]["team_key"] == "auh-lungeteam"
        hdrs, body = next((h, b) for h, b in _Hook.received if json.loads(b)["event"] == "escalated")
        assert hdrs["X-Nearcare-Signature"] == sign("s3cret", body)
        assert sum(1 for d in delivered() if d["event"] == "opened") == 1  # the opening was sent once too
    finally:
        server.shutdown()
        server.server_close()


def psycopg_connect(url: str) -> Any:
    import psycopg

    return psycopg.connect(url, autocommit=True)
