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


class PatientRiskOut(_Out):
    patient_id: int
    name: str
    ref: str
    programme: str
    municipality: str
    department: str | None
    open: OpenAlertsOut = Field(description="Unresolved alerts by severity")
    deviation_z: float | None = Field(description="Largest |z| of a latest value against the stored baseline")
    deviation_kind: str | None
    adherence: float | None = Field(description="Share of planned measurements taken; null when none was due")
    planned: int
    taken: int
    risk: float


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
