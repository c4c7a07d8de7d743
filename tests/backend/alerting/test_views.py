"""The alerting views: the worklist scoped to the user (pure assembly and against PostgreSQL),
history folding, plot bands from thresholds, and the patient page's plan lines."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from backend.accounts.model import Role, User
from backend.alerting.models import MonitoringPlanView, PlanItem, WorklistAlert, WorklistEntry
from backend.alerting.views.history import HistoryRow, history_rows, summarise_history
from backend.alerting.views.patient import plan_lines
from backend.alerting.views.thresholds import PlotBand, ThresholdRow, plot_bands
from backend.alerting.views.worklist import alert_context, assemble, teams_in_scope, worklist
from backend.review.service import GreenCache, GreenRow
from tests.backend.alerting._clinic import Clinic

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NURSE = User(id=1, username="sara", display_name="Sara", role=Role.NURSE, municipality="Aarhus")
SPECIALIST = User(id=2, username="lars", display_name="Lars", role=Role.SPECIALIST, department="AUH Lunge")


# ---- worklist, pure ---------------------------------------------------------------------------


def _alert(aid: int, severity: str, state: str = "open", snoozed: bool = False) -> WorklistAlert:
    return WorklistAlert(
        id=aid, rule_id=f"r{aid}", kind="absolute", measurement="spo2", severity=severity, state=state, title="T",
        opened_at=T0, updated_at=T0, last_value=None, team_key="t", escalation_level=0, escalation_due_at=None,
        acknowledged_by=None, acknowledged_at=None, ack_note=None,
        snoozed_until=T0 + timedelta(hours=4) if snoozed else None, snooze_reason=None, muted_by=None,
    )


def _entry(
    pid: int, severity: str, municipality: str = "Aarhus", department: str | None = None,
    alerts: tuple[WorklistAlert, ...] | None = None,
) -> WorklistEntry:
    return WorklistEntry(
        patient_id=pid,
        patient_name=f"P{pid}",
        patient_ref=f"ref{pid}",
        municipality=municipality,
        department=department,
        programme="copd",
        team_key="t",
        team_name="T",
        worst_severity=severity,
        oldest_opened_at=T0,
        alerts=alerts if alerts is not None else (_alert(pid, severity),),
    )


def _green(pid: int, municipality: str = "Aarhus") -> GreenRow:
    return GreenRow(pid, f"P{pid}", f"ref{pid}", municipality, "copd", 3, T0)


def test_handled_rows_go_below_muted_and_are_not_counted_as_needing_action() -> None:
    """Issue 13: a row whose alerts are all kvitteret or snoozed no longer counts as yellow and
    sits below the rows that need action, whatever alerting's rank."""
    entries = [
        _entry(1, "red", alerts=(_alert(11, "red", state="acknowledged"),)),
        _entry(2, "yellow", alerts=(_alert(21, "yellow", snoozed=True),)),
        _entry(3, "yellow", alerts=(_alert(31, "red", state="acknowledged"), _alert(32, "yellow"))),
        _entry(4, "blue"),
    ]
    view = assemble(user=NURSE, entries=entries, green=[], teams=[])
    assert [e.patient_id for e in view.rows] == [3, 4, 1, 2]
    assert view.handled == frozenset({1, 2})
    assert view.counts == {"yellow": 1, "blue": 1, "handled": 2, "green": 0}


def test_alert_context_gives_the_worst_value_the_limit_and_a_trends_change() -> None:
    red = alert_context({
        "id": 1, "rule_id": "hf.bp.systolic", "rule_kind": "absolute", "measurement": "blood_pressure",
        "severity": "red", "thresholds": {"red_high": 180, "yellow_high": 160}, "detail": {},
        "last_value": 154.0, "values": [165.0, 180.0, 170.0], "measured_at": T0,
    })
    assert (red.component, red.unit, red.worst, red.latest, red.direction, red.limit) == (
        "systolic", "mmHg", 180.0, 154.0, "high", 180)
    low = alert_context({
        "id": 2, "rule_id": "copd.spo2", "rule_kind": "absolute", "measurement": "spo2", "severity": "yellow",
        "thresholds": {"red_low": 87, "yellow_low": 90}, "detail": {}, "last_value": 89.0, "values": [88.0],
    })
    assert (low.unit, low.worst, low.direction, low.limit) == ("%", 88.0, "low", 90)
    trend = alert_context({
        "id": 3, "rule_id": "hf.weight.trend", "rule_kind": "trend", "measurement": "weight", "severity": "yellow",
        "thresholds": {"delta": 2.0}, "detail": {"change": 3.1, "reference": 80.0, "window_hours": 72},
        "last_value": 83.1, "values": [83.1],
    })
    assert (trend.unit, trend.change, trend.window_hours, trend.direction) == ("kg", 3.1, 72.0, "high")
    dia = alert_context({
        "id": 4, "rule_id": "hf.bp.diastolic", "rule_kind": "absolute", "measurement": "blood_pressure",
        "severity": "yellow", "thresholds": {"yellow_high": 100}, "detail": {}, "last_value": 101.0, "values": None,
    })
    assert (dia.component, dia.limit) == ("diastolic", 100)


