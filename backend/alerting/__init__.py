"""Alerting: the alert lifecycle, thresholds, monitoring plans, routing, escalation, notifiers.

Service functions take a psycopg connection first and keyword-only arguments; see README.md.
Nothing here connects at import time.
"""

from __future__ import annotations

from typing import Any

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


def make_sink(*, pool: Any, settings: Any, events: Any = None) -> Any:
    """The readings sink for a standalone ``nearcare backend ingest``."""
    from backend.alerting.runtime import make_sink as _make

    return _make(pool=pool, settings=settings, events=events)


def install_ingest_sinks(runtime: Any) -> None:
    """Hook for a standalone ingest (``backend.ingest.sinks.install``): append the alerting sink."""
    runtime.readings_sinks.append(make_sink(pool=runtime.pool, settings=runtime.settings, events=runtime.events))


def service_factory(runtime: Any) -> Any:
    """Service factory for :func:`backend.services.factories` (sink + event listener + scheduler)."""
    from backend.alerting.runtime import service_factory as _factory

    return _factory(runtime)


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
    "install_ingest_sinks",
    "make_sink",
    "monitoring_plan",
    "passive_intervals",
    "resolve",
    "service_factory",
    "set_monitoring_plan",
    "set_programme_default",
    "set_threshold_override",
    "snooze",
    "threshold_audit",
    "thresholds_for",
    "worklist",
]
