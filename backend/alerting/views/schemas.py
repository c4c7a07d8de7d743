"""JSON bodies of the alerting views (worklist, alert changes, history, thresholds)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from backend.alerting.views.worklist import GREEN_SHOWN, WorklistView
from backend.review.schemas import GreenRowOut


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)


class WorklistAlertOut(_Out):
    id: int
    rule_id: str
    kind: str = Field(description="The rule's kind: absolute, baseline, trend, score, missing…")
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
    muted_by: int | None = Field(description="The red alert that inhibits this one (shown, not notified)")


class WorklistRowOut(_Out):
    patient_id: int
    patient_name: str
    patient_ref: str
    municipality: str
    department: str | None
    programme: str
    team_key: str = Field(description="The owner of the row's worst alert")
    team_name: str
    worst_severity: str
    oldest_opened_at: datetime
    counts: dict[str, int] = Field(description="red, yellow, blue, technical, open, acknowledged, muted, snoozed")
    alerts: list[WorklistAlertOut]


class WorklistOut(_Out):
    rows: list[WorklistRowOut] = Field(description="Worst unacknowledged severity first, then oldest")
    green: list[GreenRowOut] = Field(description=f"Green patients, longest waiting first (at most {GREEN_SHOWN})")
    green_total: int
    counts: dict[str, int] = Field(description="Rows per worst severity, and green")

    @classmethod
    def of(cls, view: WorklistView, *, green_limit: int = GREEN_SHOWN) -> WorklistOut:
        return cls.model_validate(
            {
                "rows": view.rows,
                "green": view.green[:green_limit],
                "green_total": len(view.green),
                "counts": view.counts,
            }
        )


class AcknowledgedOut(_Out):
    alert_id: int
    acknowledged_by: str


class ResolvedOut(_Out):
    alert_id: int
    resolved_by: str


class SnoozedOut(_Out):
    alert_id: int
    snoozed_until: datetime
    snoozed_by: str


class HistoryRowOut(_Out):
    """One transition of one alert."""

    alert_id: int
    title: str
    rule_id: str
    measurement: str | None
    severity: str
    transition: str = Field(description="opened, updated, worsened, acknowledged, resolved, escalated, snoozed…")
    state: str = Field(description="The alert's state after the transition")
    at: datetime
    by: str | None
    note: str | None
    team: str | None
    from_team: str | None
    value: float | None


class ThresholdOut(_Out):
    rule_id: str
    label: str
    field: str
    value: float = Field(description="In force for this patient now")
    default: float = Field(description="The programme default")
    overridden: bool
    reason: str | None
    by: str | None
    at: datetime | None
    kind: str | None = Field(description="The measurement the rule reads")
    component: str | None
    rule_kind: str | None
