from __future__ import annotations

import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from alert_rules.baseline import Baseline, compute_baseline
from alert_rules.errors import RuleFileError, ThresholdError
from alert_rules.evaluate import Context, Observation, evaluate
from alert_rules.holidays import danish_public_holidays, easter_sunday
from alert_rules.loader import ROUTING_FILE, default_dir, load_model, load_ruleset
from alert_rules.plans import PlanLine, missed_slots, planned_slots
from alert_rules.routing import RoutingConfig, route
from vitals.kinds import MeasurementKind

PREVIOUS = default_dir() / "previous"

CPH = ZoneInfo("Europe/Copenhagen")
T0 = datetime(2026, 11, 24, 9, 0, tzinfo=CPH)


@pytest.fixture(scope="module")
def rules():  # type: ignore[no-untyped-def]
    # The state machine and the rule kinds (absolute yellow/red bands, baseline, trend) on the
    # previous packaged defaults, kept in alert_rules/previous: the shipped defaults have no
    # absolute yellow SpO2 band or baseline rule any more (issue 11).
    return load_ruleset(PREVIOUS)


@pytest.fixture(scope="module")
def routing() -> RoutingConfig:
    return load_model(default_dir() / ROUTING_FILE, RoutingConfig)


def obs(kind: str, at: datetime, **values: float) -> Observation:
    return Observation(MeasurementKind(kind), values, at)


def fired(findings):  # type: ignore[no-untyped-def]
    return {f.rule_id: f.severity for f in findings if f.fired}


def test_every_rule_and_threshold_has_a_source(rules) -> None:  # type: ignore[no-untyped-def]
    assert len(rules.by_id) >= 15
    for rule in rules.by_id.values():
        assert len(rule.source) > 10, rule.id
    for f in rules.files.values():
        assert f.source


BROKEN = """programme: copd
source: "test file"
rules:
  - id: copd.x.absolute
    kind: absolute
    title: "Lav iltmætning"
    measurement: spo2
    source: "a source"
    thresholds:
      red_low: 85
      yellow_low: lots
"""


