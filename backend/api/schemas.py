"""Response and request bodies of the JSON API (OpenAPI at /docs and /openapi.json)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

# PostgreSQL text cannot hold NUL; refusing it at the edge keeps bad input a 422, not a 500.
Text = Annotated[str, StringConstraints(pattern=r"^[^\x00]*$", max_length=2000)]
ShortText = Annotated[str, StringConstraints(pattern=r"^[^\x00]*$", max_length=200)]
PatientId = Annotated[int, Field(ge=1, le=2**62)]


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)


class TokenRequest(BaseModel):
    username: ShortText
    password: Annotated[str, StringConstraints(max_length=1000)]


class TokenOut(_Out):
    access_token: str
    token_type: str = "bearer"
    expires_at: datetime


class UserOut(_Out):
    id: int
    username: str
    display_name: str
    role: str
    team_key: str | None
    team_name: str | None
    municipality: str | None
    department: str | None
    patient_id: int | None
    lang: str


class PatientSummaryOut(_Out):
    id: int
    external_ref: str
    name: str
    programme: str
    municipality: str
    department: str | None
    last_measured_at: datetime | None


class PatientOut(_Out):
    id: int
    external_ref: str
    name: str
    birth_date: date | None
    programme: str
    municipality: str
    department: str | None
    active: bool


class SeriesOut(_Out):
    component: str
    label: str
    unit: str
    t: list[float]
    value: list[float | None]
    low: list[float | None]
    high: list[float | None]


class TrendOut(_Out):
    kind: str
    label: str
    range: str
    resolution: str
    start: datetime
    end: datetime
    series: list[SeriesOut]


class ReadingOut(_Out):
    id: UUID
    kind: str
    components: dict[str, Any]
    unit: str
    measured_at: datetime
    agent_received_at: datetime
    stored_at: datetime
    device_clock_trusted: bool
    quality: list[str]
    flags: list[str]
    agent_id: str
    device_id: int | None
    device_model: str | None
    device_address: str | None
    user_index: int | None


class ReadingDetailOut(_Out):
    reading: ReadingOut
    raw_hex: str | None
    raw_characteristic: str | None
    device_manufacturer: str | None
    device_serial: str | None
    device_firmware: str | None
    clock_offset_s: float


class RejectedOut(_Out):
    id: UUID
    measured_at: datetime | None
    kind: str
    components: dict[str, Any]
    unit: str | None
    reason: str
    agent_id: str
    device_address: str | None
    stored_at: datetime
    reviewed_by: str | None


class AuditOut(_Out):
    id: int
    at: datetime
    actor: str
    actor_role: str
    patient_id: int | None
    action: str
    detail: str | None
    remote_addr: str | None
    allowed: bool


class AcknowledgeIn(BaseModel):
    note: Text = ""


class ThresholdIn(BaseModel):
    rule_id: ShortText
    field: ShortText
    value: float | None = Field(default=None, description="null clears the personal override")
    reason: Annotated[str, StringConstraints(pattern=r"^[^\x00]*\S[^\x00]*$", min_length=3, max_length=2000)]
