"""The route tree (``routing.yaml``): which one team owns an alert, and who is next.

Alertmanager's shape: a root route with child routes matched depth-first, first match wins;
a child inherits receiver, SLA and escalation chain from its parent. Matching is on labels
(programme, severity, kind, measurement, municipality, department) plus named weekly time
intervals with Danish public holidays, evaluated in the routing timezone.

Receivers are team keys (rows in ``teams``). ``@municipal`` means "the municipal team of the
patient's municipality", looked up in ``municipal_teams`` (then, in the backend, in the teams
table by municipality). An alert whose receiver cannot be resolved goes to ``fallback_team``,
so no alert ever falls between chairs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as dtime
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from alert_rules.holidays import danish_public_holidays

MUNICIPAL = "@municipal"
LABELS = ("programme", "severity", "kind", "measurement", "rule", "municipality", "department")
WEEKDAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
TeamRef = Annotated[str, StringConstraints(pattern=r"^(@municipal|[a-z0-9][a-z0-9_.-]{0,63})$")]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def normalise_municipality(name: str) -> str:
    n = name.strip().lower()
    for suffix in (" kommune", " municipality"):
        if n.endswith(suffix):
            n = n[: -len(suffix)]
    return n.strip()


class TimeRange(_Strict):
    start: dtime
    end: dtime
    """Exclusive; 24:00 is written as 23:59:59 or use an end before start to wrap midnight."""


class TimeInterval(_Strict):
    weekdays: tuple[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], ...] = (
        "mon", "tue", "wed", "thu", "fri", "sat", "sun",
    )
    times: tuple[TimeRange, ...] = ()
    """Empty: all day."""
    on_holidays: bool = True
    """False: this interval does not apply on public holidays (treated as closed)."""

    @field_validator("times", mode="before")
    @classmethod
    def _parse_ranges(cls, v: object) -> object:
        if isinstance(v, list | tuple):
            out = []
            for item in v:
                if isinstance(item, str) and "-" in item:
                    a, b = item.split("-", 1)
                    out.append({"start": a.strip(), "end": b.strip()})
                else:
                    out.append(item)
            return out
        return v

    def contains(self, local: datetime, is_holiday: bool) -> bool:
        if is_holiday and not self.on_holidays:
            return False
        wd = local.weekday()
        t = local.time().replace(tzinfo=None)
        if not self.times:
            return wd in {WEEKDAYS[d] for d in self.weekdays}
        for r in self.times:
            if r.start <= r.end:
                if wd in {WEEKDAYS[d] for d in self.weekdays} and r.start <= t < r.end:
                    return True
            else:  # wraps midnight: the part after midnight belongs to the previous weekday
                if wd in {WEEKDAYS[d] for d in self.weekdays} and t >= r.start:
                    return True
                if (wd - 1) % 7 in {WEEKDAYS[d] for d in self.weekdays} and t < r.end:
                    return True
        return False


class Holidays(_Strict):
    danish_public: bool = True
    extra: tuple[Annotated[str, StringConstraints(pattern=r"^(\d{4}-)?\d{2}-\d{2}$")], ...] = ()
    """Extra closed days, ``MM-DD`` every year (e.g. 12-24 juleaften) or ``YYYY-MM-DD`` once."""

    def name_of(self, day: date) -> str | None:
        if self.danish_public and (n := danish_public_holidays(day.year).get(day)):
            return n
        if f"{day.month:02d}-{day.day:02d}" in self.extra or day.isoformat() in self.extra:
            return "lukkedag"
        return None


Matcher = Mapping[str, str | tuple[str, ...]]


class Route(_Strict):
    name: str | None = None
    match: dict[str, str | tuple[str, ...]] = Field(default_factory=dict)
    """label -> value, or a list of accepted values. Compared case-insensitively."""
    active_time_intervals: tuple[str, ...] = ()
    """The route matches only inside one of these intervals."""
    receiver: TeamRef | None = None
    escalate_to: tuple[TeamRef, ...] | None = None
    """The next teams, in order, when the owner has not given kvittering within the SLA."""
    sla_minutes: dict[Literal["red", "yellow", "blue", "technical"], int] | None = None
    routes: tuple[Route, ...] = ()

    @field_validator("match")
    @classmethod
    def _known_labels(cls, v: dict[str, object]) -> dict[str, object]:
        for k in v:
            if k not in LABELS:
                raise ValueError(f"unknown label {k!r}; labels are {list(LABELS)}")
        return v


class InhibitRule(_Strict):
    source_match: dict[str, str | tuple[str, ...]]
    target_match: dict[str, str | tuple[str, ...]]
    equal: tuple[str, ...] = ("patient",)
    source: str | None = None


class TeamContact(_Strict):
    email: tuple[str, ...] = ()
    webhook: bool = True


class RoutingConfig(_Strict):
    source: str = Field(min_length=3)
    timezone: str = "Europe/Copenhagen"
    fallback_team: TeamRef
    holidays: Holidays = Holidays()
    time_intervals: dict[str, tuple[TimeInterval, ...]] = Field(default_factory=dict)
    sla_minutes: dict[Literal["red", "yellow", "blue", "technical"], int]
    municipal_teams: dict[str, TeamRef] = Field(default_factory=dict)
    route: Route
    inhibit_rules: tuple[InhibitRule, ...] = ()
    team_contacts: dict[str, TeamContact] = Field(default_factory=dict)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {v!r}") from None
        return v

    @field_validator("sla_minutes")
    @classmethod
    def _all_severities(cls, v: dict[str, int]) -> dict[str, int]:
        missing = {"red", "yellow", "blue", "technical"} - set(v)
        if missing:
            raise ValueError(f"sla_minutes needs every severity; missing {sorted(missing)}")
        if any(m <= 0 for m in v.values()):
            raise ValueError("SLA minutes must be positive")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> RoutingConfig:
        if self.route.receiver is None:
            raise ValueError("the root route needs a receiver (the default team)")
        if self.route.match or self.route.active_time_intervals:
            raise ValueError("the root route matches everything: no match or active_time_intervals")

        def walk(r: Route) -> None:
            for name in r.active_time_intervals:
                if name not in self.time_intervals:
                    raise ValueError(f"route {r.name or r.match} names unknown time interval {name!r}")
            for c in r.routes:
                walk(c)

        walk(self.route)
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of routing one alert at one moment."""

    team: str
    """The resolved team key."""
    receiver: str
    """As written in routing.yaml (may be ``@municipal``)."""
    escalate_to: tuple[str, ...]
    """Resolved team keys, in order."""
    sla: timedelta
    route_path: tuple[str, ...]
    holiday: str | None


