"""The review domain's JSON bodies."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class GreenRowOut(BaseModel):
    """A patient with new readings, none of them alerting, not yet seen by a clinician."""

    model_config = ConfigDict(from_attributes=True, frozen=True)

    patient_id: int
    patient_name: str
    patient_ref: str
    municipality: str
    programme: str
    readings: int = Field(description="Unreviewed readings in the last three days")
    newest_at: datetime = Field(description="When the newest of them was stored")


class GreenReviewOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    patients: int = Field(description="Green patients marked seen (each audited, each tablet told)")
    reviewed_by: str
