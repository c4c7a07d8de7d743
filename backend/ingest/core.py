"""The pure core of ingest: one MQTT message in, a decision out. No I/O, no clock.

``decide(topic, payload, topics=, registry=, now=)`` says, for every reading in the message,
whether it is stored (accepted, attributed to a patient by the backend's registry), held
(stored as rejected with its reason, shown to clinicians, never fed to the rules), or whether
the whole payload is a dead letter (kept raw, with the reason and the offending field).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from backend.registry.snapshot import RegistrySnapshot
from vitals import KINDS, WireError, parse_envelope, parse_status
from vitals.wire import MAX_BATCH, AgentState, Envelope, Measurement, TopicKind, Topics

FUTURE_TOLERANCE = timedelta(minutes=5)
"""A reading measured more than this after the backend's receipt is held (``future_time``)."""
LIVE_WITHIN = timedelta(minutes=10)
"""A reading measured less than this before its receipt is someone measuring now ("live"); an
older one is part of a returning tablet's backlog. Ingest commits live messages ahead of a
backlog, and the rules evaluate live readings first (the same ten minutes, migration 0221)."""
MAX_READING_AGE = timedelta(days=730)
"""A reading measured longer than this before the backend's receipt is held (``too_old``). An
agent keeps a device's own records up to 400 days back (``edge_agent.recorder.CLOCK_BEHIND_LIMIT``)
and spools what it cannot send; a year in the spool on top of that is the most a real agent can
account for. Older is a broken clock, and a broken clock must not open or close alerts."""
STATUS_FUTURE_TOLERANCE = FUTURE_TOLERANCE
"""A status dated further ahead of the receipt than this is not applied (a status in year 9999
would otherwise win against every later real one)."""
STATUS_PAST_TOLERANCE = timedelta(hours=24)
"""An "online" status dated further before the receipt than this is not applied: a heartbeat is
sent every few minutes, so a day-old one is a replay or a broken clock, not news. An "offline"
status has no such bound: it is the broker's will, written when the agent connected (possibly days
before it died); the writer applies it only if it belongs to the agent's current session."""


class Flag(StrEnum):
    """The backend's own flags on a stored reading (the device's are in ``quality``)."""

    CLOCK_NOT_SET = "clock_not_set"
    """The device clock was not set: measured_at is the agent's receipt time."""
    FUTURE_TIME = "future_time"
    """Historical: readings more than 5 minutes ahead are now held (``HoldReason.FUTURE_TIME``);
    rows stored before that change may still carry this flag."""


class HoldReason(StrEnum):
    IMPLAUSIBLE_VALUE = "implausible_value"
    NO_VALUE = "no_value"
    UNKNOWN_DEVICE = "unknown_device"
    UNMAPPED_USER = "unmapped_user"
    UNBOUND_AGENT = "unbound_agent"
    FUTURE_TIME = "future_time"
    TOO_OLD = "too_old"


@dataclass(frozen=True, slots=True)
class AcceptedReading:
    id: uuid.UUID
    measured_at: datetime
    patient_id: int
    agent_id: str
    device_id: int
    kind: str
    value: float | None
    components: Mapping[str, float | None]
    unit: str
    device_clock_trusted: bool
    agent_received_at: datetime
    quality: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    user_index: int | None = None
    raw_characteristic: str | None = None
    raw: bytes | None = None


