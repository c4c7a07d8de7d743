"""The demo region's teams and hospital departments: the one list that the demo, its accounts,
its alerting and the tests seed.

A specialist reads the patients referred to their team's department, and the test is string
equality (``backend/accounts/scope.py``). A patient's department must therefore be spelt exactly
as their team's, so every seed takes the names from here. The departments are named as Aarhus
Universitetshospital names them; ``alert_rules/routing.yaml`` names the teams by key.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import psycopg

from backend.registry.errors import RegistryConflict, RegistryNotFound
from backend.registry.service import create_team

LUNG_DEPARTMENT = "AUH Lungesygdomme"
HEART_DEPARTMENT = "AUH Hjertesygdomme"
ACUTE_DEPARTMENT = "AUH Akutafdelingen"


@dataclass(frozen=True, slots=True)
class TeamSeed:
    key: str
    name: str
    sector: str
    municipality: str | None = None
    department: str | None = None


DEMO_TEAMS: tuple[TeamSeed, ...] = (
    TeamSeed("aarhus-sygepleje", "Aarhus Kommune sygepleje", "municipal", municipality="Aarhus"),
    TeamSeed("randers-akutteam", "Randers Kommune akutteam", "municipal", municipality="Randers"),
    TeamSeed("silkeborg-sygepleje", "Silkeborg Kommune sygepleje", "municipal", municipality="Silkeborg"),
    TeamSeed("auh-lungeteam", "AUH udgående lungeteam", "hospital", department=LUNG_DEPARTMENT),
    TeamSeed("auh-hjerteteam", "AUH Hjertesygdomme udgående team", "hospital", department=HEART_DEPARTMENT),
    TeamSeed("auh-akut", "AUH Akutafdelingen", "hospital", department=ACUTE_DEPARTMENT),
)

# The department a programme's patients are referred to in the demo region (blood pressure stays
# with the municipality and the GP).
DEMO_DEPARTMENTS: dict[str, str | None] = {
    "copd": LUNG_DEPARTMENT,
    "heart_failure": HEART_DEPARTMENT,
    "hypertension": None,
}


def demo_team(key: str) -> TeamSeed:
    for team in DEMO_TEAMS:
        if team.key == key:
            return team
    raise RegistryNotFound(f"no demo team {key!r} (the demo teams are {', '.join(t.key for t in DEMO_TEAMS)})")


def seed_teams(conn: psycopg.Connection, /, *, keys: Iterable[str] | None = None) -> list[str]:
    """Create the demo teams (all, or those named in ``keys``) that do not exist yet; return the keys
    created. Idempotent, also when two seeds race: an existing team is left as it is."""
    created: list[str] = []
    for team in DEMO_TEAMS if keys is None else [demo_team(k) for k in keys]:
        try:
            create_team(conn, key=team.key, name=team.name, sector=team.sector, municipality=team.municipality,
                        department=team.department)
        except RegistryConflict:
            continue  # it exists
        created.append(team.key)
    return created
