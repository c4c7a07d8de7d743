"""Keyword-only service functions for teams, patients, agents, devices and user slots."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import class_row

from backend.registry.errors import RegistryConflict, RegistryNotFound
from backend.registry.snapshot import normalise_address

PROGRAMMES = ("copd", "heart_failure", "hypertension")
SECTORS = ("municipal", "hospital")


@dataclass(frozen=True, slots=True)
class Team:
    id: int
    key: str
    name: str
    sector: str
    municipality: str | None
    department: str | None
    phone: str | None


@dataclass(frozen=True, slots=True)
class Patient:
    id: int
    external_ref: str
    name: str
    birth_date: date | None
    programme: str
    municipality: str
    department: str | None
    active: bool


@dataclass(frozen=True, slots=True)
class Agent:
    id: str
    patient_id: int | None
    active: bool
    mqtt_username: str | None
    enrolled_at: datetime
    online: bool
    last_seen_at: datetime | None
    status_at: datetime | None
    version: str | None
    spool_depth: int | None
    spool_oldest_at: datetime | None


@dataclass(frozen=True, slots=True)
class Device:
    id: int
    agent_id: str
    address: str
    model: str | None
    manufacturer: str | None
    serial: str | None
    firmware: str | None
    battery_low: bool
    last_seen_at: datetime | None


_TEAM = "id, key, name, sector, municipality, department, phone"
_PATIENT = "id, external_ref, name, birth_date, programme, municipality, department, active"
_AGENT = (
    "id, patient_id, active, mqtt_username, enrolled_at, online, last_seen_at, status_at, version, "
    "spool_depth, spool_oldest_at"
)
_DEVICE = "id, agent_id, address, model, manufacturer, serial, firmware, battery_low, last_seen_at"


def _one(conn: psycopg.Connection, cls: type, sql: str, params: Any) -> Any:
    cur: psycopg.Cursor[Any]
    with conn.cursor(row_factory=class_row(cls)) as cur:
        cur.execute(sql, params)
        return cur.fetchone()


def _all(conn: psycopg.Connection, cls: type, sql: str, params: Any = None) -> list[Any]:
    cur: psycopg.Cursor[Any]
    with conn.cursor(row_factory=class_row(cls)) as cur:
        cur.execute(sql, params)
        return cur.fetchall()


# --- teams -------------------------------------------------------------------------------------


def create_team(
    conn: psycopg.Connection,
    /,
    *,
    key: str,
    name: str,
    sector: str,
    municipality: str | None = None,
    department: str | None = None,
    phone: str | None = None,
) -> Team:
    if sector not in SECTORS:
        raise RegistryConflict(f"sector must be one of {SECTORS}, got {sector!r}")
    try:
        with conn.transaction():
            team: Team = _one(
                conn,
                Team,
                f"INSERT INTO teams (key, name, sector, municipality, department, phone) "
                f"VALUES (%s, %s, %s, %s, %s, %s) RETURNING {_TEAM}",
                (key, name, sector, municipality, department, phone),
            )
    except pg_errors.UniqueViolation:
        raise RegistryConflict(f"a team with key {key!r} exists") from None
    return team


def get_team_by_key(conn: psycopg.Connection, /, *, key: str) -> Team:
    team: Team | None = _one(conn, Team, f"SELECT {_TEAM} FROM teams WHERE key = %s", (key,))
    if team is None:
        raise RegistryNotFound(f"no team {key!r}")
    return team


# --- patients ----------------------------------------------------------------------------------


def create_patient(
    conn: psycopg.Connection,
    /,
    *,
    external_ref: str,
    name: str,
    programme: str,
    municipality: str,
    department: str | None = None,
    birth_date: date | None = None,
) -> Patient:
    if programme not in PROGRAMMES:
        raise RegistryConflict(f"programme must be one of {PROGRAMMES}, got {programme!r}")
    try:
        with conn.transaction():
            patient: Patient = _one(
                conn,
                Patient,
                f"INSERT INTO patients (external_ref, name, birth_date, programme, municipality, department) "
                f"VALUES (%s, %s, %s, %s, %s, %s) RETURNING {_PATIENT}",
                (external_ref, name, birth_date, programme, municipality, department),
            )
    except pg_errors.UniqueViolation:
        raise RegistryConflict(f"a patient with reference {external_ref!r} exists") from None
    return patient


def get_patient(conn: psycopg.Connection, /, *, patient_id: int) -> Patient:
    patient: Patient | None = _one(conn, Patient, f"SELECT {_PATIENT} FROM patients WHERE id = %s", (patient_id,))
    if patient is None:
        raise RegistryNotFound(f"no patient {patient_id}")
    return patient


def get_patient_by_ref(conn: psycopg.Connection, /, *, external_ref: str) -> Patient:
    patient: Patient | None = _one(
        conn, Patient, f"SELECT {_PATIENT} FROM patients WHERE external_ref = %s", (external_ref,)
    )
    if patient is None:
        raise RegistryNotFound(f"no patient with reference {external_ref!r}")
    return patient


# --- agents ------------------------------------------------------------------------------------


def enrol_agent(
    conn: psycopg.Connection,
    /,
    *,
    agent_id: str,
    patient_id: int | None = None,
    mqtt_username: str | None = None,
) -> Agent:
    """Enrol a home's tablet or Pi. Its readings are accepted from the next ingest batch on."""
    try:
        with conn.transaction():
            agent: Agent = _one(
                conn,
                Agent,
                f"INSERT INTO agents (id, patient_id, mqtt_username) VALUES (%s, %s, %s) RETURNING {_AGENT}",
                (agent_id, patient_id, mqtt_username if mqtt_username is not None else agent_id),
            )
    except pg_errors.UniqueViolation:
        raise RegistryConflict(f"agent {agent_id!r} (or its MQTT username) is already enrolled") from None
    except pg_errors.CheckViolation:
        raise RegistryConflict(f"invalid agent id {agent_id!r}") from None
    except pg_errors.ForeignKeyViolation:
        raise RegistryNotFound(f"no patient {patient_id}") from None
    return agent


