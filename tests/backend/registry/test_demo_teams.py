"""The demo region's one team list: it covers every team the routing names, a programme's
department is a team's department letter for letter (specialist scope is string equality), and
seeding it twice, or from two places, gives one team each."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from backend import registry
from backend.accounts.model import Role, User
from backend.accounts.scope import can_read_patient
from backend.registry.demo import ACUTE_DEPARTMENT, DEMO_DEPARTMENTS, DEMO_TEAMS, demo_team, seed_teams

ROUTING = Path(__file__).resolve().parents[3] / "alert_rules" / "routing.yaml"


def _route_teams(node: dict[str, Any]) -> set[str]:
    found = {node["receiver"]} if "receiver" in node else set()
    found |= set(node.get("escalate_to", ()))
    for child in node.get("routes", ()):
        found |= _route_teams(child)
    return found


def test_every_team_the_routing_names_is_a_demo_team() -> None:
    routing = yaml.safe_load(ROUTING.read_text(encoding="utf-8"))
    named = _route_teams(routing["route"]) | set(routing["municipal_teams"].values())
    named |= {routing["fallback_team"], *routing.get("team_contacts", {})}
    named.discard("@municipal")
    assert named, "routing.yaml names no team: the walk above is wrong"
    assert named <= {t.key for t in DEMO_TEAMS}, named - {t.key for t in DEMO_TEAMS}
    # and "@municipal" resolves for every demo municipality
    municipal = {t.municipality: t.key for t in DEMO_TEAMS if t.sector == "municipal"}
    assert routing["municipal_teams"] == municipal


def test_departments_are_spelt_as_the_teams_spell_them() -> None:
    keys = [t.key for t in DEMO_TEAMS]
    assert len(keys) == len(set(keys))
    team_departments = {t.department for t in DEMO_TEAMS if t.sector == "hospital"}
    assert None not in team_departments
    referred = {d for d in DEMO_DEPARTMENTS.values() if d is not None}
    assert referred <= team_departments, referred - team_departments
    assert demo_team("auh-akut").department == ACUTE_DEPARTMENT == "AUH Akutafdelingen"
    # a specialist of the lung team reads a COPD patient of the demo, and only by equal spelling
    lung = demo_team("auh-lungeteam")
    specialist = User(1, "s", "S", Role.SPECIALIST, team_key=lung.key, department=lung.department)
    assert can_read_patient(specialist, patient_id=7, municipality="Aarhus", department=DEMO_DEPARTMENTS["copd"])[0]
    assert not can_read_patient(specialist, patient_id=7, municipality="Aarhus", department="AUH Lunge")[0]


def test_seed_teams_creates_each_team_once(empty_database_url: str) -> None:
    from backend.store import migrate

    migrate(empty_database_url)
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        assert seed_teams(conn, keys=["auh-akut"]) == ["auh-akut"]
        assert seed_teams(conn) == [t.key for t in DEMO_TEAMS if t.key != "auh-akut"]
        assert seed_teams(conn) == []
        rows = conn.execute("SELECT key, name, sector, municipality, department FROM teams ORDER BY id").fetchall()
        assert sorted(rows) == sorted((t.key, t.name, t.sector, t.municipality, t.department) for t in DEMO_TEAMS)
        assert registry.get_team_by_key(conn, key="auh-akut").department == "AUH Akutafdelingen"


def test_an_unknown_demo_team_is_named_in_the_error() -> None:
    with pytest.raises(registry.RegistryNotFound, match="auh-ukendt"):
        demo_team(f"auh-ukendt-{secrets.token_hex(2)}")