@dataclass(frozen=True, slots=True)
class HeldReading:
    id: uuid.UUID
    measured_at: datetime
    patient_id: int | None
    agent_id: str
    device_address: str
    kind: str
    components: Mapping[str, float | None]
    unit: str
    reason: str
    """``<HoldReason>: <sentence>``, e.g. ``implausible_value: spo2 140 outside 50–100 %``."""
    measurement: Mapping[str, Any]
    """The measurement as received (JSON-ready), for review and re-processing."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    topic: str
    agent_id: str | None
    payload: bytes
    reason: str
    field: str | None = None

    def reading_ids(self) -> tuple[uuid.UUID, ...]:
        """The measurement ids the refused payload names, as far as they can be read, so the
        agent hears that its readings are on record (as a dead letter) and stops re-sending."""
        return ids_in_payload(self.payload)


def ids_in_payload(payload: bytes) -> tuple[uuid.UUID, ...]:
    """Best effort: every well-formed ``measurements[].id`` in a JSON payload, else nothing."""
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return ()
    items = data.get("measurements") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return ()
    out: list[uuid.UUID] = []
    for item in items[:MAX_BATCH]:
        mid = item.get("id") if isinstance(item, dict) else None
        if isinstance(mid, str):
            try:
                out.append(uuid.UUID(mid))
            except ValueError:
                continue
    return tuple(dict.fromkeys(out))


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    agent_id: str
    online: bool
    at: datetime
    version: str | None = None
    spool_depth: int | None = None
    spool_oldest_at: datetime | None = None
    payload: bytes = b""
    """The message as received (kept as a dead letter if the writer does not apply it)."""
    topic: str = ""


SESSION_MARGIN = timedelta(minutes=1)
"""An agent writes its will ("offline") just before it connects and sends its first "online" just
after: the will's time may be this much earlier than the session's first status."""


def status_refusal(status: StatusUpdate, *, status_at: datetime | None, online_since: datetime | None) -> str | None:
    """Pure: why a status is not applied to an agent whose newest applied status is ``status_at``
    and whose current online session began at ``online_since`` (None: offline); None to apply it.

    - "online" older than the newest applied status is a late or replayed one (out of order).
    - "offline" is the broker's will, dated when the agent connected: it ends the current session
      if it was written for it (at or after its start, less :data:`SESSION_MARGIN`); the will of
      an earlier session, published late (a session taken over by the agent's reconnect), is not
      applied. Before issue 12 a will was compared with the newest heartbeat, which is always
      newer, so a dead agent stayed "online"."""
    if status.online:
        if status_at is not None and status.at < status_at:
            return (f"online status time {status.at.isoformat()} is older than the newest applied status "
                    f"{status_at.isoformat()}; not applied")
        return None
    if online_since is not None and status.at < online_since - SESSION_MARGIN:
        return (f"offline status time {status.at.isoformat()} is older than the agent's current online session "
                f"(since {online_since.isoformat()}): the will of an earlier connection; not applied")
    return None


@dataclass(frozen=True, slots=True)
class Decision:
    """What one message becomes. Exactly one of: readings (accepted and/or held), a status
    update, a dead letter, or nothing at all (``ignored``: an empty retained-status clear)."""

    agent_id: str | None = None
    accepted: tuple[AcceptedReading, ...] = ()
    held: tuple[HeldReading, ...] = ()
    dead_letter: DeadLetter | None = None
    status: StatusUpdate | None = None
    sent_at: datetime | None = None
    ignored: bool = False

    @property
    def readings(self) -> int:
        return len(self.accepted) + len(self.held)


@dataclass(frozen=True, slots=True)
class _Attribution:
    patient_id: int | None
    device_id: int | None
    hold: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def is_live(d: Decision, now: datetime) -> bool:
    """Whether a decided message goes in the live lane: it carries a reading measured within
    :data:`LIVE_WITHIN` of ``now``, or no reading at all (a status or a dead letter: small, and
    its agent waits for the answer). Only a message that is all backlog waits behind live ones."""
    times = [r.measured_at for r in d.accepted] + [r.measured_at for r in d.held]
    return not times or any(now - at < LIVE_WITHIN for at in times)


def decide(topic: str, payload: bytes, *, topics: Topics, registry: RegistrySnapshot, now: datetime) -> Decision:
    """Validate and attribute one message. Never raises for bad input: that is a dead letter."""
    try:
        t = topics.parse(topic)
    except WireError as exc:
        return Decision(dead_letter=DeadLetter(topic, None, payload, exc.reason, exc.field))
    if t.kind is TopicKind.MEASUREMENTS:
        return _measurements(topic, t.agent_id, payload, topics, registry, now)
    if t.kind is TopicKind.STATUS:
        return _status(topic, t.agent_id, payload, registry, now)
    return Decision(
        dead_letter=DeadLetter(topic, t.agent_id, payload, f"ingest does not consume {t.kind.value} topics", "topic")
    )


def validate(topic: str, payload: bytes, *, topics: Topics) -> Envelope | DeadLetter:
    """The contract alone: schema (unknown majors included) and topic/payload agent equality."""
    try:
        agent_id = topics.parse(topic).agent_id
    except WireError as exc:
        return DeadLetter(topic, None, payload, exc.reason, exc.field)
    return _validate(topic, agent_id, payload, topics)


def _validate(topic: str, agent_id: str, payload: bytes, topics: Topics) -> Envelope | DeadLetter:
    # Fast path: pydantic parses the JSON itself (about twice as fast as json.loads plus
    # validation). Anything it refuses, or an envelope that left out "schema" (which the
    # model would default), goes through the contract's own parser for the exact error.
    try:
        env = Envelope.model_validate_json(payload)
        if "schema_version" in env.model_fields_set and env.agent_id == agent_id:
            return env
    except (ValueError, TypeError):
        pass
    try:
        return parse_envelope(payload, topic=topic, topics=topics)
    except WireError as exc:
        return DeadLetter(topic, agent_id, payload, exc.reason, exc.field)
    except Exception as exc:  # a contract bug must still end as a dead letter, not a crash
        return DeadLetter(topic, agent_id, payload, f"unparseable: {type(exc).__name__}: {exc}", "payload")


def attribute(envelope: Envelope, *, topic: str, payload: bytes, registry: RegistrySnapshot, now: datetime) -> Decision:
    """Authority and attribution by the registry; plausibility and time checks per reading."""
    agent = registry.agents.get(envelope.agent_id)
    if agent is None:
        return Decision(
            agent_id=envelope.agent_id,
            dead_letter=DeadLetter(topic, envelope.agent_id, payload, "agent is not enrolled", "agent_id"),
        )
    if not agent.active:
        return Decision(
            agent_id=envelope.agent_id,
            dead_letter=DeadLetter(topic, envelope.agent_id, payload, "agent is deactivated", "agent_id"),
        )
    accepted: list[AcceptedReading] = []
    held: list[HeldReading] = []
    agent_id = envelope.agent_id
    future = now + FUTURE_TOLERANCE
    oldest = now - MAX_READING_AGE
    attributions: dict[tuple[str, int | None], _Attribution] = {}
    for m in envelope.measurements:
        # A batch is usually one device and one user: attribute each pair once.
        key = (m.device.address, m.user_index)
        a = attributions.get(key)
        if a is None:
            a = attributions[key] = _attribute_one(m, agent_id, agent.patient_id, registry)
        trusted = m.device_clock_trusted
        measured_at = m.measured_at if trusted else m.received_at
        flags: tuple[str, ...] = () if trusted else (Flag.CLOCK_NOT_SET.value,)
        hold = a.hold or _out_of_time(measured_at, future, oldest, now) or _implausible(m)
        if hold is not None:
            held.append(
                HeldReading(
                    id=m.id,
                    measured_at=measured_at,
                    patient_id=a.patient_id,
                    agent_id=agent_id,
                    device_address=m.device.address,
                    kind=m.kind.value,
                    components=m.values,
                    unit=m.unit,
                    reason=hold,
                    measurement=m.model_dump(mode="json", exclude_none=True),
                )
            )
            continue
        assert a.patient_id is not None and a.device_id is not None
        raw = m.raw
        accepted.append(
            AcceptedReading(
                m.id,
                measured_at,
                a.patient_id,
                agent_id,
                a.device_id,
                _KIND_VALUE[m.kind],
                m.values[_PRIMARY[m.kind]],
                m.values,
                m.unit,
                trusted,
                m.received_at,
                m.quality,
                flags,
                m.user_index,
                raw.characteristic if raw is not None else None,
                bytes.fromhex(raw.hex) if raw is not None else None,
            )
        )
    return Decision(agent_id=envelope.agent_id, accepted=tuple(accepted), held=tuple(held), sent_at=envelope.sent_at)


def _attribute_one(
    m: Measurement, agent_id: str, agent_patient: int | None, registry: RegistrySnapshot
) -> _Attribution:
    device = registry.device(agent_id, m.device.address)
    if device is None:
        return _Attribution(
            agent_patient,
            None,
            f"{HoldReason.UNKNOWN_DEVICE}: device {m.device.address} is not registered to agent {agent_id}",
        )
    if device.id in registry.multi_user_devices:
        # A shared scale: the slot decides, and an unmapped slot is held rather than guessed,
        # because a visitor's weight on the citizen's chart is worse than a held reading.
        if m.user_index is None:
            return _Attribution(
                None, device.id, f"{HoldReason.UNMAPPED_USER}: shared device {m.device.address} sent no user index"
            )
        patient = registry.device_users.get((device.id, m.user_index))
        if patient is None:
            return _Attribution(
                None,
                device.id,
                f"{HoldReason.UNMAPPED_USER}: user {m.user_index} on device {m.device.address} "
                "is not mapped to a patient",
            )
        return _Attribution(patient, device.id)
    if agent_patient is None:
        return _Attribution(None, device.id, f"{HoldReason.UNBOUND_AGENT}: agent {agent_id} is not bound to a patient")
    return _Attribution(agent_patient, device.id)


def _out_of_time(measured_at: datetime, future: datetime, oldest: datetime, now: datetime) -> str | None:
    if measured_at > future:
        return (
            f"{HoldReason.FUTURE_TIME}: measured_at {measured_at.isoformat()} is more than "
            f"{int(FUTURE_TOLERANCE.total_seconds() // 60)} minutes after the backend's receipt {now.isoformat()}"
        )
    if measured_at < oldest:
        return (
            f"{HoldReason.TOO_OLD}: measured_at {measured_at.isoformat()} is more than "
            f"{MAX_READING_AGE.days} days before the backend's receipt {now.isoformat()}"
        )
    return None


_PRIMARY = {kind: k.primary.name for kind, k in KINDS.items()}
_KIND_VALUE = {kind: kind.value for kind in KINDS}  # Enum.value is a descriptor call per reading


def _implausible(m: Measurement) -> str | None:
    k = KINDS[m.kind]
    values = m.values
    if values.get(k.primary.name) is None:
        return f"{HoldReason.NO_VALUE}: {k.primary.name} has no value (the device reported none)"
    for c in k.components:
        v = values.get(c.name)
        if v is not None and not (c.plausible_low <= v <= c.plausible_high):
            return (
                f"{HoldReason.IMPLAUSIBLE_VALUE}: {c.name} {v:g} outside "
                f"{c.plausible_low:g}–{c.plausible_high:g} {c.display_unit}"
            )
    return None


def _measurements(
    topic: str, topic_agent: str, payload: bytes, topics: Topics, registry: RegistrySnapshot, now: datetime
) -> Decision:
    env = _validate(topic, topic_agent, payload, topics)
    if isinstance(env, DeadLetter):
        return Decision(agent_id=topic_agent, dead_letter=env)
    return attribute(env, topic=topic, payload=payload, registry=registry, now=now)


def _status(topic: str, topic_agent: str, payload: bytes, registry: RegistrySnapshot, now: datetime) -> Decision:
    def refused(reason: str, field: str | None) -> Decision:
        # Not applied: kept as a dead letter so the refusal is on record.
        return Decision(agent_id=topic_agent, dead_letter=DeadLetter(topic, topic_agent, payload, reason, field))

    if not payload:
        # Clearing a retained status (an operator removing a retired agent) is not a message.
        return Decision(agent_id=topic_agent, ignored=True)
    try:
        status = parse_status(payload)
    except WireError as exc:
        return refused(exc.reason, exc.field)
    except Exception as exc:
        return refused(f"unparseable: {type(exc).__name__}: {exc}", "payload")
    if status.agent_id != topic_agent:
        return refused(f"topic agent {topic_agent!r} differs from payload agent {status.agent_id!r}", "agent_id")
    if status.agent_id not in registry.agents:
        return refused("agent is not enrolled", "agent_id")
    if status.at > now + STATUS_FUTURE_TOLERANCE:
        return refused(f"status time {status.at.isoformat()} is more than "
                       f"{int(STATUS_FUTURE_TOLERANCE.total_seconds() // 60)} minutes after the backend's receipt "
                       f"{now.isoformat()}; not applied", "at")
    online = status.state is AgentState.ONLINE
    if online and status.at < now - STATUS_PAST_TOLERANCE:
        return refused(f"online status time {status.at.isoformat()} is more than "
                       f"{int(STATUS_PAST_TOLERANCE.total_seconds() // 3600)} hours before the backend's receipt "
                       f"{now.isoformat()}; not applied", "at")
    return Decision(
        agent_id=topic_agent,
        status=StatusUpdate(
            agent_id=status.agent_id,
            online=online,
            at=status.at,
            version=status.version,
            spool_depth=status.spool_depth,
            spool_oldest_at=status.spool_oldest_at,
            payload=payload,
            topic=topic,
        ),
    )