def test_assemble_keeps_only_rows_in_scope_in_alertings_order() -> None:
    entries = [
        _entry(1, "red"),
        _entry(2, "red", municipality="Randers"),  # selected by a too-wide query: dropped by the rule
        _entry(3, "yellow"),
        _entry(4, "blue", department="AUH Lunge"),
    ]
    view = assemble(user=NURSE, entries=entries, green=[], teams=[("t", "T")])
    assert [e.patient_id for e in view.rows] == [1, 3, 4]
    assert view.counts == {"red": 1, "yellow": 1, "blue": 1, "green": 0}
    spec = assemble(user=SPECIALIST, entries=entries, green=[], teams=[])
    assert [e.patient_id for e in spec.rows] == [4]


def test_assemble_lists_green_only_for_patients_without_a_row() -> None:
    view = assemble(user=NURSE, entries=[_entry(1, "yellow")], green=[_green(1), _green(5), _green(6)], teams=[])
    assert [g.patient_id for g in view.green] == [5, 6]
    assert view.counts == {"yellow": 1, "green": 2}


def test_assemble_gives_nothing_to_an_admin_or_another_citizen() -> None:
    admin = User(id=3, username="anne", display_name="Anne", role=Role.ADMIN)
    citizen = User(id=4, username="karen", display_name="Karen", role=Role.CITIZEN, patient_id=9)
    for user in (admin, citizen):
        view = assemble(user=user, entries=[_entry(1, "red")], green=[], teams=[])
        assert view.rows == [] and view.counts == {"green": 0}


# ---- worklist, against PostgreSQL --------------------------------------------------------------


def test_worklist_scopes_orders_filters_by_team_and_adds_green(db: Any) -> None:
    c = Clinic(db)
    nurse_team, other_team, hospital_team = c.nurse_team[1], c.other_team[1], c.hospital_team[1]
    red_old = c.patient()
    red_new = c.patient()
    yellow = c.patient()
    acked = c.patient()
    green = c.patient()
    elsewhere = c.patient(municipality=f"Andenkommune-{c.tag}")
    referred = c.patient(department=c.department)
    c.alert(red_old, severity="red", team_key=nurse_team, opened=timedelta(hours=2))
    c.alert(red_new, severity="red", team_key=other_team, opened=timedelta(minutes=5))
    c.alert(yellow, severity="yellow", team_key=nurse_team, opened=timedelta(hours=5))
    c.alert(acked, severity="red", team_key=nurse_team, state="acknowledged", opened=timedelta(hours=9))
    c.alert(elsewhere, severity="red", team_key=nurse_team)
    c.alert(referred, severity="blue", team_key=hospital_team)
    for pid in (green, acked, elsewhere):
        c.reading(pid)

    view = worklist(db, user=c.nurse(), green=GreenCache())
    # Unacknowledged first by worst severity then oldest, acknowledged after; other places never.
    assert [e.patient_id for e in view.rows] == [red_old, red_new, yellow, referred, acked]
    assert view.counts["red"] == 2 and view.counts["yellow"] == 1 and view.counts["blue"] == 1
    assert view.counts["handled"] == 1 and view.handled == frozenset({acked})  # kvitteret: no longer red
    # Green: new readings, no alert. The acknowledged patient has a row, so is not green too.
    assert [g.patient_id for g in view.green] == [green] and view.counts["green"] == 1
    # The municipality's teams, and the hospital team owning the referred patient's alert.
    assert {k for k, _ in view.teams} == {nurse_team, other_team, hospital_team}

    by_team = worklist(db, user=c.nurse(), green=GreenCache(), team_key=other_team)
    assert [e.patient_id for e in by_team.rows] == [red_new]

    spec = worklist(db, user=c.specialist(), green=GreenCache())
    assert [e.patient_id for e in spec.rows] == [referred]
    assert [k for k, _ in teams_in_scope(db, user=c.specialist())] == [hospital_team]


def test_green_rows_are_cached_per_scope_until_forgotten(db: Any) -> None:
    c = Clinic(db)
    first = c.patient()
    c.reading(first)
    cache = GreenCache(ttl_s=3600)
    assert [g.patient_id for g in worklist(db, user=c.nurse(), green=cache).green] == [first]
    second = c.patient()
    c.reading(second)
    assert [g.patient_id for g in worklist(db, user=c.nurse(), green=cache).green] == [first]
    # Another scope reads its own rows; forgetting drops every scope.
    assert worklist(db, user=c.specialist(), green=cache).green == []
    cache.forget()
    assert {g.patient_id for g in worklist(db, user=c.nurse(), green=cache).green} == {first, second}


# ---- history ----------------------------------------------------------------------------------


def _row(at: datetime, action: str, value: float | None = None, alert_id: int = 1) -> HistoryRow:
    return HistoryRow(
        alert_id=alert_id,
        title=f"alert {alert_id}",
        rule_id="r",
        measurement="spo2",
        severity="red",
        transition=action,
        state="open",
        at=at,
        by="system",
        note=None,
        team="t",
        from_team=None,
        value=value,
    )


