"""The citizen's home screen as a value: what to say, in plain Danish, about today's measurements.

Pure: :func:`home_screen` takes the recent readings, their receipts, the spool fill, whether the
uplink is connected, the monitoring plan and ``now``, and returns a frozen :class:`HomeScreen`.
The HTTP edge (:mod:`edge_agent.screen.server`) only renders it.

What the screen says, and why:

- **That a measurement arrived and was seen, nothing more.** Each of today's readings has one
  state, in the order it travels: "Gemt på tabletten" (spooled, not yet sent), "Sendt" (the
  broker acknowledged it), "Modtaget" (the backend stored it), "Tjekkes af sygeplejersken" (the
  backend held it for review) and "Set af sygeplejerske" (a clinician gave kvittering, with
  name and time). A receipt outranks the outbox: if a receipt arrived, the reading got there.
- **No clinical judgement on the citizen's screen.** Values are shown as measured, with Danish
  labels, units and decimal comma, but never coloured red/yellow/green, compared with a
  threshold or called high or low. Interpreting a reading is the responsible nurse's job, who
  sees it with the citizen's history and personal thresholds and calls when it matters. A red
  number on a tablet at 3 a.m., with nobody to ask, frightens more than it helps (tryghed), and
  a green one could reassure someone who should call. A held reading is likewise described as
  being checked, not as wrong.
- **Offline is calm.** Without a connection the readings are safe in the spool, so the screen
  says so ("gemt og sendes, når der er forbindelse") and that the citizen need do nothing.
- **Reminders agree with the nurse's view.** "Husk: Blodtryk kl. 18:00" lists today's planned
  slots that no reading has met yet, using the same slot and grace-window rule
  (:mod:`alert_rules.plans`) that raises the nurse's missing-measurement alert. A slot whose
  window has passed is not nagged about: the nurse follows up on it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, tzinfo
from datetime import time as dtime
from enum import StrEnum
from typing import Any

from alert_rules.plans import PlanLine, planned_slots, slot_met
from edge_agent.spool import RecentReading, RecordedReceipt, SpoolFill
from vitals.kinds import MeasurementKind, spec
from vitals.wire import MonitoringPlan, TeamMessage

MAX_LISTED = 12
"""At most this many of today's readings are listed (newest first); a small screen holds no more."""


class ReadingState(StrEnum):
    SPOOLED = "spooled"
    SENT = "sent"
    STORED = "stored"
    HELD = "held"
    REFUSED = "refused"
    SEEN = "seen"


STATE_TEXT: dict[ReadingState, str] = {
    ReadingState.SPOOLED: "Gemt på tabletten",
    ReadingState.SENT: "Sendt",
    ReadingState.STORED: "Modtaget",
    ReadingState.HELD: "Tjekkes af sygeplejersken",
    ReadingState.REFUSED: "Modtaget med fejl. Vi undersøger det",
    ReadingState.SEEN: "Set af sygeplejerske",
}

# Friendlier than the wire's display units where a citizen would say it differently.
_UNIT_TEXT: dict[MeasurementKind, str] = {
    MeasurementKind.PULSE: "slag/min",
    MeasurementKind.RESPIRATION_RATE: "pr. min",
}
_DECIMALS: dict[MeasurementKind, int] = {
    MeasurementKind.WEIGHT: 1,
    MeasurementKind.TEMPERATURE: 1,
    MeasurementKind.GLUCOSE: 1,
}
_WEEKDAYS = ("mandag", "tirsdag", "onsdag", "torsdag", "fredag", "lørdag", "søndag")
_MONTHS = ("januar", "februar", "marts", "april", "maj", "juni", "juli", "august", "september", "oktober",
           "november", "december")


@dataclass(frozen=True, slots=True)
class ScreenReading:
    id: uuid.UUID
    kind: MeasurementKind
    label: str
    """Danish name of what was measured: "Blodtryk"."""
    value_text: str
    """The value with its unit, Danish formatting: "142/88 mmHg", "72,4 kg"."""
    measured_at: datetime
    time_text: str
    """"kl. 08:31" today, "i går kl. 19:02" or "3. marts kl. 08:00" before."""
    state: ReadingState
    state_text: str
    detail: str | None = None
    """For a seen reading: who and when ("Anna Nielsen, kl. 09:12")."""
    seen_at: datetime | None = None
    seen_by: str | None = None


