"""The MQTT wire contract: topics, the versioned measurement envelope, status, receipts, config.

Topics (``root`` is ``nearcare/v1`` in production; tests use a private root per session):

- ``{root}/agents/{agent_id}/measurements``  agent -> backend, QoS 1, an :class:`Envelope`
- ``{root}/agents/{agent_id}/status``        retained :class:`AgentStatus`, LWT "offline"
- ``{root}/agents/{agent_id}/config``        retained :class:`MonitoringPlan`, backend -> agent
- ``{root}/agents/{agent_id}/receipts``      :class:`Receipt`, backend -> agent

The measurement id is minted at the edge at the moment of reading and is the idempotency key:
QoS 1 delivers at least once, storage makes it exactly once. Delivery is acknowledged end to
end: the agent keeps a reading until a :class:`Receipt` (stored, held or dead letter) names it,
and re-sends it under the same id until then.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from enum import StrEnum
from math import isfinite
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from vitals.errors import WireError
from vitals.kinds import FACTS, MeasurementKind, spec

SCHEMA_VERSION = "1.0"
SUPPORTED_MAJOR = 1
DEFAULT_ROOT = "nearcare/v1"
MAX_BATCH = 1000

AGENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
AgentId = Annotated[str, StringConstraints(pattern=AGENT_ID_PATTERN)]
_AGENT_ID_RE = re.compile(AGENT_ID_PATTERN)


EARLIEST_TIME = datetime(2000, 1, 1, tzinfo=UTC)
"""No home-monitoring reading, status or send time on the wire is older than this."""
LATEST_TIME = datetime(2100, 1, 1, tzinfo=UTC)
"""Nor newer than this: a sanity bound the pure contract can check without a clock (year 9999
overflows PostgreSQL's and Python's UTC arithmetic). The backend applies its own, tighter,
bound against its receipt time."""
MEASURED_AFTER_RECEIPT = timedelta(hours=24)
"""A reading is measured at most this long after the agent received its bytes (device clocks
and time zones drift; a day more is not a clock, it is a broken device)."""


def _sane_time(v: datetime) -> datetime:
    if not EARLIEST_TIME <= v < LATEST_TIME:
        raise ValueError(
            f"time {v.isoformat()} is outside {EARLIEST_TIME.date().isoformat()}..{LATEST_TIME.date().isoformat()}"
        )
    return v


_MEASURED_AFTER_RECEIPT_ERROR = "measured_after_receipt"

WireTime = Annotated[AwareDatetime, AfterValidator(_sane_time)]
"""A timezone-aware time inside [:data:`EARLIEST_TIME`, :data:`LATEST_TIME`)."""


def new_measurement_id(at: float | None = None) -> uuid.UUID:
    """A UUIDv7 (RFC 9562): time-ordered, so ids minted at the edge index well in the store."""
    ms = int((time.time() if at is None else at) * 1000)
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return uuid.UUID(int=value)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class _Versioned(_Frozen):
    schema_version: str = Field(default=SCHEMA_VERSION, alias="schema", pattern=r"^\d+\.\d+$")

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @field_validator("schema_version")
    @classmethod
    def _known_major(cls, v: str) -> str:
        if int(v.split(".", 1)[0]) != SUPPORTED_MAJOR:
            raise ValueError(f"unsupported schema major {v!r}; this side speaks {SUPPORTED_MAJOR}.x")
        return v

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()


class Device(_Frozen):
    """The measuring device as the agent knows it (from GATT Device Information)."""

    address: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    model: str | None = Field(default=None, max_length=128)
    manufacturer: str | None = Field(default=None, max_length=128)
    serial: str | None = Field(default=None, max_length=128)
    firmware: str | None = Field(default=None, max_length=64)


class RawCharacteristic(_Frozen):
    """The characteristic bytes exactly as received, for audit and re-decoding."""

    characteristic: Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F-]{4,36}$")]
    hex: Annotated[str, StringConstraints(pattern=r"^([0-9a-fA-F]{2})*$", max_length=1024)]

    @property
    def data(self) -> bytes:
        return bytes.fromhex(self.hex)


class Measurement(_Frozen):
    id: uuid.UUID
    kind: MeasurementKind
    values: dict[str, float | None]
    unit: str
    measured_at: WireTime
    """Device time where the device clock was trusted, else the agent's receipt time."""
    device_clock_trusted: bool
    received_at: WireTime
    """When the agent received the bytes (agent clock)."""
    device: Device
    user_index: int | None = Field(default=None, ge=0, le=255)
    """The user slot on a multi-user scale or cuff; the backend maps it to a patient."""
    quality: tuple[Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")], ...] = ()
    """The device's own quality flags, snake_case: body_movement, cuff_loose, low_perfusion…"""
    raw: RawCharacteristic | None = None

    @model_validator(mode="after")
    def _values_fit_kind(self) -> Measurement:
        k = FACTS[self.kind]
        values = self.values
        if not k.names.issuperset(values):
            unknown = set(values) - k.names
            raise ValueError(f"unknown component(s) {sorted(unknown)} for kind {self.kind.value}")
        if k.primary not in values:
            raise ValueError(f"missing component {k.primary!r} for kind {self.kind.value}")
        if self.unit != k.unit:
            raise ValueError(f"unit {self.unit!r} is not the canonical {k.unit!r} for {self.kind.value}")
        for name, v in values.items():
            if v is not None and not isfinite(v):
                raise ValueError(f"component {name!r} is not a finite number")
        if self.measured_at > self.received_at + MEASURED_AFTER_RECEIPT:
            # A custom type, so the dead letter can name measured_at (a model validator's error
            # is located at the model).
            raise PydanticCustomError(
                _MEASURED_AFTER_RECEIPT_ERROR,
                "measured_at {measured_at} is more than 24 h after received_at {received_at}",
                {"measured_at": self.measured_at.isoformat(), "received_at": self.received_at.isoformat()},
            )
        return self

    @property
    def primary_value(self) -> float | None:
        return self.values.get(spec(self.kind).primary.name)


class Envelope(_Versioned):
    """What an agent publishes on its measurements topic: one reading or a batch."""

    agent_id: AgentId
    sent_at: WireTime
    measurements: Annotated[tuple[Measurement, ...], Field(min_length=1, max_length=MAX_BATCH)]


class AgentState(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


class AgentStatus(_Versioned):
    agent_id: AgentId
    state: AgentState
    at: WireTime
    version: str | None = None
    spool_depth: int | None = Field(default=None, ge=0)
    spool_oldest_at: WireTime | None = None
    spool_capacity: int | None = Field(default=None, ge=1)
    """The agent's spool cap; ``spool_depth == spool_capacity`` means it refuses new readings."""


class ReceiptStatus(StrEnum):
    STORED = "stored"
    """In the database; the citizen's screen can say 'modtaget'."""
    HELD = "held"
    """Kept, but not fed to the rules (implausible value, unknown device) until reviewed."""
    DEAD_LETTER = "dead_letter"
    """Kept raw as a dead letter with its reason (malformed, agent not enrolled…): on record, so
    the agent may let go of it; re-sending the same bytes would only repeat the refusal."""
    SEEN = "seen"
    """A clinician has looked at it (kvitteret)."""


class Receipt(_Versioned):
    agent_id: AgentId
    status: ReceiptStatus
    ids: Annotated[tuple[uuid.UUID, ...], Field(min_length=1)]
    at: AwareDatetime
    by: str | None = None
    reason: str | None = None


class PlannedMeasurement(_Frozen):
    kind: MeasurementKind
    times: tuple[dtime, ...] = ()
    """Local times of day the citizen is asked to measure, e.g. 08:00 and 18:00."""
    weekdays: tuple[Annotated[int, Field(ge=0, le=6)], ...] = (0, 1, 2, 3, 4, 5, 6)
    """0 = Monday."""
    grace_minutes: int = Field(default=120, ge=0, le=24 * 60)


class MonitoringPlan(_Versioned):
    """The monitoring plan (monitoreringsplan) for the agent's citizen; retained config."""

    agent_id: AgentId
    issued_at: AwareDatetime
    timezone: str = "Europe/Copenhagen"
    measurements: tuple[PlannedMeasurement, ...] = ()
    paused_until: AwareDatetime | None = None


class TeamMessage(_Versioned):
    """A message from the care team to the citizen (issue 13), shown on the tablet. Retained: the
    newest one waits for a tablet that was away."""

    agent_id: AgentId
    id: int = Field(ge=1)
    text: str = Field(min_length=1, max_length=1000)
    at: AwareDatetime
    by: str = Field(min_length=1, max_length=200)
    """The sender as the citizen knows them: name and role ("Anne Hansen, sygeplejerske")."""


class TopicKind(StrEnum):
    MEASUREMENTS = "measurements"
    STATUS = "status"
    CONFIG = "config"
    RECEIPTS = "receipts"
    MESSAGES = "messages"


@dataclass(frozen=True, slots=True)
class Topic:
    agent_id: str
    kind: TopicKind


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic builder and parser under one root (``nearcare/v1`` unless a test isolates itself)."""

    root: str = DEFAULT_ROOT

    def for_agent(self, agent_id: str, kind: TopicKind | str) -> str:
        if not _AGENT_ID_RE.match(agent_id):
            raise WireError(f"invalid agent id {agent_id!r}", field="agent_id")
        return f"{self.root}/agents/{agent_id}/{TopicKind(kind).value}"

    def measurements(self, agent_id: str) -> str:
        return self.for_agent(agent_id, TopicKind.MEASUREMENTS)

    def status(self, agent_id: str) -> str:
        return self.for_agent(agent_id, TopicKind.STATUS)

    def config(self, agent_id: str) -> str:
        return self.for_agent(agent_id, TopicKind.CONFIG)

    def receipts(self, agent_id: str) -> str:
        return self.for_agent(agent_id, TopicKind.RECEIPTS)

    def messages(self, agent_id: str) -> str:
        return self.for_agent(agent_id, TopicKind.MESSAGES)

    def wildcard(self, kind: TopicKind | str) -> str:
        return f"{self.root}/agents/+/{TopicKind(kind).value}"

    def shared(self, kind: TopicKind | str, group: str = "ingest") -> str:
        """An MQTT v5 shared subscription, so N workers split the load."""
        return f"$share/{group}/{self.wildcard(kind)}"

    def parse(self, topic: str) -> Topic:
        prefix = f"{self.root}/agents/"
        if not topic.startswith(prefix):
            raise WireError(f"topic {topic!r} is not under {prefix!r}", field="topic")
        parts = topic[len(prefix) :].split("/")
        if len(parts) != 2:
            raise WireError(f"topic {topic!r} is not {prefix}<agent_id>/<kind>", field="topic")
        agent_id, kind = parts
        if not _AGENT_ID_RE.match(agent_id):
            raise WireError(f"invalid agent id {agent_id!r} in topic", field="topic")
        try:
            return Topic(agent_id, TopicKind(kind))
        except ValueError:
            raise WireError(f"unknown topic kind {kind!r}", field="topic") from None


def _first_error(exc: ValidationError) -> WireError:
    err = exc.errors(include_url=False)[0]
    loc = ".".join(str(p) for p in err["loc"]) or None
    if err["type"] == _MEASURED_AFTER_RECEIPT_ERROR:
        loc = f"{loc}.measured_at" if loc else "measured_at"
    return WireError(str(err["msg"]), field=loc)


def _parse(model: type[Any], payload: bytes | str | dict[str, Any]) -> Any:
    if isinstance(payload, bytes | str):
        try:
            data = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise WireError(f"not JSON: {exc}", field="payload") from None
    else:
        data = payload
    if not isinstance(data, dict):
        raise WireError("payload must be a JSON object", field="payload")
    if "schema" not in data:
        raise WireError("Field required", field="schema")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _first_error(exc) from None


def parse_envelope(
    payload: bytes | str | dict[str, Any], *, topic: str | None = None, topics: Topics | None = None
) -> Envelope:
    """Validate a measurements payload; with ``topic``, the topic's agent id must match.

    Raises :class:`WireError` naming the field for anything that does not fit.
    """
    env: Envelope = _parse(Envelope, payload)
    if topic is not None:
        t = (topics or Topics()).parse(topic)
        if t.kind is not TopicKind.MEASUREMENTS:
            raise WireError(f"{t.kind.value} topic does not carry measurements", field="topic")
        if t.agent_id != env.agent_id:
            raise WireError(
                f"topic agent {t.agent_id!r} differs from payload agent {env.agent_id!r}",
                field="agent_id",
            )
    return env


def parse_status(payload: bytes | str | dict[str, Any]) -> AgentStatus:
    status: AgentStatus = _parse(AgentStatus, payload)
    return status


def parse_receipt(payload: bytes | str | dict[str, Any]) -> Receipt:
    receipt: Receipt = _parse(Receipt, payload)
    return receipt


def parse_plan(payload: bytes | str | dict[str, Any]) -> MonitoringPlan:
    plan: MonitoringPlan = _parse(MonitoringPlan, payload)
    return plan


def parse_team_message(payload: bytes | str | dict[str, Any]) -> TeamMessage:
    message: TeamMessage = _parse(TeamMessage, payload)
    return message


def utcnow() -> datetime:
    return datetime.now(UTC)



