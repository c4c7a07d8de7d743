"""The what-if's second replay runs only the changed rules: the same figures as replaying every rule
again, on a cohort slice, for a change to each kind of rule the shipped COPD and heart-failure
programmes have."""

from __future__ import annotations

import json

import pytest

from alert_rules.cohort import generate
from alert_rules.loader import load_ruleset
from alert_rules.stream import Citizen, parse_readings, replay_stream
from backend.whatif import only, outcome


@pytest.mark.parametrize(("rule_id", "field", "value"), [
    ("copd.oximetry.personal", "yellow", 1.5),
    ("copd.spo2.absolute", "red_low", 88.0),
    ("heart_failure.weight.personal", "lag_days", 2.0),
    ("heart_failure.weight.trend", "delta", 1.5),
])
def test_replaying_only_the_changed_rule_gives_the_full_replays_figures(rule_id: str, field: str,
                                                                         value: float) -> None:
    rules = load_ruleset()
    cohort = generate(seed=21, citizens=40, days=90)
    readings = parse_readings(json.dumps(r) for r in cohort.readings)

    def who(change: dict[str, dict[str, float]]) -> dict[str, Citizen]:
        return {ref: Citizen(programme=info["programme"], overrides=change) for ref, info in cohort.patients.items()}

    proposed = {rule_id: {field: value}}
    before = replay_stream(readings, rules, patients=who({}))
    full = replay_stream(readings, rules, patients=who(proposed))
    short = [t for t in before if t.rule != rule_id] + replay_stream(readings, only(rules, {rule_id}),
                                                                      patients=who(proposed))
    assert outcome(short) == outcome(full) != outcome(before)
