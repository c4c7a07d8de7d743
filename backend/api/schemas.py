"""Response and request bodies of the JSON API (OpenAPI at /docs and /openapi.json)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from backend.accounts.access import Patient
from backend.api.clinical import PatientSummary, Reading, Rejected, Series, Trend
from backend.audit import AuditEntry, MinLogEntry

# PostgreSQL text cannot hold NUL; refusing it at the edge keeps bad input a 422, not a 500.
Text = Annotated[str, StringConstraints(pattern=r"^[^\x00]*$", max_length=2000)]
ShortText = Annotated[str, StringConstraints(pattern=r"^[^\x00]*$", max_length=200)]
PatientId = Annotated[int, Field(ge=1, le=2**62)]


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)


class _In(BaseModel):
    """A request body: numbers are finite (``NaN`` and ``Infinity`` are JSON extensions that
    switched a citizen's alarms off through a threshold: issue 12)."""

    model_config = ConfigDict(allow_inf_nan=False)


# Every time a person can enter lies in this window (year 9999 overflowed the arithmetic: a 500).
SaneTime = Annotated[AwareDatetime, Field(ge=datetime(2000, 1, 1, tzinfo=UTC), lt=datetime(2100, 1, 1, tzinfo=UTC))]


class TokenRequest(_In):
    username: ShortText
    password: Annotated[str, StringConstraints(max_length=1000)]


class PasswordChangeIn(_In):
    username: ShortText
    password: Annotated[str, StringConstraints(max_length=1000)] = Field(description="The current password")
    new_password: Annotated[str, StringConstraints(min_length=12, max_length=128, pattern=r"^[^\x00]*$")] = Field(
        description="At least 12 characters, not the current password")


class TokenOut(_Out):
    access_token: str
    token_type: str = "bearer"
    expires_at: datetime
    refresh_token: str = Field(description="Spent once at /api/v1/auth/refresh for a new pair")
    refresh_expires_at: datetime


TokenValue = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{10,200}$")]


class RefreshIn(_In):
    refresh_token: TokenValue


class RevokeIn(_In):
    refresh_token: TokenValue | None = None


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


# The API's bodies for patients, trends, readings and audit rows are the service modules' own frozen
# dataclasses (FastAPI builds their schemas): one definition, so the API cannot drift from the data.
PatientSummaryOut = PatientSummary
PatientOut = Patient
SeriesOut = Series
TrendOut = Trend
ReadingOut = Reading
RejectedOut = Rejected
AuditOut = AuditEntry
MinLogEntryOut = MinLogEntry


class MinLogOut(_Out):
    entries: list[MinLogEntryOut]
    total: int = Field(description="Every row of the citizen's Min Log")
    limit: int
    offset: int
    next_offset: int | None = Field(description="The offset of the next page; null on the last page")


class ReadingDetailOut(_Out):
    reading: ReadingOut
    raw_hex: str | None
    raw_characteristic: str | None
    device_manufacturer: str | None
    device_serial: str | None
    device_firmware: str | None
    clock_offset_s: float


class AcknowledgeIn(_In):
    note: Text = ""


# Something besides white space, no NUL: a note or reason that says nothing is refused (422).
Said = Annotated[str, StringConstraints(pattern=r"^[^\x00]*[^\x00\s][^\x00]*$", min_length=1, max_length=2000)]


class ResolveIn(_In):
    note: Said


class SnoozeIn(_In):
    until: SaneTime = Field(
        description="When the snooze ends, with its time zone; in the future and at most 7 days ahead"
    )
    reason: Said


class ThresholdIn(_In):
    rule_id: ShortText
    field: ShortText
    value: Annotated[float, Field(ge=-1e6, le=1e6)] | None = Field(
        default=None,
        description="null clears the personal override; finite, and inside the measured component's plausible range",
    )
    reason: Annotated[str, StringConstraints(pattern=r"^[^\x00]*[^\x00\s][^\x00]*$", min_length=3, max_length=2000)]


class FhirBundleOut(BaseModel):
    """A FHIR R4 Bundle (``application/fhir+json``); its entries are FHIR resources, validated
    against the vital-signs profile and the PHD IG before they are sent."""

    model_config = ConfigDict(extra="allow", frozen=True)

    resourceType: str = Field(description='"Bundle"')
    type: str = Field(description='"transaction"')
    entry: list[dict[str, object]] = Field(default_factory=list)
