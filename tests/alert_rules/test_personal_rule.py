"""The ``personal`` rule kind: deviation from the citizen's own median in robust SDs, summed over
parts, artefacts left out, inactive until enough days, persistence over days; strict loading."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alert_rules.errors import RuleFileError
from alert_rules.evaluate import Context, Observation, evaluate, history_hours, history_kinds
from alert_rules.loader import load_ruleset
from alert_rules.model import PersonalRule, RuleFile
from vitals.kinds import MeasurementKind as K

T = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def _rule(**thresholds: float) -> PersonalRule:
    rf = RuleFile.model_validate({
        "programme": "copd", "source": "test",
        "rules": [{"id": "copd.test.personal", "kind": "personal", "title": "test rule", "source": "test",
                   "parts": [{"measurement": "pulse", "direction": "up", "min_scale": 2.0},
                             {"measurement": "spo2", "direction": "down", "min_scale": 1.0}],
                   "thresholds": {"yellow": 3.0, "red": 6.0, "days": 14, "lag_days": 0, "min_days": 7,
                                  **thresholds}}]})
    rule = rf.rules[0]
    assert isinstance(rule, PersonalRule)
    return rule


def _days(n: int, pulse: float = 80, spo2: float = 93, quality: tuple[str, ...] = (),
          first: int = 1) -> list[Observation]:
    out = []
    for d in range(n + first - 1, first - 1, -1):
        at = T - timedelta(days=d)
        # a little spread so the MAD is not 0: pulse 78-82, spo2 92-94
        out += [Observation(K.PULSE, {"pulse": pulse + (d % 5) - 2}, at, quality=quality),
                Observation(K.SPO2, {"spo2": spo2 + (d % 3) - 1}, at, quality=quality)]
    return out


def _judge(rule: PersonalRule, history: list[Observation], pulse: float, spo2: float,
           quality: tuple[str, ...] = ()) -> str | None:
    obs_s = Observation(K.SPO2, {"spo2": spo2}, T, quality=quality)
    hist = [*history, Observation(K.PULSE, {"pulse": pulse}, T - timedelta(minutes=1), quality=quality)]
    found = evaluate([rule], Context(programme="copd", history=hist), obs_s)
    return found[0].severity if found else None


def test_deviation_in_own_robust_sds_summed_over_parts() -> None:
    rule = _rule()
    history = _days(14)
    assert _judge(rule, history, 80, 93) is None           # at the median: in range (a finding, no severity)
    assert _judge(rule, history, 86, 91) == "yellow"        # pulse +3 SD and SpO2 -1.35 SD: 4.35
    assert _judge(rule, history, 95, 87) == "red"
    f = evaluate([rule], Context(programme="copd", history=[*history, Observation(K.PULSE, {"pulse": 80}, T)]),
                 Observation(K.SPO2, {"spo2": 93}, T))
    assert f and f[0].severity is None and f[0].detail["median"] == [80.0, 93.0]


def test_inactive_until_min_days_and_artefacts_never_count() -> None:
    rule = _rule()
    assert _judge(rule, _days(6), 99, 85) is None and not evaluate(
        [rule], Context(programme="copd", history=_days(6)), Observation(K.SPO2, {"spo2": 85}, T))
    # a baseline made only of artefact-flagged readings is no baseline
    assert not evaluate([rule], Context(programme="copd", history=_days(14, quality=("low_perfusion",))),
                        Observation(K.SPO2, {"spo2": 85}, T))
    # an artefact-flagged reading gets no finding at all (it cannot open, worsen or resolve)
    assert evaluate([rule], Context(programme="copd", history=_days(14)),
                    Observation(K.SPO2, {"spo2": 80}, T, quality=("low_perfusion",))) == []


def test_persistence_days_over_and_mean() -> None:
    calm = _days(14, first=2)  # nothing yesterday
    yesterday = T - timedelta(days=1, hours=1)
    calm_yesterday = [*calm, Observation(K.PULSE, {"pulse": 80}, yesterday),
                      Observation(K.SPO2, {"spo2": 93}, yesterday)]
    bad_yesterday = [*calm, Observation(K.PULSE, {"pulse": 86}, yesterday),
                     Observation(K.SPO2, {"spo2": 91}, yesterday)]
    alone = _rule()
    assert _judge(alone, calm_yesterday, 86, 91) == "yellow"  # today alone is enough without persistence
    days_over = _rule(confirm=2, of=3)
    assert _judge(days_over, calm_yesterday, 86, 91) is None  # one bad day of three: not yet
    assert _judge(days_over, bad_yesterday, 86, 91) == "yellow"
    mean = _rule(confirm=1, of=2).model_copy(update={"persistence": "mean"})
    assert _judge(mean, calm_yesterday, 86, 91) is None  # (4.4 + 0) / 2 < 3
    assert _judge(mean, bad_yesterday, 86, 91) == "yellow"


def test_history_reach_covers_the_baseline_window() -> None:
    rule = _rule(days=14)
    rule = rule.model_copy(update={"thresholds": rule.thresholds.model_copy(update={"lag_days": 2})})
    assert history_hours([rule]) == (2 + 14 + 1) * 24
    assert history_kinds([rule]) == {K.PULSE, K.SPO2}


@pytest.mark.parametrize(("body", "field"), [
    ("thresholds: {yellow: 3, red: 2}", "thresholds"),
    ("thresholds: {yellow: 3, confirm: 3, of: 2}", "thresholds"),
    ("thresholds: {yellow: 3, min_days: 20, days: 14}", "thresholds"),
    ("thresholds: {yellow: 3, colour: 1}", "thresholds.colour"),
])
def test_rules_check_stays_strict_for_personal_rules(tmp_path: Path, body: str, field: str) -> None:
    (tmp_path / "copd.yaml").write_text(
        "programme: copd\nsource: test\nrules:\n"
        "  - id: copd.x.personal\n    kind: personal\n    title: test rule\n    source: test\n"
        "    parts:\n      - {measurement: pulse, direction: up, min_scale: 2}\n"
        f"    {body}\n")
    with pytest.raises(RuleFileError) as exc:
        load_ruleset(tmp_path)
    assert exc.value.line is not None and exc.value.field is not None and exc.value.field.endswith(field)


def test_part_component_must_exist(tmp_path: Path) -> None:
    (tmp_path / "copd.yaml").write_text(
        "programme: copd\nsource: test\nrules:\n"
        "  - id: copd.x.personal\n    kind: personal\n    title: test rule\n    source: test\n"
        "    parts:\n      - {measurement: spo2, component: value, direction: down, min_scale: 1}\n"
        "    thresholds: {yellow: 3}\n")
    with pytest.raises(RuleFileError, match="component 'value' is not one of"):
        load_ruleset(tmp_path)


def test_yesterday_is_yesterday_whether_taken_earlier_or_later_in_the_day() -> None:
    """Days are centred on the reading's time of day: yesterday's reading taken two hours later
    than today's (22 hours ago) is still yesterday, so the mean of two days is today and yesterday,
    not today and the day before yesterday."""
    rule = _rule(of=2, confirm=1).model_copy(update={"persistence": "mean"})
    calm = _days(14, first=3)  # nothing yesterday nor the day before: the bad day is yesterday's only
    bad_late = T - timedelta(hours=22)   # yesterday, measured at 10:00 (today at 08:00)
    history = [*calm, Observation(K.PULSE, {"pulse": 90}, bad_late), Observation(K.SPO2, {"spo2": 89}, bad_late)]
    found = evaluate([rule], Context(programme="copd", history=[*history, Observation(K.PULSE, {"pulse": 80}, T)]),
                     Observation(K.SPO2, {"spo2": 93}, T))
    assert found and found[0].detail["days"] == 2  # today and yesterday both counted
    assert found[0].value is not None and found[0].value > 1.0  # yesterday's deviation is in the mean


def test_trimmed_sd_uses_every_ordinary_day_and_ignores_a_wild_one() -> None:
    """Whole-per-cent SpO2 around 93 with an SD of about 0.7: more than half the days read 93, so
    the MAD is 0 and the robust SD falls to the floor; the trimmed SD is the values' SD, and one
    wild day (80 %) does not move it."""
    spo2 = [93, 92, 93, 94, 93, 92, 93, 93, 94, 92, 93, 93, 94, 93]

    def scale_of(kind: str, values: list[int]) -> float:
        rf = RuleFile.model_validate({
            "programme": "copd", "source": "test",
            "rules": [{"id": "copd.test.personal", "kind": "personal", "title": "test rule", "source": "test",
                       "parts": [{"measurement": "spo2", "direction": "down", "min_scale": 0.4, "scale": kind}],
                       "thresholds": {"yellow": 3.0, "days": 20, "lag_days": 0, "min_days": 7}}]})
        rule = rf.rules[0]
        history = [Observation(K.SPO2, {"spo2": float(v)}, T - timedelta(days=i + 1)) for i, v in enumerate(values)]
        found = evaluate([rule], Context(programme="copd", history=history), Observation(K.SPO2, {"spo2": 93.0}, T))
        return float(found[0].detail["scale"][0])

    assert scale_of("spread", spo2) == 0.4
    trimmed = scale_of("trimmed_sd", spo2)
    assert trimmed == pytest.approx(0.68, abs=0.01)
    assert scale_of("trimmed_sd", [*spo2[:-1], 80]) == pytest.approx(trimmed, abs=0.1)
