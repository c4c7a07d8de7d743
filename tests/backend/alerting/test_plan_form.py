"""The patient page's plan form, parsed purely: times, kinds, and the whole plan after one edit."""

from __future__ import annotations

import pytest

from backend.alerting.errors import InvalidPlan
from backend.alerting.models import PlanItem
from backend.alerting.plan_form import EVERY_DAY, edited_plan, parse_times

CURRENT = (
    PlanItem("spo2", ("08:00",), EVERY_DAY, 120),
    PlanItem("weight", ("07:30",), (0, 2, 4), 90),
)


def test_times_are_sorted_each_once_with_commas_or_semicolons() -> None:
    assert parse_times(" 19:00; 07:30 ,07:30,, ") == ("07:30", "19:00")
    assert parse_times("") == ()


@pytest.mark.parametrize("bad", ["25:00", "7:30", "07:60", "0730", "07:30:00", "noon"])
def test_a_time_that_is_not_hh_mm_is_refused_by_name(bad: str) -> None:
    with pytest.raises(InvalidPlan, match=r"Not a time \(HH:MM\)") as exc:
        parse_times(f"08:00, {bad}")
    assert repr(bad) in str(exc.value)


def test_setting_a_kind_replaces_it_every_day_and_keeps_the_others() -> None:
    plan = edited_plan(CURRENT, kind="weight", times="19:00, 07:00", grace_minutes=60)
    assert plan == (CURRENT[0], PlanItem("weight", ("07:00", "19:00"), EVERY_DAY, 60))
    added = edited_plan(CURRENT, kind="blood_pressure", times="09:00", grace_minutes=120)
    assert added[:2] == CURRENT and added[2] == PlanItem("blood_pressure", ("09:00",), EVERY_DAY, 120)


def test_removing_a_kind_needs_no_times() -> None:
    assert edited_plan(CURRENT, kind="spo2", times="", grace_minutes=120, remove=True) == (CURRENT[1],)
    assert edited_plan(CURRENT, kind="pulse", times="", grace_minutes=120, remove=True) == CURRENT


@pytest.mark.parametrize(
    ("kind", "times", "grace", "message"),
    [
        ("weight", "", 120, "Give at least one time"),
        ("heartbeat", "08:00", 120, "Unknown measurement: 'heartbeat'"),
        ("weight", "08:00", -5, "cannot be negative"),
    ],
)
def test_refusals_say_why(kind: str, times: str, grace: int, message: str) -> None:
    with pytest.raises(InvalidPlan, match=message):
        edited_plan(CURRENT, kind=kind, times=times, grace_minutes=grace)
