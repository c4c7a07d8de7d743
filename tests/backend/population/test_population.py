"""The population view: adherence for every patient in scope from one set-based query, equal to
the monitoring plan's own slot rules (alert_rules.plans via backend.alerting.plans.adherence);
the risk score; the ranking."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from backend.alerting.plans import adherence as plan_adherence
from backend.population.service import NO_PLAN, OpenAlerts, adherence, population, risk_score
from tests.backend.alerting._clinic import Clinic

# Across the switch to summer time in Europe (29 March 2026), so local slot times are tested too.
NOW = datetime(2026, 4, 10, 12, 0, tzinfo=UTC)
SINCE = NOW - timedelta(days=28)


def _plan(
    db: Any,
    pid: int,
    items: list[dict[str, Any]],
    *,
    starts_at: datetime = SINCE - timedelta(days=60),
    paused_until: datetime | None = None,
    tz: str = "Europe/Copenhagen",
) -> None:
    db.execute(
        "INSERT INTO monitoring_plans (patient_id, measurements, paused_until, timezone, updated_by, updated_at,"
        " starts_at) VALUES (%s, %s, %s, %s, 'test', %s, %s)",
        (pid, json.dumps(items), paused_until, tz, starts_at, starts_at),
    )


def _varied_patients(c: Clinic) -> list[int]:
    """Plans of every shape the slot rules know, with readings in, at the edge of and outside
    the grace windows."""
    db = c.conn
    every_day = c.patient()
    _plan(
        db, every_day, [{"kind": "spo2", "times": ["08:00", "20:00"], "weekdays": list(range(7)), "grace_minutes": 120}]
    )
    for d in range(30):
        day = (SINCE + timedelta(days=d)).replace(hour=6, minute=0)  # 08:00 local in summer, 07:00 in winter
        if d % 3:
            c.reading(every_day, kind="spo2", at=day + timedelta(minutes=50 * (d % 4)))
        if d % 5 == 0:
            c.reading(every_day, kind="pulse", at=day + timedelta(hours=12))  # the wrong kind meets nothing

    some_days = c.patient()
    _plan(
        db,
        some_days,
        [{"kind": "weight", "times": ["07:30"], "weekdays": [0, 2, 4], "grace_minutes": 60}],
        paused_until=SINCE + timedelta(days=4),
    )
    db.execute(
        "INSERT INTO passive_intervals (patient_id, starts_at, ends_at, reason, created_by)"
        " VALUES (%s, %s, %s, 'Indlagt', 'test')",
        (some_days, SINCE + timedelta(days=10), SINCE + timedelta(days=17)),
    )
    db.execute(
        "INSERT INTO passive_intervals (patient_id, starts_at, ends_at, reason, created_by)"
        " VALUES (%s, %s, NULL, 'Ferie', 'test')",
        (some_days, NOW - timedelta(days=2)),
    )
    for d in range(0, 30, 2):
        c.reading(some_days, kind="weight", value=80.0, at=(SINCE + timedelta(days=d)).replace(hour=5, minute=29))

    late_start = c.patient()
    _plan(
        db,
        late_start,
        [
            {"kind": "blood_pressure", "times": ["09:00"], "grace_minutes": 240},
            {"kind": "spo2", "times": ["02:30", "21:00"]},
        ],
        starts_at=NOW - timedelta(days=9),
    )
    for d in range(12):
        c.reading(late_start, kind="blood_pressure", value=130.0, at=(NOW - timedelta(days=d)).replace(hour=10))
        c.reading(late_start, kind="spo2", at=(NOW - timedelta(days=d)).replace(hour=0, minute=45))

    elsewhere = c.patient()
    _plan(db, elsewhere, [{"kind": "spo2", "times": ["08:00"], "grace_minutes": 30}], tz="America/New_York")
    for d in range(28):
        if d % 7:
            c.reading(elsewhere, kind="spo2", at=(SINCE + timedelta(days=d)).replace(hour=12, minute=10))
    night = c.patient()  # 02:30 local: 01:30 UTC in winter, 00:30 UTC in summer
    _plan(db, night, [{"kind": "pulse", "times": ["02:30"], "grace_minutes": 45}])
    for d in range(0, 28, 3):
        c.reading(night, kind="pulse", value=70.0, at=(SINCE + timedelta(days=d)).replace(hour=1, minute=10))
    return [every_day, some_days, late_start, elsewhere, night]


def test_set_based_adherence_equals_the_plans_slot_rules(db: Any) -> None:
    c = Clinic(db)
    patients = _varied_patients(c)
    no_plan = c.patient()
    inactive = c.patient()
    _plan(db, inactive, [{"kind": "spo2", "times": ["08:00"]}])
    db.execute("UPDATE patients SET active = false WHERE id = %s", (inactive,))

    got = adherence(db, patient_ids=[*patients, no_plan, inactive], since=SINCE, now=NOW)
    for pid in patients:
        expected = plan_adherence(db, patient_id=pid, since=SINCE, now=NOW)
        assert (got[pid].planned, got[pid].taken) == (expected.planned, expected.taken), pid
        assert got[pid].share == expected.share
        assert 0 < got[pid].taken < got[pid].planned  # each plan has met and missed slots
    assert no_plan not in got and inactive not in got
    assert NO_PLAN.share is None


def test_a_slot_on_the_spring_switch_keeps_its_full_window(db: Any) -> None:
    """02:30 on 29 March does not exist in Copenhagen; like the plan's slot rules, the slot is due
    at 01:30 UTC. Its window is ± grace in elapsed time (the pure rules add the grace on the wall
    clock, which narrows this one window by the skipped hour: a documented difference)."""
    c = Clinic(db)
    pid = c.patient()
    _plan(db, pid, [{"kind": "pulse", "times": ["02:30"], "grace_minutes": 45}])
    switch = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    c.reading(pid, kind="pulse", value=70.0, at=switch + timedelta(minutes=40))
    got = adherence(db, patient_ids=[pid], since=switch - timedelta(hours=12), now=switch + timedelta(hours=12))
    assert (got[pid].planned, got[pid].taken) == (1, 1)
    # The next night's slot is 00:30 UTC (summer time): a reading at 01:30 UTC is an hour late.
    c.reading(pid, kind="pulse", value=70.0, at=switch + timedelta(days=1))
    got = adherence(db, patient_ids=[pid], since=switch + timedelta(hours=12), now=switch + timedelta(hours=36))
    assert (got[pid].planned, got[pid].taken) == (1, 0)


def test_every_patient_in_scope_is_scored_with_adherence(db: Any) -> None:
    """No silent subset: far more patients than the old 500-patient cap, all with adherence."""
    c = Clinic(db)
    n = 520
    rows = db.execute(
        "INSERT INTO patients (external_ref, name, programme, municipality)"
        " SELECT %s || g, 'Borger ' || g, 'copd', %s FROM generate_series(1, %s) g RETURNING id",
        (f"pop-{c.tag}-", c.municipality, n),
    ).fetchall()
    pids = [int(r[0]) for r in rows]
    db.execute(
        "INSERT INTO monitoring_plans (patient_id, measurements, updated_by, starts_at)"
        ' SELECT id, \'[{"kind": "spo2", "times": ["08:00"], "grace_minutes": 120}]\', \'test\', %s'
        " FROM unnest(%s::bigint[]) id",
        (NOW - timedelta(days=40), pids),
    )
    db.execute("INSERT INTO agents (id, patient_id) SELECT 'pop-ag-' || id, id FROM unnest(%s::bigint[]) id", (pids,))
    # Every other patient measured each morning (07:00 UTC is 08:00 or 09:00 local: inside the window).
    db.execute(
        """INSERT INTO measurements (id, measured_at, patient_id, agent_id, kind, value, components, unit,
                                     device_clock_trusted, agent_received_at)
           SELECT gen_random_uuid(), t, id, 'pop-ag-' || id, 'spo2', 95, '{"spo2": 95}', '%%', true, t
           FROM unnest(%s::bigint[]) id
           CROSS JOIN LATERAL (SELECT %s::timestamptz - d * interval '1 day' AS t FROM generate_series(1, 27) d) x
           WHERE id %% 2 = 0""",
        (pids, NOW.replace(hour=7)),
    )
    view = population(db, user=c.nurse(), now=NOW)
    scored = {p.patient_id: p for p in view.patients}
    assert set(pids) <= set(scored)
    for pid in pids:
        p = scored[pid]
        assert p.planned > 0 and p.adherence is not None
        assert (p.adherence > 0.9) if pid % 2 == 0 else (p.adherence == 0.0)
    # The non-measuring half ranks above the measuring half (20 points for missing everything).
    risks = [p.risk for p in view.patients if p.patient_id in set(pids)]
    assert risks == sorted(risks, reverse=True)
    assert {scored[pid].risk for pid in pids if pid % 2} == {20.0}


def test_open_alerts_and_deviation_rank_first(db: Any) -> None:
    c = Clinic(db)
    quiet, red, yellow = c.patient(), c.patient(), c.patient()
    c.alert(red, severity="red", team_key=c.nurse_team[1])
    c.alert(yellow, severity="yellow", team_key=c.nurse_team[1])
    c.alert(yellow, severity="blue", team_key=c.nurse_team[1], state="acknowledged")
    db.execute(
        "INSERT INTO patient_baselines (patient_id, kind, component, mean, sd, n_days)"
        " VALUES (%s, 'weight', 'weight', 80, 0.5, 14)",
        (quiet,),
    )
    c.reading(quiet, kind="weight", value=82.0, at=datetime.now(UTC) - timedelta(hours=1))
    view = population(db, user=c.nurse())
    mine = [p for p in view.patients if p.patient_id in (quiet, red, yellow)]
    assert [p.patient_id for p in mine] == [red, yellow, quiet]
    assert mine[1].open == OpenAlerts(red=0, yellow=1, blue=1, technical=0)
    assert mine[2].deviation_z == 4.0 and mine[2].deviation_kind == "weight" and mine[2].risk == 20.0
    assert view.days == 28 and view.patients[0].risk >= view.patients[-1].risk
    # Another scope sees none of them.
    assert not {quiet, red, yellow} & {p.patient_id for p in population(db, user=c.specialist()).patients}


def test_risk_score() -> None:
    none = OpenAlerts(0, 0, 0, 0)
    assert risk_score(none, deviation_z=None, adherence=None) == 0.0
    assert risk_score(OpenAlerts(1, 2, 3, 4), deviation_z=None, adherence=None) == 100 + 60 + 30 + 12
    assert risk_score(none, deviation_z=10.0, adherence=None) == 30.0  # |z| counts up to 6
    assert risk_score(none, deviation_z=None, adherence=0.25) == 15.0
    assert risk_score(none, deviation_z=1.234, adherence=1.0) == 6.2


def test_without_a_stored_baseline_the_deviation_is_against_the_citizens_own_days(db: Any) -> None:
    """Issue 13: deviation showed "–" for every citizen (no stored baseline in the demo)."""
    c = Clinic(db)
    gaining, steady, new, silent = c.patient(), c.patient(), c.patient(), c.patient()
    now = datetime.now(UTC).replace(hour=11, minute=0, second=0, microsecond=0)
    weights = [80.0, 80.4, 79.8, 80.2, 80.0, 79.6, 80.6, 80.0, 80.2, 79.8]  # median 80.0, MAD 0.2
    for d, w in enumerate(weights):
        at = now - timedelta(days=len(weights) - d)
        c.reading(gaining, kind="weight", value=w, at=at)
        c.reading(steady, kind="weight", value=w, at=at)
    c.reading(gaining, kind="weight", value=83.0, at=now)  # +3 kg today
    c.reading(steady, kind="weight", value=80.2, at=now)
    for d in range(3):
        c.reading(new, kind="spo2", value=94.0, at=now - timedelta(days=d))
    _plan(db, silent, [{"kind": "spo2", "times": ["08:00"]}], starts_at=now + timedelta(days=1))
    view = population(db, user=c.nurse(), now=now + timedelta(minutes=5))
    got = {p.patient_id: p for p in view.patients}

    dev = got[gaining].deviation
    assert dev is not None and dev.source == "own_history" and dev.kind == "weight" and dev.days == 10
    assert dev.value == 83.0 and dev.usual == 80.0
    assert dev.scale == 0.5  # 1.4826 x 0.2 = 0.30 is below the weight floor of 0.5 kg
    assert dev.z == 6.0 and got[gaining].deviation_z == 6.0
    assert got[gaining].risk == 30.0 and [p.what for p in got[gaining].parts] == ["deviation"]
    steady_dev = got[steady].deviation
    assert steady_dev is not None and abs(steady_dev.z) < 1 and got[gaining].risk > got[steady].risk
    assert got[new].deviation is None and got[new].deviation_missing == "few_days"
    assert got[silent].deviation is None and got[silent].deviation_missing == "no_readings"
    # A plan that has nothing due yet is not "no plan".
    assert got[silent].has_plan and got[silent].adherence is None and not got[new].has_plan


def test_risk_parts_add_up_to_the_score() -> None:
    from backend.population.service import risk_parts

    cases = [(OpenAlerts(1, 2, 0, 1), 2.5, 0.75), (OpenAlerts(0, 0, 0, 0), None, None),
             (OpenAlerts(0, 0, 1, 0), 9.0, 0.0)]
    for open_alerts, z, adh in cases:
        parts = risk_parts(open_alerts, deviation_z=z, adherence=adh)
        assert round(sum(p.points for p in parts), 1) == risk_score(open_alerts, deviation_z=z, adherence=adh)
    parts = risk_parts(OpenAlerts(1, 2, 0, 1), deviation_z=-2.5, adherence=0.75)
    assert [(p.what, p.count, p.points) for p in parts] == [
        ("red", 1, 100), ("yellow", 2, 60), ("technical", 1, 3), ("deviation", 2.5, 12.5), ("missed", 0.25, 5.0)]


def test_the_own_history_query_leaves_the_callers_transaction_settings_alone(db: Any) -> None:
    from backend.population.service import own_history_deviation

    c = Clinic(db)
    pid = c.patient()
    with db.transaction():
        db.execute("SET LOCAL work_mem = '5MB'")
        own_history_deviation(db, patient_ids=[pid], since=datetime.now(UTC) - timedelta(days=28))
        row = db.execute("SELECT current_setting('enable_nestloop'), current_setting('work_mem')").fetchone()
    assert row == ("on", "5MB")