def _matches(matcher: Mapping[str, object], labels: Mapping[str, str]) -> bool:
    for key, want in matcher.items():
        have = labels.get(key)
        if have is None:
            return False
        options = want if isinstance(want, tuple | list) else (want,)
        norm = normalise_municipality if key == "municipality" else str.lower
        if norm(str(have)) not in {norm(str(o)) for o in options}:
            return False
    return True


def resolve_team(ref: str, labels: Mapping[str, str], config: RoutingConfig,
                 municipal_lookup: Mapping[str, str] | None = None) -> str | None:
    if ref != MUNICIPAL:
        return ref
    m = labels.get("municipality")
    if not m:
        return None
    key = normalise_municipality(m)
    for name, team in config.municipal_teams.items():
        if normalise_municipality(name) == key:
            return team
    if municipal_lookup:
        return municipal_lookup.get(key)
    return None


def route(
    config: RoutingConfig,
    labels: Mapping[str, str],
    *,
    at: datetime,
    municipal_lookup: Mapping[str, str] | None = None,
) -> Decision:
    """The one owning team for an alert with ``labels`` at ``at`` (aware)."""
    local = at.astimezone(config.zone)
    holiday = config.holidays.name_of(local.date())

    def active(r: Route) -> bool:
        if not r.active_time_intervals:
            return True
        return any(
            iv.contains(local, holiday is not None)
            for name in r.active_time_intervals
            for iv in config.time_intervals[name]
        )

    receiver = config.route.receiver or config.fallback_team
    escalate: tuple[str, ...] = config.route.escalate_to or ()
    sla = dict(config.sla_minutes)
    sla.update(config.route.sla_minutes or {})
    path: list[str] = ["root"]
    node = config.route
    while True:
        nxt = next((c for c in node.routes if _matches(c.match, labels) and active(c)), None)
        if nxt is None:
            break
        node = nxt
        path.append(node.name or ",".join(f"{k}={v}" for k, v in node.match.items()) or "(unnamed)")
        if node.receiver is not None:
            receiver = node.receiver
            escalate = node.escalate_to or ()
        elif node.escalate_to is not None:
            escalate = node.escalate_to
        if node.sla_minutes:
            sla.update(node.sla_minutes)
    team = resolve_team(receiver, labels, config, municipal_lookup) or config.fallback_team
    chain: list[str] = []
    for ref in escalate:
        t = resolve_team(ref, labels, config, municipal_lookup)
        if t and t != team and t not in chain:
            chain.append(t)
    severity = labels.get("severity", "yellow")
    minutes = sla.get(severity, sla["yellow"])  # type: ignore[call-overload]
    return Decision(team=team, receiver=receiver, escalate_to=tuple(chain), sla=timedelta(minutes=minutes),
                    route_path=tuple(path), holiday=holiday)


def inhibited_by(
    config: RoutingConfig,
    target: Mapping[str, str],
    sources: Sequence[tuple[object, Mapping[str, str]]],
) -> object | None:
    """The id of the first active alert (of ``sources``: (id, labels)) that mutes ``target``."""
    for rule in config.inhibit_rules:
        if not _matches(rule.target_match, target):
            continue
        for ident, labels in sources:
            if labels is target or not _matches(rule.source_match, labels):
                continue
            if labels.get("rule") == target.get("rule"):
                continue
            if all(labels.get(k) is not None and labels.get(k) == target.get(k) for k in rule.equal):
                return ident
    return None
