"""Demo accounts, one per role (and a second nurse in another municipality, to show scoping).

Only ever in demo mode: outside it this refuses, so no known password reaches a real system.
"""

from __future__ import annotations

import psycopg

from backend import registry
from backend.accounts.model import Role
from backend.accounts.store import create_user
from backend.errors import ConfigError
from backend.registry.demo import LUNG_DEPARTMENT, seed_teams

DEMO_PASSWORD = "demo-nearcare"
DEMO_USERS = ("sygeplejerske", "randers", "speciallaege", "borger", "admin", "admin2")
"""Two admins: an account one admin creates logs in only after the other approves it (four-eyes)."""


def _team_id(conn: psycopg.Connection, key: str) -> int:
    seed_teams(conn, keys=[key])
    return registry.get_team_by_key(conn, key=key).id


def seed_accounts(conn: psycopg.Connection, *, demo: bool) -> list[str]:
    """Create the demo users (idempotent); return the login lines the demo prints."""
    if not demo:
        raise ConfigError("demo accounts exist only in demo mode")
    citizen = conn.execute(
        "SELECT id, external_ref, name FROM patients WHERE municipality = 'Aarhus' AND active ORDER BY id LIMIT 1"
    ).fetchone()
    if citizen is None:
        p = registry.create_patient(
            conn,
            external_ref="demo-borger-1",
            name="Karen Demo",
            programme="copd",
            municipality="Aarhus",
            department=LUNG_DEPARTMENT,
        )
        citizen = (p.id, p.external_ref, p.name)
    users = [
        ("sygeplejerske", "Sara Sygeplejerske", Role.NURSE, "aarhus-sygepleje", None),
        ("randers", "Rasmus Randers", Role.NURSE, "randers-akutteam", None),
        ("speciallaege", "Lars Lungelæge", Role.SPECIALIST, "auh-lungeteam", None),
        ("borger", str(citizen[2]), Role.CITIZEN, None, int(citizen[0])),
        ("admin", "Anne Admin", Role.ADMIN, None, None),
        ("admin2", "Bo Administrator", Role.ADMIN, None, None),
    ]
    lines = []
    for username, display, role, team_key, patient_id in users:
        exists = conn.execute("SELECT 1 FROM users WHERE username = %s", (username,)).fetchone()
        if not exists:
            create_user(
                conn,
                username=username,
                display_name=display,
                role=role,
                password=DEMO_PASSWORD,
                team_id=_team_id(conn, team_key) if team_key else None,
                patient_id=patient_id,
            )
        scope = team_key or (f"patient {citizen[1]}" if role is Role.CITIZEN else "no clinical data")
        lines.append(f"{role.value:<10} {username} / {DEMO_PASSWORD}  ({scope})")
    return lines
