"""Admin actions: enrolment with a one-time code, binding, devices, teams, places, users.

Enrolment is two steps so that no password is ever shown to a person or stored in clear:

1. ``enrol_agent`` (admin): the agent row (via backend.registry) and a one-time code, valid
   for ``ttl``; the broker account is created with a random password nobody knows.
2. ``redeem_enrolment`` (the tablet, with the code typed in by the installer): a fresh MQTT
   password is set on the broker and returned once, with the broker address and topic root.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from backend import registry
from backend.accounts.model import Role, User
from backend.accounts.store import create_user
from backend.admin.credentials import CredentialStore
from backend.errors import BackendError

log = logging.getLogger(__name__)
CODE_TTL = timedelta(hours=72)
# No 0/O/1/I/L: the code is read aloud and typed on a tablet by an installer.
_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"


class AdminError(BackendError):
    """An admin action that cannot be done as asked."""


@dataclass(frozen=True, slots=True)
class Enrolment:
    agent_id: str
    code: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class AgentCredentials:
    agent_id: str
    mqtt_username: str
    mqtt_password: str
    broker_url: str
    topic_root: str


def _code_hash(secret: str, agent_id: str, code: str) -> str:
    normalised = code.replace("-", "").replace(" ", "").upper()
    return hashlib.sha256(f"{secret}\0{agent_id}\0{normalised}".encode()).hexdigest()


def new_code() -> str:
    raw = "".join(secrets.choice(_ALPHABET) for _ in range(12))
    return "-".join(raw[i : i + 4] for i in range(0, 12, 4))


def enrol_agent(
    conn: psycopg.Connection,
    *,
    agent_id: str,
    by: User,
    credentials: CredentialStore,
    secret: str,
    patient_id: int | None = None,
    ttl: timedelta = CODE_TTL,
    now: datetime | None = None,
) -> Enrolment:
    now = now or datetime.now(UTC)
    try:
        existing = registry.get_agent(conn, agent_id=agent_id)
    except registry.RegistryNotFound:
        existing = None
    if existing is None:
        try:
            registry.enrol_agent(conn, agent_id=agent_id, patient_id=patient_id, mqtt_username=agent_id)
        except registry.RegistryError as exc:
            raise AdminError(str(exc)) from exc
    elif patient_id is not None:
        registry.bind_agent(conn, agent_id=agent_id, patient_id=patient_id)
    # The broker account exists from now on, but only the redeemed password will work.
    credentials.set_agent(agent_id=agent_id, password=secrets.token_urlsafe(32))
    code = new_code()
    conn.execute(
        "UPDATE enrolment_codes SET expires_at = %s WHERE agent_id = %s AND redeemed_at IS NULL", (now, agent_id)
    )
    conn.execute(
        "INSERT INTO enrolment_codes (code_hash, agent_id, issued_by, issued_at, expires_at)"
        " VALUES (%s, %s, %s, %s, %s)",
        (_code_hash(secret, agent_id, code), agent_id, by.username, now, now + ttl),
    )
    log.info("agent %s enrolled by %s", agent_id, by.username)
    return Enrolment(agent_id=agent_id, code=code, expires_at=now + ttl)


def redeem_enrolment(
    conn: psycopg.Connection,
    *,
    agent_id: str,
    code: str,
    credentials: CredentialStore,
    secret: str,
    broker_url: str,
    topic_root: str,
    now: datetime | None = None,
) -> AgentCredentials:
    now = now or datetime.now(UTC)
    row = conn.execute(
        """UPDATE enrolment_codes SET redeemed_at = %s
           WHERE code_hash = %s AND agent_id = %s AND redeemed_at IS NULL AND expires_at > %s
           RETURNING agent_id""",
        (now, _code_hash(secret, agent_id, code), agent_id, now),
    ).fetchone()
    if row is None:
        raise AdminError("unknown, used or expired enrolment code")
    password = secrets.token_urlsafe(24)
    credentials.set_agent(agent_id=agent_id, password=password)
    return AgentCredentials(
        agent_id=agent_id, mqtt_username=agent_id, mqtt_password=password, broker_url=broker_url, topic_root=topic_root
    )


def add_municipality(conn: psycopg.Connection, *, name: str) -> None:
    conn.execute("INSERT INTO municipalities (name) VALUES (%s) ON CONFLICT DO NOTHING", (name.strip(),))


def add_department(conn: psycopg.Connection, *, name: str, hospital: str | None = None) -> None:
    conn.execute(
        "INSERT INTO departments (name, hospital) VALUES (%s, %s) ON CONFLICT (name) DO UPDATE"
        " SET hospital = EXCLUDED.hospital",
        (name.strip(), hospital),
    )


def places(conn: psycopg.Connection) -> dict[str, list[str]]:
    """Municipalities and departments: the registered ones plus any already in use."""
    mun = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM municipalities UNION SELECT municipality FROM patients"
            " UNION SELECT municipality FROM teams WHERE municipality IS NOT NULL ORDER BY 1"
        ).fetchall()
    ]
    dep = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM departments UNION SELECT department FROM patients WHERE department IS NOT NULL"
            " UNION SELECT department FROM teams WHERE department IS NOT NULL ORDER BY 1"
        ).fetchall()
    ]
    return {"municipalities": mun, "departments": dep}


def create_team(
    conn: psycopg.Connection,
    *,
    key: str,
    name: str,
    sector: str,
    municipality: str | None,
    department: str | None,
    phone: str | None = None,
) -> registry.Team:
    if sector == "municipal" and not municipality:
        raise AdminError("a municipal team needs a municipality")
    if sector == "hospital" and not department:
        raise AdminError("a hospital team needs a department")
    try:
        team = registry.create_team(
            conn,
            key=key,
            name=name,
            sector=sector,
            municipality=municipality or None,
            department=department or None,
            phone=phone or None,
        )
    except registry.RegistryError as exc:
        raise AdminError(str(exc)) from exc
    if municipality:
        add_municipality(conn, name=municipality)
    if department:
        add_department(conn, name=department)
    return team


def create_account(
    conn: psycopg.Connection,
    *,
    username: str,
    display_name: str,
    role: str,
    password: str,
    team_key: str | None = None,
    patient_ref: str | None = None,
    lang: str = "da",
) -> User:
    try:
        r = Role(role)
    except ValueError as exc:
        raise AdminError(f"unknown role {role!r}") from exc
    team_id = patient_id = None
    if r in (Role.NURSE, Role.SPECIALIST):
        if not team_key:
            raise AdminError("nurses and specialists belong to a team")
        try:
            team_id = registry.get_team_by_key(conn, key=team_key).id
        except registry.RegistryNotFound as exc:
            raise AdminError(str(exc)) from exc
    if r is Role.CITIZEN:
        if not patient_ref:
            raise AdminError("a citizen account is linked to the citizen's patient record")
        try:
            patient_id = registry.get_patient_by_ref(conn, external_ref=patient_ref).id
        except registry.RegistryNotFound as exc:
            raise AdminError(str(exc)) from exc
    try:
        with conn.transaction():
            return create_user(
                conn,
                username=username,
                display_name=display_name,
                role=r,
                password=password,
                team_id=team_id,
                patient_id=patient_id,
                lang=lang,
            )
    except psycopg.errors.UniqueViolation as exc:
        raise AdminError(f"user {username!r} exists") from exc
    except psycopg.errors.CheckViolation as exc:
        raise AdminError(f"invalid user: {exc.diag.message_primary}") from exc
    except BackendError as exc:
        raise AdminError(str(exc)) from exc


def overview(conn: psycopg.Connection) -> dict[str, Any]:
    """What the admin page lists. Names and places only: no readings, no alerts."""
    teams = conn.execute("SELECT key, name, sector, municipality, department, phone FROM teams ORDER BY key").fetchall()
    users = conn.execute(
        """SELECT u.username, u.display_name, u.role, t.key, p.external_ref, u.active
           FROM users u LEFT JOIN teams t ON t.id = u.team_id LEFT JOIN patients p ON p.id = u.patient_id
           ORDER BY u.role, u.username"""
    ).fetchall()
    agents = conn.execute(
        """SELECT a.id, p.external_ref, a.active, a.online, a.last_seen_at, a.version,
                  (SELECT count(*) FROM devices d WHERE d.agent_id = a.id)
           FROM agents a LEFT JOIN patients p ON p.id = a.patient_id ORDER BY a.id LIMIT 500"""
    ).fetchall()
    devices = conn.execute(
        "SELECT id, agent_id, address, model, manufacturer, battery_low FROM devices ORDER BY agent_id, id LIMIT 1000"
    ).fetchall()
    return {"teams": teams, "users": users, "agents": agents, "devices": devices, **places(conn)}