@dataclass(frozen=True, slots=True)
class Reminder:
    kind: MeasurementKind
    due_at: datetime
    text: str
    """"Husk: Blodtryk kl. 18:00"."""


@dataclass(frozen=True, slots=True)
class TeamMessageView:
    """The care team's newest message, as the citizen reads it."""

    text: str
    by: str
    when_text: str


@dataclass(frozen=True, slots=True)
class HomeScreen:
    headline: str
    detail: str | None
    connected: bool
    connection_text: str
    date_text: str
    """"Mandag den 3. marts"."""
    updated_text: str
    """"Opdateret kl. 10:02", so a frozen screen can be told from a quiet day."""
    today: tuple[ScreenReading, ...]
    more_today: int
    """Readings today beyond the :data:`MAX_LISTED` shown."""
    latest_before_today: ScreenReading | None
    """On a day with no reading yet, the last one taken before, so the screen is never blank."""
    reminders: tuple[Reminder, ...]
    waiting_to_send: int
    """Readings still in the spool (any day)."""
    spool_full: bool
    now: datetime
    message: TeamMessageView | None = None
    """The care team's newest message (issue 13), shown until a newer one comes."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict for ``/status.json``."""

        def reading(r: ScreenReading | None) -> dict[str, Any] | None:
            if r is None:
                return None
            return {"id": str(r.id), "kind": r.kind.value, "label": r.label, "value_text": r.value_text,
                    "measured_at": r.measured_at.isoformat(), "time_text": r.time_text, "state": r.state.value,
                    "state_text": r.state_text, "detail": r.detail,
                    "seen_at": r.seen_at.isoformat() if r.seen_at else None, "seen_by": r.seen_by}

        return {
            "headline": self.headline,
            "detail": self.detail,
            "connected": self.connected,
            "connection_text": self.connection_text,
            "date_text": self.date_text,
            "updated_text": self.updated_text,
            "today": [reading(r) for r in self.today],
            "more_today": self.more_today,
            "latest_before_today": reading(self.latest_before_today),
            "reminders": [{"kind": m.kind.value, "due_at": m.due_at.isoformat(), "text": m.text}
                          for m in self.reminders],
            "waiting_to_send": self.waiting_to_send,
            "spool_full": self.spool_full,
            "now": self.now.isoformat(),
            "message": ({"text": self.message.text, "by": self.message.by, "when_text": self.message.when_text}
                        if self.message else None),
        }


# -- Danish formatting -----------------------------------------------------------------------------


def danish_number(value: float, decimals: int = 0) -> str:
    """``1234.5 -> "1.234,5"``: Danish thousands point and decimal comma."""
    text = f"{value:,.{decimals}f}"
    return text.replace(",", "\x00").replace(".", ",").replace("\x00", ".")


def _decimals(kind: MeasurementKind, value: float) -> int:
    d = _DECIMALS.get(kind, 0)
    # A scale with 50 g steps shows 72,35 kg; say what the device's own display said.
    if d and abs(value * 10**d - round(value * 10**d)) > 1e-6:
        return d + 1
    return d


def value_text(kind: MeasurementKind, values: Mapping[str, float | None]) -> str:
    """The reading as the citizen would read it off the device: "142/88 mmHg", "94 %"."""
    k = spec(kind)
    if kind is MeasurementKind.BLOOD_PRESSURE:
        sys_, dia = values.get("systolic"), values.get("diastolic")
        if sys_ is None or dia is None:
            return "Ingen værdi"
        return f"{danish_number(sys_)}/{danish_number(dia)} {k.primary.display_unit}"
    v = values.get(k.primary.name)
    if v is None:
        return "Ingen værdi"
    unit = _UNIT_TEXT.get(kind, k.primary.display_unit)
    return f"{danish_number(v, _decimals(kind, v))} {unit}"


def clock_text(at: datetime, zone: tzinfo) -> str:
    return "kl. " + at.astimezone(zone).strftime("%H:%M")


