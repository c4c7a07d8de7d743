"""The citizen's own page (issue 13): who to call, and when. The team is the citizen's municipal
team (the routing's ``municipal_teams``, else the teams table), its phone number from the teams
table, and its phone hours from the routing schedule: the time intervals of the routes that give
the citizen's programme to the municipal team."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psycopg

from alert_rules.routing import Route, RoutingConfig, TimeInterval, normalise_municipality

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class TeamContactView:
    name: str
    phone: str | None
    hours: tuple[str, ...]
    """Each interval in words, e.g. "alle dage 07:00–22:00"; empty: not given by the routing."""
    on_holidays: bool = True


def _walk(route: Route) -> Iterator[Route]:
    yield route
    for child in route.routes:
        yield from _walk(child)


def _matches_programme(route: Route, programme: str) -> bool:
    want = route.match.get("programme")
    if want is None:
        return True
    values = (want,) if isinstance(want, str) else want
    return programme.lower() in {v.lower() for v in values}


def hours_in_words(intervals: tuple[TimeInterval, ...], t: Callable[..., str]) -> tuple[str, ...]:
    """Pure: time intervals as a person reads them ("man–fre 08:00–15:00", "alle dage 07:00–22:00")."""
    names = dict(zip(_DAYS, t("weekdays_short").split(","), strict=True))
    out = []
    for iv in intervals:
        days = list(iv.weekdays)
        if len(days) == 7:
            when = t("every_day")
        elif days == list(_DAYS[_DAYS.index(days[0]) : _DAYS.index(days[0]) + len(days)]):
            when = f"{names[days[0]]}–{names[days[-1]]}" if len(days) > 1 else names[days[0]]
        else:
            when = ", ".join(names[d] for d in days)
        times = ", ".join(f"{r.start.strftime('%H:%M')}–{r.end.strftime('%H:%M')}" for r in iv.times) or "00:00–24:00"
        out.append(f"{when} {times}")
    return tuple(out)


def municipal_hours(routing: RoutingConfig, *, programme: str) -> tuple[TimeInterval, ...]:
    """The intervals in which the routing gives this programme's (non-technical) alerts to the
    municipal team: the first such route with a schedule."""
    for r in _walk(routing.route):
        if r.receiver == "@municipal" and r.active_time_intervals and _matches_programme(r, programme) \
                and "severity" not in r.match:
            return tuple(iv for name in r.active_time_intervals for iv in routing.time_intervals.get(name, ()))
    return ()


def team_contact(
    conn: psycopg.Connection, *, patient_id: int, routing: RoutingConfig, t: Callable[..., str]
) -> TeamContactView | None:
    row = conn.execute("SELECT municipality, programme FROM patients WHERE id = %s", (patient_id,)).fetchone()
    if row is None:
        return None
    municipality, programme = row
    key = {normalise_municipality(k): v for k, v in routing.municipal_teams.items()}.get(
        normalise_municipality(municipality or "")
    )
    team = conn.execute(
        "SELECT name, phone FROM teams WHERE key = %s OR (municipality = %s AND sector = 'municipal')"
        " ORDER BY (key = %s) DESC NULLS LAST, id LIMIT 1",
        (key, municipality, key),
    ).fetchone()
    if team is None:
        return None
    intervals = municipal_hours(routing, programme=programme)
    return TeamContactView(
        name=team[0], phone=team[1], hours=hours_in_words(intervals, t),
        on_holidays=all(iv.on_holidays for iv in intervals),
    )
