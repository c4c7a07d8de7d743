"""The clinician's edit of one measurement in a monitoring plan, from the patient page's form:
pure parsing and the plan it makes. Stored and sent by :mod:`backend.alerting.plans`."""

from __future__ import annotations

import re
from collections.abc import Sequence

from backend.alerting.errors import InvalidPlan
from backend.alerting.models import PlanItem
from vitals.kinds import MeasurementKind

EVERY_DAY = (0, 1, 2, 3, 4, 5, 6)
_HHMM = re.compile(r"([01]\d|2[0-3]):[0-5]\d")


def parse_kind(text: str) -> str:
    try:
        return MeasurementKind(text).value
    except ValueError:
        raise InvalidPlan(f"Unknown measurement: {text!r}") from None


def parse_times(text: str) -> tuple[str, ...]:
    """Local times "HH:MM" separated by commas or semicolons, sorted, each once."""
    slots: set[str] = set()
    for part in text.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        if not _HHMM.fullmatch(part):
            raise InvalidPlan(f"Not a time (HH:MM): {part!r}")
        slots.add(part)
    return tuple(sorted(slots))


def edited_plan(
    current: Sequence[PlanItem], *, kind: str, times: str, grace_minutes: int, remove: bool = False
) -> tuple[PlanItem, ...]:
    """The whole plan after setting (every day, at ``times``) or removing one measurement kind;
    the other kinds are kept as they are. Raises :class:`InvalidPlan` with a message for the
    clinician."""
    kind = parse_kind(kind)
    slots = parse_times(times)
    if grace_minutes < 0:
        raise InvalidPlan("The margin cannot be negative.")
    if not remove and not slots:
        raise InvalidPlan("Give at least one time (HH:MM), or remove the measurement.")
    kept = tuple(i for i in current if i.kind != kind)
    if remove:
        return kept
    return (*kept, PlanItem(kind=kind, times=slots, weekdays=EVERY_DAY, grace_minutes=grace_minutes))
