"""Alerting: the alert lifecycle, thresholds, monitoring plans, routing, escalation, notifiers.

Service functions take a psycopg connection first and keyword-only arguments; see README.md.
Nothing here connects at import time.
"""

from __future__ import annotations

from backend.alerting.clock import Clock, FixedClock, SystemClock
from backend.alerting.errors import AlertingError, AlertNotFound, InvalidPlan, InvalidThreshold, InvalidTransition
from backend.alerting.metrics import alert_burden
from backend.alerting.models import (
    Adherence,
    Alert,
    AlertTransition,
    EffectiveThreshold,
    MonitoringPlanView,
    PassiveInterval,
    PlanItem,
    TeamBurden,
    ThresholdChange,
    WorklistAlert,
    WorklistEntry,
)
from backend.alerting.plans import (
    add_passive_interval,
    adherence,
    check_missed_measurements,
    end_passive_interval,
    monitoring_plan,
    passive_intervals,
    set_monitoring_plan,
)
from backend.alerting.service import acknowledge, alert_history, get_alert, resolve, snooze, worklist
from backend.alerting.thresholds import (
    clear_threshold_override,
    set_programme_default,
    set_threshold_override,
    threshold_audit,
    thresholds_for,
)

__all__ = [
    "Adherence",
    "Alert",
    "AlertNotFound",
    "AlertTransition",
    "AlertingError",
    "Clock",
    "EffectiveThreshold",
    "FixedClock",
    "InvalidPlan",
    "InvalidThreshold",
    "InvalidTransition",
    "MonitoringPlanView",
    "PassiveInterval",
    "PlanItem",
    "SystemClock",
    "TeamBurden",
    "ThresholdChange",
    "WorklistAlert",
    "WorklistEntry",
    "acknowledge",
    "add_passive_interval",
    "adherence",
    "alert_burden",
    "alert_history",
    "check_missed_measurements",
    "clear_threshold_override",
    "end_passive_interval",
    "get_alert",
    "monitoring_plan",
    "passive_intervals",
    "resolve",
    "set_monitoring_plan",
    "set_programme_default",
    "set_threshold_override",
    "snooze",
    "threshold_audit",
    "thresholds_for",
    "worklist",
]