def date_text(day: date) -> str:
    return f"{_WEEKDAYS[day.weekday()].capitalize()} den {day.day}. {_MONTHS[day.month - 1]}"


def when_text(at: datetime, *, today: date, zone: tzinfo) -> str:
    day = at.astimezone(zone).date()
    if day == today:
        return clock_text(at, zone)
    if day == today - timedelta(days=1):
        return "i går " + clock_text(at, zone)
    return f"{day.day}. {_MONTHS[day.month - 1]} {clock_text(at, zone)}"


# -- states ----------------------------------------------------------------------------------------


def reading_state(
    reading: RecentReading, receipts: Sequence[RecordedReceipt]
) -> tuple[ReadingState, RecordedReceipt | None]:
    """The furthest the reading has come, and the receipt that says so."""
    by_status = {r.status: r for r in receipts}
    if "seen" in by_status:
        return ReadingState.SEEN, by_status["seen"]
    stored, held = by_status.get("stored"), by_status.get("held")
    if stored and held:  # a held reading reviewed and released later, or the other way round
        return (ReadingState.STORED, stored) if stored.at >= held.at else (ReadingState.HELD, held)
    if stored:
        return ReadingState.STORED, stored
    if held:
        return ReadingState.HELD, held
    if "dead_letter" in by_status:  # the backend kept it, but could not read it: an operator's matter
        return ReadingState.REFUSED, by_status["dead_letter"]
    return (ReadingState.SPOOLED if reading.pending else ReadingState.SENT), None


def _screen_reading(r: RecentReading, receipts: Sequence[RecordedReceipt], *, today: date,
                    zone: tzinfo) -> ScreenReading:
    state, receipt = reading_state(r, receipts)
    detail = seen_at = seen_by = None
    if state is ReadingState.SEEN and receipt is not None:
        seen_at, seen_by = receipt.at, receipt.by
        detail = f"{receipt.by}, {clock_text(receipt.at, zone)}" if receipt.by else clock_text(receipt.at, zone)
    return ScreenReading(
        id=r.id,
        kind=r.kind,
        label=spec(r.kind).label_da,
        value_text=value_text(r.kind, r.values),
        measured_at=r.measured_at,
        time_text=when_text(r.measured_at, today=today, zone=zone),
        state=state,
        state_text=STATE_TEXT[state],
        detail=detail,
        seen_at=seen_at,
        seen_by=seen_by,
    )


def one_status_per_measurement(readings: Sequence[ScreenReading]) -> list[ScreenReading]:
    """Pure: the values of one measurement (an oximeter's SpO2 and pulse, a cuff's pressure and
    pulse: the same ``measured_at``) get one status between them (issue 13: SpO2 said "Set" while
    the pulse from the same measurement said "Modtaget"). A nurse's kvittering of any of its
    values means the measurement was seen; else a value being checked or refused speaks for the
    measurement; else the least advanced of spooled, sent and received."""
    groups: dict[datetime, list[ScreenReading]] = {}
    for r in readings:
        groups.setdefault(r.measured_at, []).append(r)
    order = (ReadingState.SPOOLED, ReadingState.SENT, ReadingState.STORED)
    chosen: dict[datetime, ScreenReading] = {}
    for at, rs in groups.items():
        if len(rs) < 2:
            continue
        by_state: dict[ReadingState, ScreenReading] = {}
        for r in sorted(rs, key=lambda r: r.seen_at or r.measured_at):  # the latest kvittering speaks
            by_state[r.state] = r
        for state in (ReadingState.SEEN, ReadingState.REFUSED, ReadingState.HELD):
            if state in by_state:
                chosen[at] = by_state[state]
                break
        else:
            chosen[at] = min(rs, key=lambda r: order.index(r.state))
    out = []
    for r in readings:
        lead = chosen.get(r.measured_at)
        if lead is None or lead is r:
            out.append(r)
        else:
            out.append(replace(r, state=lead.state, state_text=lead.state_text, detail=lead.detail,
                               seen_at=lead.seen_at, seen_by=lead.seen_by))
    return out


# -- reminders -------------------------------------------------------------------------------------


