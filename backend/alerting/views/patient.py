"""The patient page's alerting panels (alert history and stories, thresholds and their changes,
monitoring plan, passive intervals) and the clinician's edits of the plan and passive intervals
from the page's forms. Each edit returns None when done, else why not (shown to the clinician)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg

from backend.accounts.model import User
from backend.alerting.config import AlertingConfig
from backend.alerting.errors import AlertingError
from backend.alerting.models import MonitoringPlanView, PassiveInterval
from backend.alerting.plan_form import edited_plan
from backend.alerting.plans import add_passive_interval, monitoring_plan, passive_intervals, set_monitoring_plan
from backend.alerting.thresholds import threshold_audit
from backend.alerting.views.actions import clinician_name
from backend.alerting.views.history import AlertStory, HistoryRow, history_rows, summarise_history
from backend.alerting.views.thresholds import ThresholdRow, thresholds
from vitals.kinds import spec
from vitals.wire import Topics

WEEKDAYS_DA = ("ma", "ti", "on", "to", "fr", "lø", "sø")


@dataclass(frozen=True, slots=True)
class PlanLineView:
    kind: str
    label: str
    when: str
    """E.g. "08:00, 20:00 · alle dage · 120 min margin"."""


@dataclass(frozen=True, slots=True)
class ThresholdAuditLine:
    at: datetime
    by: str
    rule_id: str
    field: str
    old: float | None
    new: float | None
    reason: str


@dataclass(frozen=True, slots=True)
class PatientPanels:
    alert_history: list[HistoryRow]
    alert_stories: list[AlertStory]
    thresholds: list[ThresholdRow]
    threshold_audit: list[ThresholdAuditLine]
    plan: list[PlanLineView]
    passive: list[PassiveInterval]


def plan_lines(plan: MonitoringPlanView) -> list[PlanLineView]:
    """Pure: the plan in the nurse's words, one line per measurement kind."""
    out = []
    for item in plan.items:
        days = "alle dage" if len(item.weekdays) == 7 else ", ".join(WEEKDAYS_DA[d] for d in item.weekdays)
        when = f"{', '.join(item.times) or 'dagligt'} · {days} · {item.grace_minutes} min margin"
        out.append(PlanLineView(item.kind, spec(item.kind).label_da, when + (" (standard)" if plan.is_default else "")))
    return out


def patient_panels(conn: psycopg.Connection, *, patient_id: int, config: AlertingConfig) -> PatientPanels:
    history = history_rows(conn, patient_id=patient_id)
    return PatientPanels(
        alert_history=history,
        alert_stories=summarise_history(history),
        thresholds=thresholds(conn, patient_id=patient_id, config=config),
        threshold_audit=[
            ThresholdAuditLine(c.at, c.actor, c.rule_id, c.field, c.old_value, c.new_value, c.reason)
            for c in threshold_audit(conn, patient_id=patient_id)
        ],
        plan=plan_lines(monitoring_plan(conn, patient_id=patient_id, config=config)),
        passive=passive_intervals(conn, patient_id=patient_id),
    )


def edit_plan(
    conn: psycopg.Connection,
    *,
    patient_id: int,
    kind: str,
    times: str,
    grace_minutes: int,
    user: User,
    topics: Topics,
    config: AlertingConfig,
    remove: bool = False,
) -> str | None:
    """Set (or remove) one kind's slot times in the patient's monitoring plan. The whole plan is
    stored (the programme default becomes this patient's own) and sent to the tablet."""
    try:
        current = monitoring_plan(conn, patient_id=patient_id, config=config)
        items = edited_plan(current.items, kind=kind, times=times, grace_minutes=grace_minutes, remove=remove)
        with conn.transaction():
            set_monitoring_plan(
                conn, patient_id=patient_id, plan=items, by=clinician_name(user), topics=topics, config=config
            )
    except (AlertingError, ValueError) as exc:
        return str(exc)
    return None


def add_passive(
    conn: psycopg.Connection, *, patient_id: int, starts: str, ends: str, reason: str, user: User, tz: str
) -> str | None:
    """A passive interval (hospitalised, on holiday) from the first day through the last, in the
    clinic's time zone: no missed-measurement alerts inside it."""
    try:
        zone = ZoneInfo(tz)
        s = datetime.combine(date.fromisoformat(starts), datetime.min.time(), zone)
        e = datetime.combine(date.fromisoformat(ends), datetime.min.time(), zone) + timedelta(days=1)
    except (ValueError, OverflowError) as exc:
        return f"Invalid date: {exc}"
    if not reason.strip():
        return "A reason is required."
    try:
        with conn.transaction():
            add_passive_interval(
                conn, patient_id=patient_id, starts_at=s, ends_at=e, reason=reason.strip(), by=clinician_name(user)
            )
    except AlertingError as exc:
        return str(exc)
    return None
