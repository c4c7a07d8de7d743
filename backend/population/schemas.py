"""The population view's JSON body."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)


class OpenAlertsOut(_Out):
    red: int
    yellow: int
    blue: int
    technical: int


class DeviationOut(_Out):
    kind: str
    component: str
    value: float = Field(description="The newest value (baseline) or the newest day's mean (own history)")
    usual: float = Field(description="The baseline mean, or the median of the earlier days' means")
    scale: float = Field(description="The baseline SD, or the robust spread of the earlier days")
    z: float = Field(description="Signed (value - usual) / scale")
    days: int
    source: str = Field(description="baseline (the rules' stored baseline) or own_history")


class RiskPartOut(_Out):
    what: str = Field(description="red, yellow, blue, technical, deviation or missed")
    count: float
    points: float


class PatientRiskOut(_Out):
    patient_id: int
    name: str
    ref: str
    programme: str
    municipality: str
    department: str | None
    open: OpenAlertsOut = Field(description="Unresolved alerts by severity")
    deviation_z: float | None = Field(
        description="Largest |z| of a newest value against the usual value (stored baseline, else own history)"
    )
    deviation_kind: str | None
    adherence: float | None = Field(description="Share of planned measurements taken; null when none was due")
    planned: int
    taken: int
    risk: float
    deviation: DeviationOut | None = None
    deviation_missing: str | None = Field(default=None, description="no_readings or few_days when deviation is null")
    has_plan: bool = False
    parts: list[RiskPartOut] = Field(default_factory=list, description="The risk score's terms")


class TeamBurdenOut(_Out):
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


class PopulationOut(_Out):
    days: int
    since: datetime
    patients: list[PatientRiskOut] = Field(description="Every patient in your scope, highest risk first")
    burden: list[TeamBurdenOut] = Field(description="Per team that owned alerts opened in the period")