def test_check_names_file_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "copd.yaml"
    bad.write_text(BROKEN)
    with pytest.raises(RuleFileError) as e:
        load_ruleset(tmp_path)
    assert (e.value.file, e.value.line, e.value.field) == (str(bad), 11, "rules[0].thresholds.yellow_low")
    proc = subprocess.run([sys.executable, "-m", "nearcare_cli", "rules", "check", str(tmp_path)],
                          capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert proc.returncode == 1
    assert f"{bad}:11: rules[0].thresholds.yellow_low:" in proc.stderr


@pytest.mark.parametrize(
    ("text", "line", "field"),
    [
        (BROKEN.replace("yellow_low: lots", "yellow_low: 80"), 9, "rules[0].thresholds"),  # limits out of order
        (BROKEN.replace("    source: \"a source\"\n", "").replace("lots", "88"), 4, "rules[0].source"),
        (BROKEN.replace("kind: absolute", "kind: absolut"), 5, "rules[0].kind"),
        (BROKEN.replace("measurement: spo2", "measurement: spo2\n    colour: red").replace("lots", "88"), 8,
         "rules[0].colour"),
        ("programme: copd\nsource: x\nrules: [\n", 4, None),
    ],
)
def test_check_rejects(tmp_path: Path, text: str, line: int, field: str | None) -> None:
    (tmp_path / "r.yaml").write_text(text)
    with pytest.raises(RuleFileError) as e:
        load_ruleset(tmp_path)
    assert e.value.line == line
    if field:
        assert e.value.field == field


def test_duplicate_rule_id_across_files(tmp_path: Path) -> None:
    ok = BROKEN.replace("lots", "88")
    (tmp_path / "a.yaml").write_text(ok)
    (tmp_path / "b.yaml").write_text(ok)
    with pytest.raises(RuleFileError, match=r"already defined in a\.yaml"):
        load_ruleset(tmp_path)


def test_absolute_yellow_red_and_quality(rules) -> None:  # type: ignore[no-untyped-def]
    r = rules.rules_for("copd")
    ctx = Context("copd")
    assert fired(evaluate(r, ctx, obs("spo2", T0, spo2=93))) == {}
    assert fired(evaluate(r, ctx, obs("spo2", T0, spo2=89)))["copd.spo2.absolute"] == "yellow"
    assert fired(evaluate(r, ctx, obs("spo2", T0, spo2=84)))["copd.spo2.absolute"] == "red"
    weak = Observation(MeasurementKind.SPO2, {"spo2": 80}, T0, quality=("weak_signal",))
    assert "copd.spo2.absolute" not in fired(evaluate(r, ctx, weak))


def test_override_applies_and_is_validated(rules) -> None:  # type: ignore[no-untyped-def]
    r = rules.rules_for("copd")
    ctx = Context("copd", overrides={"copd.spo2.absolute": {"yellow_low": 86, "red_low": 82}})
    f = next(x for x in evaluate(r, ctx, obs("spo2", T0, spo2=87)) if x.rule_id == "copd.spo2.absolute")
    assert f.severity is None and f.thresholds["yellow_low"] == 86
    with pytest.raises(ThresholdError):
        rules.rule("copd.spo2.absolute").with_thresholds({"yellow_low": 80})  # below red_low 85


def test_overrides_per_patient_stay_apart_and_invalid_ones_always_raise(rules) -> None:  # type: ignore[no-untyped-def]
    # The evaluator compiles each rule under each set of overrides once: patients with different
    # limits on the same rule, evaluated in turn, must each get their own.
    r = rules.rules_for("copd")
    strict = Context("copd", overrides={"copd.spo2.absolute": {"yellow_low": 90}})
    lenient = Context("copd", overrides={"copd.spo2.absolute": {"yellow_low": 86}})
    plain = Context("copd")

    def spo2_finding(ctx: Context):  # type: ignore[no-untyped-def]
        return next(x for x in evaluate(r, ctx, obs("spo2", T0, spo2=88)) if x.rule_id == "copd.spo2.absolute")

    for _ in range(2):
        assert spo2_finding(strict).severity == "yellow" and spo2_finding(strict).thresholds["yellow_low"] == 90
        assert spo2_finding(lenient).severity is None and spo2_finding(lenient).thresholds["yellow_low"] == 86
        assert spo2_finding(plain).severity == "yellow" and spo2_finding(plain).thresholds["yellow_low"] == 89
    # A finding's thresholds are its own: changing one does not reach the next evaluation.
    first = spo2_finding(plain)
    first.thresholds["yellow_low"] = 0  # type: ignore[index]
    assert spo2_finding(plain).thresholds["yellow_low"] == 89
    bad = Context("copd", overrides={"copd.spo2.absolute": {"yellow_low": 80}})
    for _ in range(2):
        with pytest.raises(ThresholdError):
            evaluate(r, bad, obs("spo2", T0, spo2=88))
    # An invalid override of a rule the reading cannot fire is not looked at (as before).
    assert evaluate(r, bad, obs("pulse", T0, pulse=70)) is not None


def test_trend_ignores_unusable_history_and_other_kinds(rules) -> None:  # type: ignore[no-untyped-def]
    r = rules.rules_for("copd")
    weak = Observation(MeasurementKind.SPO2, {"spo2": 99}, T0 - timedelta(hours=3), quality=("weak_signal",))
    pulse = Observation(MeasurementKind.PULSE, {"pulse": 99}, T0 - timedelta(hours=2))
    good = obs("spo2", T0 - timedelta(hours=1), spo2=94)
    found = {x.rule_id: x for x in evaluate(r, Context("copd", history=[weak, pulse, good]), obs("spo2", T0, spo2=91))}
    trend = found["copd.spo2.trend"]
    assert trend.detail["reference"] == 94 and trend.severity is None
    found = {x.rule_id: x for x in evaluate(r, Context("copd", history=[good, weak]), obs("spo2", T0, spo2=90))}
    assert found["copd.spo2.trend"].severity == "yellow" and found["copd.spo2.trend"].detail["change"] == -4


def test_trend_weight_gain(rules) -> None:  # type: ignore[no-untyped-def]
    r = rules.rules_for("heart_failure")
    hist = [obs("weight", T0 - timedelta(days=2), weight=80.0), obs("weight", T0 - timedelta(days=1), weight=81.0)]
    ctx = Context("heart_failure", history=hist)
    assert "heart_failure.weight.trend" not in fired(evaluate(r, ctx, obs("weight", T0, weight=81.9)))
    f = fired(evaluate(r, ctx, obs("weight", T0, weight=82.1)))
    assert f["heart_failure.weight.trend"] == "yellow"
    old = Context("heart_failure", history=[obs("weight", T0 - timedelta(days=4), weight=78.0)])
    assert "heart_failure.weight.trend" not in fired(evaluate(r, old, obs("weight", T0, weight=82.1)))


def test_baseline_inactive_until_enough_days(rules) -> None:  # type: ignore[no-untyped-def]
    r = rules.rules_for("copd")
    today = T0.date()
    daily = [(today - timedelta(days=i), 95.0 + (i % 2)) for i in range(1, 5)]
    assert compute_baseline(daily, today=today, days=14, min_days=7) is None
    daily = [(today - timedelta(days=i), 95.0 + (i % 2)) for i in range(1, 10)]
    b = compute_baseline(daily, today=today, days=14, min_days=7, unstable_days={today - timedelta(days=1)})
    assert b is not None and b.n_days == 8
    ctx = Context("copd", baselines={("spo2", "spo2"): b})
    assert "copd.spo2.baseline" not in fired(evaluate(r, ctx, obs("spo2", T0, spo2=94.5)))
    assert fired(evaluate(r, ctx, obs("spo2", T0, spo2=92.5)))["copd.spo2.baseline"] == "yellow"
    few = Context("copd", baselines={("spo2", "spo2"): Baseline(95, 1, 3)})
    assert "copd.spo2.baseline" not in {f.rule_id for f in evaluate(r, few, obs("spo2", T0, spo2=80))}


def test_news2_score(rules) -> None:  # type: ignore[no-untyped-def]
    r = rules.rules_for("heart_failure")
    hist = [obs("spo2", T0 - timedelta(hours=1), spo2=92), obs("pulse", T0 - timedelta(hours=1), pulse=115)]
    f = {x.rule_id: x for x in evaluate(r, Context("heart_failure", history=hist),
                                        obs("blood_pressure", T0, systolic=99, diastolic=60))}
    score = f["heart_failure.news2"]
    assert score.detail["parts"] == {"spo2": 2, "systolic": 2, "pulse": 2} and score.severity == "yellow"
    hist.append(obs("temperature", T0 - timedelta(hours=2), temperature=39.2))
    f = {x.rule_id: x for x in evaluate(r, Context("heart_failure", history=hist),
                                        obs("blood_pressure", T0, systolic=99, diastolic=60))}
    assert f["heart_failure.news2"].value == 8 and f["heart_failure.news2"].severity == "red"


def test_routing_schedule_holiday_and_fallback(routing: RoutingConfig) -> None:
    red = {"programme": "copd", "severity": "red", "municipality": "Aarhus Kommune"}
    assert route(routing, red, at=datetime(2026, 11, 24, 10, 0, tzinfo=CPH)).team == "auh-lungeteam"
    evening = route(routing, red, at=datetime(2026, 11, 24, 17, 0, tzinfo=CPH))
    assert evening.team == "aarhus-sygepleje" and evening.escalate_to[0] == "auh-lungeteam"
    assert evening.sla == timedelta(minutes=30)
    assert route(routing, red, at=datetime(2026, 11, 24, 23, 0, tzinfo=CPH)).team == "auh-lungeteam"
    # 2. juledag 2026 is a Saturday; Kristi himmelfartsdag 2026 is Thursday 14 May: no hospital day shift
    d = route(routing, red, at=datetime(2026, 5, 14, 10, 0, tzinfo=CPH))
    assert d.holiday == "Kristi himmelfartsdag" and d.team == "aarhus-sygepleje"
    blue = {"programme": "hypertension", "severity": "blue", "municipality": "Randers"}
    assert route(routing, blue, at=T0).team == "randers-akutteam"
    assert route(routing, {**blue, "municipality": "Ukendt"}, at=T0).team == routing.fallback_team


def test_holidays() -> None:
    assert easter_sunday(2026) == date(2026, 4, 5)
    h = danish_public_holidays(2026)
    assert h[date(2026, 4, 3)] == "Langfredag" and date(2026, 5, 1) not in h
    assert "Store bededag" in danish_public_holidays(2023).values()
    assert "Store bededag" not in danish_public_holidays(2024).values()


def test_missed_slots_and_passive() -> None:
    line = PlanLine(MeasurementKind.SPO2, (datetime.strptime("08:00", "%H:%M").time(),), grace_minutes=120)
    start, now = datetime(2026, 11, 23, 0, 0, tzinfo=CPH), datetime(2026, 11, 24, 10, 30, tzinfo=CPH)
    slots = planned_slots([line], start=start, end=now)
    assert [s.due_at.day for s in slots] == [23, 24]
    readings = {MeasurementKind.SPO2: [datetime(2026, 11, 23, 7, 40, tzinfo=CPH)]}
    assert [s.due_at.day for s in missed_slots(slots, readings, now=now)] == [24]
    assert missed_slots(slots, readings, now=now - timedelta(minutes=45)) == []  # still in grace
    passive = planned_slots([line], start=start, end=now, passive=[(datetime(2026, 11, 24, 0, 0, tzinfo=CPH), None)])
    assert [s.due_at.day for s in passive] == [23]


def test_missed_slots_searches_unsorted_readings_as_a_scan_would() -> None:
    """The sorted search gives what checking every reading against every slot gives, readings in
    any order, at the window's edges included."""
    import random

    from alert_rules.plans import slot_met

    rng = random.Random(11)
    lines = [PlanLine(MeasurementKind.SPO2, (datetime.strptime("08:00", "%H:%M").time(),), grace_minutes=120),
             PlanLine(MeasurementKind.WEIGHT, (datetime.strptime("07:30", "%H:%M").time(),
                                               datetime.strptime("19:30", "%H:%M").time()), grace_minutes=60)]
    start, now = datetime(2026, 3, 1, tzinfo=CPH), datetime(2026, 5, 1, tzinfo=CPH)
    slots = planned_slots(lines, start=start, end=now)
    readings: dict[MeasurementKind, list[datetime]] = {MeasurementKind.SPO2: [], MeasurementKind.WEIGHT: []}
    for s in slots:
        if rng.random() < 0.8:
            lo, hi = s.window
            at = rng.choice((lo, hi, lo + (hi - lo) * rng.random(), hi + timedelta(seconds=1)))
            readings[s.kind].append(at)
    for times in readings.values():
        rng.shuffle(times)
    scan = [s for s in slots if now > s.due_at + s.grace and not slot_met(s, readings[s.kind])]
    assert missed_slots(slots, readings, now=now) == scan and 0 < len(scan) < len(slots)


def test_rules_test_and_route_commands(tmp_path: Path) -> None:
    series = tmp_path / "series.yaml"
    series.write_text(
        "patient: {programme: copd, municipality: Aarhus}\nreadings:\n"
        "  - {at: '2026-11-24T16:50:00+01:00', kind: spo2, values: {spo2: 95}}\n"
        "  - {at: '2026-11-24T17:00:00+01:00', kind: spo2, values: {spo2: 89}}\n"
        "  - {at: '2026-11-24T17:10:00+01:00', kind: spo2, values: {spo2: 84}}\n"
        "  - {at: '2026-11-25T08:00:00+01:00', kind: spo2, values: {spo2: 93}}\n"
        "  - {at: '2026-11-25T12:00:00+01:00', kind: spo2, values: {spo2: 94}}\n"
    )
    root = Path(__file__).parents[2]
    out = subprocess.run([sys.executable, "-m", "nearcare_cli", "rules", "test", "--readings", str(series),
                          "--rules", str(PREVIOUS)],
                         capture_output=True, text=True, cwd=root, check=True).stdout.splitlines()
    absolute = [ln.split() for ln in out if "copd.spo2.absolute" in ln]
    assert [(x[1], x[2]) for x in absolute] == [("opened", "yellow"), ("worsened", "red"), ("resolved", "red")]
    assert absolute[0][-1] == "aarhus-sygepleje" and absolute[0][0] == "2026-11-24T17:00:00+01:00"
    trend = [ln for ln in out if "copd.spo2.trend" in ln]
    assert trend and "opened" in trend[0]
    out = subprocess.run([sys.executable, "-m", "nearcare_cli", "rules", "route", "--labels",
                          "programme=copd severity=red municipality=Aarhus", "--at", "2026-11-24T23:30+01:00"],
                         capture_output=True, text=True, cwd=root, check=True).stdout
    assert out.splitlines()[0] == "auh-lungeteam"


def test_evaluator_is_pure() -> None:
    code = ("import sys, alert_rules.evaluate, alert_rules.routing, alert_rules.replay, alert_rules.loader;"
            "bad=[m for m in sys.modules if m.split('.')[0] in ('backend','psycopg','fastapi','paho','edge_agent')];"
            "print(bad); sys.exit(1 if bad else 0)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])