def bind_agent(conn: psycopg.Connection, /, *, agent_id: str, patient_id: int) -> Agent:
    """Make ``patient_id`` the citizen whose readings this agent sends (unless a user slot says
    otherwise). Takes effect for readings ingested after it commits."""
    try:
        with conn.transaction():
            agent: Agent | None = _one(
                conn,
                Agent,
                f"UPDATE agents SET patient_id = %s WHERE id = %s RETURNING {_AGENT}",
                (patient_id, agent_id),
            )
    except pg_errors.ForeignKeyViolation:
        raise RegistryNotFound(f"no patient {patient_id}") from None
    if agent is None:
        raise RegistryNotFound(f"no agent {agent_id!r}")
    return agent


def deactivate_agent(conn: psycopg.Connection, /, *, agent_id: str) -> Agent:
    """A lost or retired tablet: its readings go to the dead letters from then on."""
    with conn.transaction():
        agent: Agent | None = _one(
            conn, Agent, f"UPDATE agents SET active = false WHERE id = %s RETURNING {_AGENT}", (agent_id,)
        )
    if agent is None:
        raise RegistryNotFound(f"no agent {agent_id!r}")
    return agent


def get_agent(conn: psycopg.Connection, /, *, agent_id: str) -> Agent:
    agent: Agent | None = _one(conn, Agent, f"SELECT {_AGENT} FROM agents WHERE id = %s", (agent_id,))
    if agent is None:
        raise RegistryNotFound(f"no agent {agent_id!r}")
    return agent


def list_agents(conn: psycopg.Connection, /, *, patient_id: int | None = None) -> list[Agent]:
    if patient_id is None:
        return _all(conn, Agent, f"SELECT {_AGENT} FROM agents ORDER BY id")
    return _all(conn, Agent, f"SELECT {_AGENT} FROM agents WHERE patient_id = %s ORDER BY id", (patient_id,))


# --- devices and user slots --------------------------------------------------------------------


def register_device(
    conn: psycopg.Connection,
    /,
    *,
    agent_id: str,
    address: str,
    model: str | None = None,
    manufacturer: str | None = None,
    serial: str | None = None,
    firmware: str | None = None,
) -> Device:
    """Pair a device with an agent. Registering it again updates its details (and brings a removed
    device back)."""
    try:
        with conn.transaction():
            device: Device = _one(
                conn,
                Device,
                f"""INSERT INTO devices (agent_id, address, model, manufacturer, serial, firmware)
                    VALUES (%s, %s, %s, %s, %s, %s)
                    ON CONFLICT (agent_id, address) DO UPDATE SET
                        model = coalesce(EXCLUDED.model, devices.model),
                        manufacturer = coalesce(EXCLUDED.manufacturer, devices.manufacturer),
                        serial = coalesce(EXCLUDED.serial, devices.serial),
                        firmware = coalesce(EXCLUDED.firmware, devices.firmware),
                        removed_at = NULL
                    RETURNING {_DEVICE}""",
                (agent_id, normalise_address(address), model, manufacturer, serial, firmware),
            )
    except pg_errors.ForeignKeyViolation:
        raise RegistryNotFound(f"no agent {agent_id!r}") from None
    return device


def list_devices(conn: psycopg.Connection, /, *, agent_id: str) -> list[Device]:
    return _all(conn, Device, f"SELECT {_DEVICE} FROM devices WHERE agent_id = %s AND removed_at IS NULL ORDER BY id",
                (agent_id,))


def map_device_user(conn: psycopg.Connection, /, *, device_id: int, user_index: int, patient_id: int) -> None:
    """On a shared scale or cuff, user slot ``user_index`` is ``patient_id``. Once a device has
    any slot mapped, its readings from unmapped slots are held rather than guessed."""
    if not 0 <= user_index <= 255:
        raise RegistryConflict(f"user index must be 0–255, got {user_index}")
    try:
        with conn.transaction():
            conn.execute(
                """INSERT INTO device_users (device_id, user_index, patient_id) VALUES (%s, %s, %s)
                   ON CONFLICT (device_id, user_index) DO UPDATE SET patient_id = EXCLUDED.patient_id""",
                (device_id, user_index, patient_id),
            )
    except pg_errors.ForeignKeyViolation:
        raise RegistryNotFound(f"no device {device_id} or no patient {patient_id}") from None


def unmap_device_user(conn: psycopg.Connection, /, *, device_id: int, user_index: int) -> None:
    with conn.transaction():
        cur = conn.execute("DELETE FROM device_users WHERE device_id = %s AND user_index = %s", (device_id, user_index))
    if cur.rowcount == 0:
        raise RegistryNotFound(f"device {device_id} has no user slot {user_index}")


def list_device_users(conn: psycopg.Connection, /, *, device_id: int) -> dict[int, int]:
    """user_index -> patient_id."""
    rows = conn.execute(
        "SELECT user_index, patient_id FROM device_users WHERE device_id = %s ORDER BY user_index", (device_id,)
    ).fetchall()
    return {int(u): int(p) for u, p in rows}
