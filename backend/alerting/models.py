"""Frozen value types the alerting service functions return. :class:`Alert` is the pure state
machine's (:mod:`alert_rules.lifecycle`), so the service layer and the machine share one type."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from alert_rules.lifecycle import Alert

__all__ = ["Adherence", "Alert", "AlertTransition", "EffectiveThreshold", "MonitoringPlanView", "PassiveInterval",
           "PlanItem", "TeamBurden", "ThresholdChange", "WorklistAlert", "WorklistEntry"]


@dataclass(frozen=True, slots=True)
class AlertTransition:
    id: int
    alert_id: int
    at: datetime
    action: str
    """opened, updated, worsened, acknowledged, resolved, escalated, sla_breached, snoozed, rerouted"""
    actor: str
    note: str | None
    from_state: str | None
    to_state: str
    from_team: str | None
    team_key: str
    severity: str
    value: float | None
    rule_id: str = ""


@dataclass(frozen=True, slots=True)
class WorklistAlert:
    id: int
    rule_id: str
    kind: str
    measurement: str | None
    severity: str
    state: str
    title: str
    opened_at: datetime
    updated_at: datetime
    last_value: float | None
    team_key: str
    escalation_level: int
    escalation_due_at: datetime | None
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    ack_note: str | None
    snoozed_until: datetime | None
    snooze_reason: str | None
    muted_by: int | None
    """The red alert that inhibits this one (it is shown, but not notified nor escalated)."""


@dataclass(frozen=True, slots=True)
class WorklistEntry:
    patient_id: int
    patient_name: str
    patient_ref: str
    municipality: str
    department: str | None
    programme: str
    team_key: str
    """The owner of the entry's worst alert."""
    team_name: str
    worst_severity: str
    oldest_opened_at: datetime
    alerts: tuple[WorklistAlert, ...]
    counts: dict[str, int] = field(default_factory=dict)
    """red, yellow, blue, technical, open, acknowledged, muted, snoozed."""


@dataclass(frozen=True, slots=True)
class EffectiveThreshold:
    rule_id: str
    rule_title: str
    field: str
    value: float
    """In force for this patient now."""
    default_value: float
    """The programme default (YAML, or a clinician's programme-level change)."""
    overridden: bool
    override_reason: str | None
    override_by: str | None
    override_at: datetime | None
    source: str
    """The rule's source note."""


@dataclass(frozen=True, slots=True)
class ThresholdChange:
    id: int
    at: datetime
    actor: str
    scope: str
    patient_id: int | None
    programme: str | None
    rule_id: str
    field: str
    old_value: float | None
    new_value: float | None
    reason: str


@dataclass(frozen=True, slots=True)
class PassiveInterval:
    id: int
    patient_id: int
    starts_at: datetime
    ends_at: datetime | None
    reason: str
    created_by: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class PlanItem:
    kind: str
    times: tuple[str, ...]
    """Local times "HH:MM"."""
    weekdays: tuple[int, ...]
    grace_minutes: int


@dataclass(frozen=True, slots=True)
class MonitoringPlanView:
    patient_id: int
    items: tuple[PlanItem, ...]
    paused_until: datetime | None
    timezone: str
    updated_by: str | None
    updated_at: datetime | None
    is_default: bool
    """True when no plan is stored and this is the programme's default (not yet in force)."""


@dataclass(frozen=True, slots=True)
class TeamBurden:
    team_key: str
    team_name: str
    alerts: int
    patients: int
    patient_weeks: float
    alerts_per_patient_week: float
    acknowledged: int
    ack_median_minutes: float | None
    ack_p90_minutes: float | None
    escalated: int
    share_escalated: float


@dataclass(frozen=True, slots=True)
class Adherence:
    patient_id: int | None
    planned: int
    taken: int
    share: float | None
    """taken / planned; None when nothing was planned."""