def reminders(plan: MonitoringPlan | None, readings: Sequence[RecentReading], *, now: datetime) -> list[Reminder]:
    """Today's planned slots not yet met whose grace window is still open."""
    if plan is None or not plan.measurements:
        return []
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(plan.timezone)
    local_day = now.astimezone(zone).date()
    start = datetime.combine(local_day, dtime(0), tzinfo=zone)
    lines = [PlanLine(m.kind, m.times, m.weekdays, m.grace_minutes) for m in plan.measurements]
    slots = planned_slots(lines, start=start, end=start + timedelta(days=1), tz=plan.timezone,
                          paused_until=plan.paused_until)
    times: dict[MeasurementKind, list[datetime]] = {}
    for r in readings:
        times.setdefault(r.kind, []).append(r.measured_at)
    out = []
    for s in slots:
        if now > s.due_at + s.grace or slot_met(s, times.get(s.kind, ())):
            continue
        out.append(Reminder(s.kind, s.due_at, f"Husk: {spec(s.kind).label_da} {clock_text(s.due_at, zone)}"))
    return out


# -- the screen ------------------------------------------------------------------------------------


def _headline(today: Sequence[ScreenReading], *, pending: int, connected: bool, full: bool,
              zone: tzinfo) -> tuple[str, str | None]:
    if full:
        return ("Tabletten har ikke plads til flere målinger",
                "De målinger, der er gemt, er ikke tabt. Ring venligst til sygeplejersken.")
    if pending:
        subject = "Din måling er" if pending == 1 else f"Dine {pending} målinger er"
        if not connected:
            return f"{subject} gemt og sendes, når der er forbindelse", "Du behøver ikke gøre noget."
        return ("Din måling sendes nu" if pending == 1 else f"Dine {pending} målinger sendes nu"), None
    if not today:
        return "Ingen målinger i dag endnu", None
    if any(r.state is ReadingState.SENT for r in today):
        return "Din måling er sendt", "Her står det, når den er modtaget."
    if all(r.state is ReadingState.SEEN for r in today):
        latest = max(today, key=lambda r: r.seen_at or r.measured_at)
        when = clock_text(latest.seen_at or latest.measured_at, zone)
        return f"Set af sygeplejerske {when}", (f"{latest.seen_by} har set dine målinger." if latest.seen_by
                                                else None)
    return "Alt er modtaget", "Tak for dine målinger i dag."


def home_screen(
    *,
    readings: Sequence[RecentReading],
    receipts: Mapping[uuid.UUID, Sequence[RecordedReceipt]],
    fill: SpoolFill,
    connected: bool,
    plan: MonitoringPlan | None,
    now: datetime,
    zone: tzinfo,
    message: TeamMessage | None = None,
) -> HomeScreen:
    today = now.astimezone(zone).date()
    ordered = sorted(readings, key=lambda r: r.measured_at, reverse=True)
    todays = one_status_per_measurement([
        _screen_reading(r, receipts.get(r.id, ()), today=today, zone=zone) for r in ordered
        if r.measured_at.astimezone(zone).date() == today
    ])
    earlier = next((r for r in ordered if r.measured_at.astimezone(zone).date() < today), None)
    pending = fill.unsent  # the outbox is the truth; older unsent readings count too
    headline, detail = _headline(todays, pending=pending, connected=connected, full=fill.full, zone=zone)
    return HomeScreen(
        headline=headline,
        detail=detail,
        connected=connected,
        connection_text=("Forbundet" if connected
                         else "Ingen forbindelse lige nu. Målinger gemmes på tabletten."),
        date_text=date_text(today),
        updated_text="Opdateret " + clock_text(now, zone),
        today=tuple(todays[:MAX_LISTED]),
        more_today=max(0, len(todays) - MAX_LISTED),
        latest_before_today=(None if todays or earlier is None
                             else _screen_reading(earlier, receipts.get(earlier.id, ()), today=today, zone=zone)),
        reminders=tuple(reminders(plan, ordered, now=now)),
        waiting_to_send=pending,
        spool_full=fill.full,
        now=now,
        message=(TeamMessageView(message.text, message.by, when_text(message.at, today=today, zone=zone))
                 if message is not None else None),
    )
