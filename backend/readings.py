"""What ingest hands on after a commit: stored, attributed, plausible readings."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from vitals.kinds import MeasurementKind


@dataclass(frozen=True, slots=True)
class StoredReading:
    id: uuid.UUID
    patient_id: int
    agent_id: str
    kind: MeasurementKind
    components: Mapping[str, float | None]
    measured_at: datetime
    stored_at: datetime
    quality: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    device_id: int | None = None
    extra: Mapping[str, object] = field(default_factory=dict)


ReadingsSink = Callable[[Sequence[StoredReading]], None]
"""Called by ingest after each commit, with a batch's readings in per-patient time order."""