def test_summarise_history_folds_only_unbroken_runs_of_repeats() -> None:
    oldest_first = (
        [_row(T0, "opened", 85.0)]
        + [_row(T0 + timedelta(minutes=i), "updated", 84.0 - i) for i in range(1, 6)]
        + [_row(T0 + timedelta(hours=1), "acknowledged")]
        + [_row(T0 + timedelta(hours=2, minutes=i), "updated", 80.0 + i) for i in range(3)]
        + [_row(T0 + timedelta(hours=3), "opened", 90.0, alert_id=2)]
    )
    stories = summarise_history(list(reversed(oldest_first)))
    assert [s.alert_id for s in stories] == [2, 1]  # newest activity first
    lines = stories[1].lines
    assert [(line.transition, line.count) for line in lines] == [
        ("updated", 3),
        ("acknowledged", 1),
        ("updated", 5),
        ("opened", 1),
    ]
    # A folded run keeps its latest time and value and says when it began.
    assert lines[0].at == T0 + timedelta(hours=2, minutes=2) and lines[0].value == 82.0
    assert lines[0].first_at == T0 + timedelta(hours=2)
    assert lines[2].value == 79.0 and lines[2].first_at == T0 + timedelta(minutes=1)
    assert sum(line.count for s in stories for line in s.lines) == len(oldest_first)
    assert stories[1].transitions == 10 and stories[0].transitions == 1


def test_history_rows_are_every_transition_newest_first_with_the_alerts_title(db: Any) -> None:
    c = Clinic(db)
    pid = c.patient()
    alert_id = c.alert(pid, severity="red", team_key=c.nurse_team[1])
    for i, action in enumerate(("opened", "updated", "acknowledged")):
        db.execute(
            "INSERT INTO alert_transitions (alert_id, at, action, actor, to_state, team_key, severity, value)"
            " VALUES (%s, %s, %s, 'system', 'open', %s, 'red', %s)",
            (alert_id, T0 + timedelta(minutes=i), action, c.nurse_team[1], 85.0 - i),
        )
    rows = history_rows(db, patient_id=pid)
    assert [r.transition for r in rows] == ["acknowledged", "updated", "opened"]
    assert {r.title for r in rows} == {"red alert"} and rows[-1].value == 85.0
    assert history_rows(db, patient_id=c.patient()) == []


# ---- thresholds and plot bands ------------------------------------------------------------------


def _th(field: str, value: float, *, rule_id: str = "copd.spo2.absolute", rule_kind: str = "absolute") -> ThresholdRow:
    return ThresholdRow(
        rule_id=rule_id,
        label="SpO2",
        field=field,
        value=value,
        default=value,
        overridden=False,
        reason=None,
        by=None,
        at=None,
        kind="spo2",
        component="spo2",
        rule_kind=rule_kind,
    )


def test_plot_bands_from_absolute_limits_only() -> None:
    rows = [_th("red_low", 85), _th("yellow_low", 88), _th("yellow_high", 99), _th("red_high", 101)]
    rows.append(_th("max_drop", 3, rule_id="copd.spo2.trend", rule_kind="trend"))
    assert plot_bands(rows) == [
        PlotBand("spo2", "%", None, 85, "red", "spo2"),
        PlotBand("spo2", "%", 85, 88, "yellow", "spo2"),
        PlotBand("spo2", "%", 99, 101, "yellow", "spo2"),
        PlotBand("spo2", "%", 101, None, "red", "spo2"),
    ]
    # One side only: the yellow band reaches the plot's edge.
    assert plot_bands([_th("yellow_low", 90)]) == [PlotBand("spo2", "%", None, 90, "yellow", "spo2")]
    # Each band names its series: a systolic limit is never drawn on the diastolic line (issue 13).
    systolic = replace(_th("red_low", 90, rule_id="hf.bp.systolic"), kind="blood_pressure", component="systolic")
    assert [b.component for b in plot_bands([systolic])] == ["systolic"]
    assert plot_bands([replace(_th("red_low", 85), kind=None)]) == []
    assert PlotBand("spo2", "%", None, 85, "red").to_chart() == {
        "kind": "spo2",
        "scale": "%",
        "from": None,
        "to": 85,
        "level": "red",
        "component": None,
    }


# ---- plan lines ---------------------------------------------------------------------------------


@pytest.mark.parametrize("is_default", [False, True])
def test_plan_lines_in_the_nurses_words(is_default: bool) -> None:
    plan = MonitoringPlanView(
        patient_id=1,
        items=(PlanItem("weight", ("07:30", "19:00"), (0, 1, 2, 3, 4, 5, 6), 90), PlanItem("spo2", (), (0, 2), 120)),
        paused_until=None,
        timezone="Europe/Copenhagen",
        updated_by=None,
        updated_at=None,
        is_default=is_default,
    )
    lines = plan_lines(plan)
    suffix = " (standard)" if is_default else ""
    assert [(line.kind, line.when) for line in lines] == [
        ("weight", "07:30, 19:00 · alle dage · 90 min margin" + suffix),
        ("spo2", "dagligt · ma, on · 120 min margin" + suffix),
    ]
    assert lines[0].label == "Vægt"
