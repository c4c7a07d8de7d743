"""Monitoring plans against time: which planned measurements were due, and which were missed.

Pure. A planned slot (kind, local time, weekday) is met by a reading of that kind measured
within ± the grace window around the slot; it is missed once ``now`` passes slot + grace with no
such reading. Slots inside a passive interval (hospitalised, holiday) or while the plan is
paused are not planned at all, so they raise no blue alert and do not count against adherence.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as dtime
from typing import Any
from zoneinfo import ZoneInfo

from alert_rules.evaluate import Finding
from alert_rules.model import MissingRule, PlannedDefault
from vitals.kinds import MeasurementKind


@dataclass(frozen=True, slots=True)
class PlanLine:
    kind: MeasurementKind
    times: tuple[dtime, ...]
    weekdays: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6)
    grace_minutes: int = 120


def plan_lines(plan: Iterable[PlannedDefault]) -> list[PlanLine]:
    """A programme's default plan (``monitoring_plan:`` in a rule file) as plan lines."""
    return [PlanLine(p.kind, tuple(p.times), tuple(p.weekdays), p.grace_minutes) for p in plan]


@dataclass(frozen=True, slots=True)
class Slot:
    kind: MeasurementKind
    due_at: datetime
    """The planned local time, as an aware datetime."""
    grace: timedelta

    @property
    def window(self) -> tuple[datetime, datetime]:
        return self.due_at - self.grace, self.due_at + self.grace


def planned_slots(
    lines: Sequence[PlanLine],
    *,
    start: datetime,
    end: datetime,
    tz: str = "Europe/Copenhagen",
    passive: Iterable[tuple[datetime, datetime | None]] = (),
    paused_until: datetime | None = None,
) -> list[Slot]:
    """Every slot whose due time lies in [start, end), minus the passive and paused ones."""
    zone = ZoneInfo(tz)
    passive = list(passive)
    out: list[Slot] = []
    day: date = start.astimezone(zone).date() - timedelta(days=1)
    last: date = end.astimezone(zone).date()
    while day <= last:
        for line in lines:
            if day.weekday() not in line.weekdays:
                continue
            for t in line.times:
                due = datetime.combine(day, t, tzinfo=zone)
                if not (start <= due < end):
                    continue
                if paused_until is not None and due < paused_until:
                    continue
                if any(s <= due and (e is None or due < e) for s, e in passive):
                    continue
                out.append(Slot(line.kind, due, timedelta(minutes=line.grace_minutes)))
        day += timedelta(days=1)
    out.sort(key=lambda s: s.due_at)
    return out


def slot_met(slot: Slot, times: Sequence[datetime]) -> bool:
    lo, hi = slot.window
    return any(lo <= t <= hi for t in times)


def missed_slots(
    slots: Sequence[Slot], readings: Mapping[MeasurementKind, Sequence[datetime]], *, now: datetime
) -> list[Slot]:
    """Slots whose grace window has passed with no reading of their kind inside it (each kind's
    times sorted once and searched, so months of slots and readings stay cheap)."""
    ordered = {kind: sorted(times) for kind, times in readings.items()}
    out = []
    for s in slots:
        if now <= s.due_at + s.grace:
            continue
        times = ordered.get(s.kind, [])
        lo, hi = s.window
        i = bisect.bisect_left(times, lo)
        if i == len(times) or times[i] > hi:
            out.append(s)
    return out


def missed_finding(rule: MissingRule, new: Sequence[Slot], earlier: Sequence[Mapping[str, Any]] = ()) -> Finding:
    """The blue finding for newly missed slots (``new``, oldest first): the scheduler's check and
    ``nearcare rules replay`` both build it here. ``earlier`` is the open blue alert's list of
    missed slots, kept with the new ones (the last 20)."""
    if not new:
        raise ValueError("missed_finding needs at least one missed slot")
    missed = [*earlier, *({"kind": s.kind.value, "due_at": s.due_at.isoformat()} for s in new)][-20:]
    return Finding(rule_id=rule.id, rule_kind=rule.kind, measurement=new[-1].kind.value, severity="blue",
                   value=None, title=rule.title, thresholds={"grace_minutes": new[-1].grace.total_seconds() / 60},
                   detail={"missed": missed})


def awaited(detail: Mapping[str, Any]) -> frozenset[str]:
    """The kinds an open blue alert waits for (a reading of one of them clears it)."""
    return frozenset(str(m.get("kind")) for m in detail.get("missed", []))


def missing_clear(rule: MissingRule) -> Finding:
    """A reading of an awaited kind: back in range for the blue alert."""
    return Finding(rule.id, rule.kind, None, None, None, rule.title, {})
