"""``nearcare rules score``: how good are the alerts, scored as issue 11 defines it.

- A deterioration is **caught** when a clinical alert (yellow or red) opens for that citizen
  on a day within [event - 7 days, event - 1 day].
- A **false alert-day** is a (citizen, day) on which a clinical alert opened, outside
  [event - 7 days, event + 5 days] of every one of that citizen's events.
- The rate is false alert-days / (citizen-days / 30.4): per patient-month.
- Technical alerts (severity ``technical``: agent offline, battery) and missed measurements
  (``blue``) are counted apart and never as clinical.

Days are local calendar days (``tz``). The events file (JSON Lines) holds two kinds of line:
``{"patient": "P0001", "event": "copd_exacerbation", "day": "2026-02-11"}`` (or ``"at"``) and,
once per citizen, ``{"patient": "P0001", "monitored_from": "2026-01-01", "monitored_to": "2026-06-29"}``:
the citizen-days of the denominator, citizens with no event included.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from alert_rules.stream import ReplayInputError

CLINICAL = frozenset({"red", "yellow"})
PATIENT_MONTH_DAYS = 30.4
CATCH_BEFORE = (7, 1)
"""Caught: opened from 7 days before the event up to 1 day before it."""
QUIET_AROUND = (7, 5)
"""Not false: opened from 7 days before to 5 days after an event."""


class _AlertLine(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    patient: str = Field(min_length=1)
    rule: str = Field(min_length=1)
    severity: Literal["red", "yellow", "blue", "technical"]
    event: Literal["opened", "worsened", "resolved", "updated"]
    at: AwareDatetime
    value: float | None = None


class _EventLine(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    patient: str = Field(min_length=1)
    event: str | None = Field(default=None, min_length=1)
    day: date | None = None
    at: AwareDatetime | None = None
    monitored_from: date | None = None
    monitored_to: date | None = None


@dataclass(frozen=True, slots=True)
class AlertOpen:
    patient: str
    rule: str
    severity: str
    event: str
    day: date


@dataclass(frozen=True, slots=True)
class Event:
    patient: str
    kind: str
    day: date


def _json_lines(lines: Iterable[str], source: str) -> Iterable[tuple[int, dict[str, Any]]]:
    for n, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text:
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ReplayInputError(f"not JSON: {exc.msg}", file=source, line=n, field=None) from None
        if not isinstance(data, dict):
            raise ReplayInputError("each line is a JSON object", file=source, line=n, field=None)
        yield n, data


def _invalid(exc: ValidationError, source: str, n: int) -> ReplayInputError:
    err = exc.errors(include_url=False)[0]
    return ReplayInputError(str(err["msg"]), file=source, line=n,
                            field=".".join(str(p) for p in err["loc"]) or None)


def parse_alerts(lines: Iterable[str], *, source: str = "<alerts>", tz: str = "Europe/Copenhagen") -> list[AlertOpen]:
    zone = ZoneInfo(tz)
    out = []
    for n, data in _json_lines(lines, source):
        try:
            a = _AlertLine.model_validate(data)
        except ValidationError as exc:
            raise _invalid(exc, source, n) from None
        out.append(AlertOpen(a.patient, a.rule, a.severity, a.event, a.at.astimezone(zone).date()))
    return out


def parse_events(lines: Iterable[str], *, source: str = "<events>",
                 tz: str = "Europe/Copenhagen") -> tuple[list[Event], dict[str, tuple[date, date]]]:
    zone = ZoneInfo(tz)
    events: list[Event] = []
    monitored: dict[str, tuple[date, date]] = {}
    for n, data in _json_lines(lines, source):
        try:
            e = _EventLine.model_validate(data)
        except ValidationError as exc:
            raise _invalid(exc, source, n) from None
        if e.monitored_from is not None or e.monitored_to is not None:
            if e.monitored_from is None or e.monitored_to is None or e.monitored_to < e.monitored_from:
                raise ReplayInputError("monitored_from and monitored_to go together, from <= to", file=source,
                                       line=n, field="monitored_to")
            if e.event is not None or e.day is not None or e.at is not None:
                raise ReplayInputError("a monitored line names no event", file=source, line=n, field="event")
            if e.patient in monitored:
                raise ReplayInputError(f"citizen {e.patient!r} is monitored twice", file=source, line=n,
                                       field="patient")
            monitored[e.patient] = (e.monitored_from, e.monitored_to)
            continue
        if e.event is None:
            raise ReplayInputError("an event line needs event", file=source, line=n, field="event")
        if (e.day is None) == (e.at is None):
            raise ReplayInputError("an event has exactly one of day or at", file=source, line=n, field="day")
        if e.day is not None:
            day = e.day
        else:
            assert e.at is not None
            day = e.at.astimezone(zone).date()
        events.append(Event(e.patient, e.event, day))
    return events, monitored


@dataclass(frozen=True, slots=True)
class RuleScore:
    rule: str
    opened: int
    caught: int
    caught_alone: int
    false_alert_days: int


@dataclass(frozen=True, slots=True)
class Score:
    citizens: int
    citizen_days: int
    events: int
    caught: int
    caught_red: int
    false_alert_days: int
    false_alert_days_red: int
    clinical_alerts: int
    red_alerts: int
    yellow_alerts: int
    technical_alerts: int
    blue_alerts: int
    rules: tuple[RuleScore, ...]

    @property
    def patient_months(self) -> float:
        return self.citizen_days / PATIENT_MONTH_DAYS

    @property
    def caught_pct(self) -> float:
        return 100.0 * self.caught / self.events if self.events else 0.0

    @property
    def false_per_patient_month(self) -> float:
        return self.false_alert_days / self.patient_months if self.citizen_days else 0.0

    @property
    def red_false_per_patient_month(self) -> float:
        return self.false_alert_days_red / self.patient_months if self.citizen_days else 0.0

    @property
    def alerts_per_patient_week(self) -> float:
        return self.clinical_alerts / (self.citizen_days / 7) if self.citizen_days else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "citizens": self.citizens, "citizen_days": self.citizen_days,
            "patient_months": round(self.patient_months, 2), "events": self.events, "caught": self.caught,
            "caught_pct": round(self.caught_pct, 1), "false_alert_days": self.false_alert_days,
            "false_alert_days_per_patient_month": round(self.false_per_patient_month, 3),
            "clinical_alerts": self.clinical_alerts,
            "alerts_per_patient_week": round(self.alerts_per_patient_week, 3),
            "red": {"alerts": self.red_alerts, "caught": self.caught_red,
                    "caught_pct": round(100.0 * self.caught_red / self.events, 1) if self.events else 0.0,
                    "false_alert_days": self.false_alert_days_red,
                    "false_alert_days_per_patient_month": round(self.red_false_per_patient_month, 3)},
            "yellow": {"alerts": self.yellow_alerts},
            "technical": {"alerts": self.technical_alerts, "missed_measurement_alerts": self.blue_alerts},
            "rules": [{"rule": r.rule, "opened": r.opened, "caught": r.caught, "caught_alone": r.caught_alone,
                       "false_alert_days": r.false_alert_days} for r in self.rules],
        }


def score(alerts: Sequence[AlertOpen], events: Sequence[Event], monitored: Mapping[str, tuple[date, date]]) -> Score:
    """The scores; every citizen named by an alert or event must be in ``monitored``."""
    for a in alerts:
        if a.patient not in monitored:
            raise ReplayInputError(f"alert for citizen {a.patient!r}, who has no monitored line", file="<events>",
                                   line=None, field="patient")
    for e in events:
        if e.patient not in monitored:
            raise ReplayInputError(f"event for citizen {e.patient!r}, who has no monitored line", file="<events>",
                                   line=None, field="patient")
    citizen_days = sum((to - frm).days + 1 for frm, to in monitored.values())
    by_patient: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        by_patient[e.patient].append(e)
    opens = [a for a in alerts if a.event == "opened"]
    clinical = [a for a in opens if a.severity in CLINICAL]
    # red: opened red, or worsened to red
    red_days = [a for a in alerts if a.severity == "red" and a.event in ("opened", "worsened")]

    def in_catch(a: AlertOpen, e: Event) -> bool:
        return e.day - timedelta(days=CATCH_BEFORE[0]) <= a.day <= e.day - timedelta(days=CATCH_BEFORE[1])

    def quiet(a: AlertOpen) -> bool:
        return any(e.day - timedelta(days=QUIET_AROUND[0]) <= a.day <= e.day + timedelta(days=QUIET_AROUND[1])
                   for e in by_patient.get(a.patient, ()))

    caught = 0
    caught_red = 0
    rules_catching: dict[str, int] = defaultdict(int)
    alone: dict[str, int] = defaultdict(int)
    clinical_by_patient: dict[str, list[AlertOpen]] = defaultdict(list)
    for a in clinical:
        clinical_by_patient[a.patient].append(a)
    red_by_patient: dict[str, list[AlertOpen]] = defaultdict(list)
    for a in red_days:
        red_by_patient[a.patient].append(a)
    for e in events:
        catchers = {a.rule for a in clinical_by_patient.get(e.patient, ()) if in_catch(a, e)}
        if catchers:
            caught += 1
            for r in catchers:
                rules_catching[r] += 1
            if len(catchers) == 1:
                alone[next(iter(catchers))] += 1
        if any(in_catch(a, e) for a in red_by_patient.get(e.patient, ())):
            caught_red += 1
    false_days = {(a.patient, a.day) for a in clinical if not quiet(a)}
    false_red = {(a.patient, a.day) for a in red_days if not quiet(a)}
    false_by_rule: dict[str, set[tuple[str, date]]] = defaultdict(set)
    opened_by_rule: dict[str, int] = defaultdict(int)
    for a in clinical:
        opened_by_rule[a.rule] += 1
        if not quiet(a):
            false_by_rule[a.rule].add((a.patient, a.day))
    rules = tuple(RuleScore(r, opened_by_rule[r], rules_catching.get(r, 0), alone.get(r, 0),
                            len(false_by_rule.get(r, ())))
                  for r in sorted(opened_by_rule))
    return Score(
        citizens=len(monitored), citizen_days=citizen_days, events=len(events), caught=caught, caught_red=caught_red,
        false_alert_days=len(false_days), false_alert_days_red=len(false_red), clinical_alerts=len(clinical),
        red_alerts=sum(1 for a in clinical if a.severity == "red"),
        yellow_alerts=sum(1 for a in clinical if a.severity == "yellow"),
        technical_alerts=sum(1 for a in opens if a.severity == "technical"),
        blue_alerts=sum(1 for a in opens if a.severity == "blue"), rules=rules)


def format_score(s: Score) -> list[str]:
    lines = [
        f"citizens {s.citizens}, citizen-days {s.citizen_days} ({s.patient_months:.1f} patient-months), "
        f"events {s.events}",
        f"caught                      {s.caught}/{s.events} = {s.caught_pct:.1f} %",
        f"false alert-days            {s.false_alert_days} = {s.false_per_patient_month:.3f} per patient-month",
        f"clinical alerts             {s.clinical_alerts} = {s.alerts_per_patient_week:.3f} per patient-week "
        f"(opened red {s.red_alerts}, yellow {s.yellow_alerts})",
        f"red: caught                 {s.caught_red}/{s.events}; false alert-days {s.false_alert_days_red} = "
        f"{s.red_false_per_patient_month:.3f} per patient-month",
        f"technical alerts            {s.technical_alerts} (missed measurement: {s.blue_alerts}), not clinical",
        "",
        f"{'rule':<36} {'opened':>7} {'caught':>7} {'alone':>6} {'false days':>11}",
    ]
    for r in s.rules:
        lines.append(f"{r.rule:<36} {r.opened:>7} {r.caught:>7} {r.caught_alone:>6} {r.false_alert_days:>11}")
    return lines
