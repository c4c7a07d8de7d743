"""Replay a series of readings through the pure evaluator: what fires, when, how bad, to whom.

The alerts go through the backend's own state machine (:mod:`alert_rules.lifecycle`: identity
per rule, worst severity kept, re-routing when worse, auto-resolve after N readings in range),
with baselines recomputed each new day, so a clinician can try a rule change on a known series
before it goes live.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from alert_rules.loader import Ruleset
from alert_rules.model import Programme
from alert_rules.routing import RoutingConfig
from alert_rules.stream import Citizen, StreamReading, replay_stream
from vitals.kinds import MeasurementKind


class ReplayPatient(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    programme: Programme
    municipality: str = "Aarhus"
    department: str | None = None
    overrides: dict[str, dict[str, float]] = Field(default_factory=dict)


class ReplayReading(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    at: AwareDatetime
    kind: MeasurementKind
    values: dict[str, float]
    quality: tuple[str, ...] = ()


class ReplayFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    patient: ReplayPatient
    readings: tuple[ReplayReading, ...] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class ReplayEvent:
    at: datetime
    action: str  # opened, worsened, updated, resolved
    rule_id: str
    severity: str
    value: float | None
    team: str | None
    detail: Mapping[str, Any]


def replay(data: ReplayFile, ruleset: Ruleset, routing: RoutingConfig | None = None,
           *, tz: str = "Europe/Copenhagen") -> list[ReplayEvent]:
    """One citizen's series (``nearcare rules test``) through the same path as
    ``nearcare rules replay`` (:func:`alert_rules.stream.replay_stream`): the engine's driving
    functions, the backend's alert state machine, baselines as the nightly job makes them."""
    readings = [StreamReading("citizen", data.patient.programme, r.kind, r.values, r.at, r.quality, n)
                for n, r in enumerate(data.readings, start=1)]
    who = {"citizen": Citizen(programme=data.patient.programme, municipality=data.patient.municipality,
                              department=data.patient.department, overrides=data.patient.overrides)}
    return [ReplayEvent(t.at, t.event, t.rule, t.severity, t.value, t.team if routing is not None else None, {})
            for t in replay_stream(readings, ruleset, patients=who, routing=routing, tz=tz)]


def format_events(events: Sequence[ReplayEvent]) -> list[str]:
    lines = []
    for e in events:
        value = "" if e.value is None else f"{e.value:g}"
        team = f" -> {e.team}" if e.team else ""
        lines.append(f"{e.at.isoformat()}  {e.action:<8} {e.severity:<9} {e.rule_id:<30} {value:>6}{team}")
    return lines


