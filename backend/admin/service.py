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
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from backend import audit, registry
from backend.accounts.model import Role, User, WeakPassword
from backend.accounts.store import create_user, set_password
from backend.admin.credentials import CredentialStore
from backend.admin.devices import known_model, mac_address
from backend.admin.errors import N_, AdminConflict, AdminError, AdminForbidden, AdminNotFound
from backend.errors import BackendError

log = logging.getLogger(__name__)
CODE_TTL = timedelta(hours=72)
# No 0/O/1/I/L: the code is read aloud and typed on a tablet by an installer.
_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"


# ---- accountability: every admin action with before and after (issue 12) ----------------------


def record_admin(
    conn: psycopg.Connection,
    *,
    by: User,
    action: str,
    user_id: int | None = None,
    patient_id: int | None = None,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    remote_addr: str | None = None,
) -> None:
    """One ``admin_audit`` row, in the action's own transaction, and a log line."""
    conn.execute(
        "INSERT INTO admin_audit (actor, action, user_id, patient_id, before, after, remote_addr)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (f"{by.username} ({by.display_name})", action, user_id, patient_id,
         Jsonb(dict(before)) if before is not None else None, Jsonb(dict(after)) if after is not None else None,
         remote_addr),
    )
    log.info("admin %s: %s (user %s, patient %s)", by.username, action, user_id, patient_id)


def user_state(conn: psycopg.Connection, *, user_id: int) -> dict[str, Any] | None:
    """What an admin can change about a user, as audited (never a password hash)."""
    row = conn.execute(
        "SELECT u.username, u.display_name, u.role, t.key, u.patient_id, u.lang, u.active,"
        " u.approved_at IS NOT NULL, ab.username FROM users u"
        " LEFT JOIN teams t ON t.id = u.team_id LEFT JOIN users ab ON ab.id = u.approved_by WHERE u.id = %s",
        (user_id,),
    ).fetchone()
    if row is None:
        return None
    keys = ("username", "display_name", "role", "team", "patient_id", "lang", "active", "approved", "approved_by")
    return dict(zip(keys, row, strict=True))


def _tell_the_citizen(conn: psycopg.Connection, *, by: User, patient_id: int, action: str, detail: str) -> None:
    """A row in the citizen's Min Log for an admin action that gives someone access to their data."""
    audit.record(conn, actor=by, patient_id=patient_id, action=action, detail=detail)


def _user_id(conn: psycopg.Connection, username: str) -> int:
    row = conn.execute("SELECT id FROM users WHERE username = %s", (username.strip().lower(),)).fetchone()
    if row is None:
        raise AdminNotFound(f"no user {username!r}", key=N_("admin_no_user"), username=username)
    return int(row[0])


def patient_id_by_ref(conn: psycopg.Connection, patient_ref: str) -> int:
    """The citizen's patient id by their reference, or AdminNotFound in words."""
    try:
        return registry.get_patient_by_ref(conn, external_ref=patient_ref).id
    except registry.RegistryNotFound as exc:
        raise AdminNotFound(str(exc), key=N_("admin_no_patient_ref"), ref=patient_ref) from exc


def bind_agent(
    conn: psycopg.Connection, *, agent_id: str, patient_ref: str, by: User, remote_addr: str | None = None
) -> registry.Agent:
    """Bind a gateway to a citizen: audited with before and after, and in the citizen's Min Log."""
    try:
        before = registry.get_agent(conn, agent_id=agent_id)
    except registry.RegistryNotFound as exc:
        raise AdminNotFound(str(exc), key=N_("admin_no_agent"), agent=agent_id) from exc
    pid = patient_id_by_ref(conn, patient_ref)
    agent = registry.bind_agent(conn, agent_id=agent_id, patient_id=pid)
    record_admin(conn, by=by, action="agent bound", patient_id=pid,
                 before={"agent_id": agent_id, "patient_id": before.patient_id},
                 after={"agent_id": agent_id, "patient_id": agent.patient_id}, remote_addr=remote_addr)
    _tell_the_citizen(conn, by=by, patient_id=pid, action="account changed",
                      detail=f"måleudstyr {agent_id} tilknyttet dine data af admin {by.display_name}")
    return agent


def approve_user(
    conn: psycopg.Connection, *, username: str, by: User, remote_addr: str | None = None
) -> dict[str, Any]:
    """The second admin's approval of an account another admin created (four-eyes): until then it
    cannot log in. The creator cannot approve their own account, nor can anyone approve their own."""
    uid = _user_id(conn, username)
    row = conn.execute("SELECT created_by, approved_at FROM users WHERE id = %s FOR UPDATE", (uid,)).fetchone()
    assert row is not None
    if row[1] is not None:
        raise AdminConflict(f"user {username!r} is already approved", key=N_("admin_already_approved"),
                            username=username)
    if by.id in (row[0], uid):
        raise AdminForbidden("an account needs the approval of a different admin than the one who created it",
                         key=N_("admin_approve_own"))
    before = user_state(conn, user_id=uid)
    conn.execute("UPDATE users SET approved_at = now(), approved_by = %s WHERE id = %s", (by.id, uid))
    after = user_state(conn, user_id=uid)
    assert after is not None
    record_admin(conn, by=by, action="user approved", user_id=uid, patient_id=after["patient_id"],
                 before=before, after=after, remote_addr=remote_addr)
    if after["patient_id"] is not None:
        _tell_the_citizen(conn, by=by, patient_id=after["patient_id"], action="account approved",
                          detail=f"konto med adgang til dine data godkendt af admin {by.display_name}: "
                          f"{after['username']} ({after['display_name']})")
    return after


def awaiting_approval(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Accounts created by an admin and not yet approved by another, oldest first."""
    rows = conn.execute(
        """SELECT u.username, u.display_name, u.role, t.key, p.external_ref, c.username, u.created_at
           FROM users u LEFT JOIN teams t ON t.id = u.team_id LEFT JOIN patients p ON p.id = u.patient_id
           LEFT JOIN users c ON c.id = u.created_by
           WHERE u.approved_at IS NULL AND u.active ORDER BY u.created_at, u.id LIMIT 500"""
    ).fetchall()
    keys = ("username", "display_name", "role", "team", "patient_ref", "created_by", "created_at")
    return [dict(zip(keys, r, strict=True)) for r in rows]


def set_user_active(
    conn: psycopg.Connection, *, username: str, active: bool, by: User, remote_addr: str | None = None
) -> dict[str, Any]:
    """Deactivate (or reactivate) a user: a deactivated user cannot log in, and their sessions
    and tokens end at once. No user is ever deleted, so the audit keeps its subject."""
    uid = _user_id(conn, username)
    if uid == by.id and not active:
        raise AdminForbidden("an admin cannot deactivate their own account", key=N_("admin_deactivate_self"))
    before = user_state(conn, user_id=uid)
    conn.execute("UPDATE users SET active = %s WHERE id = %s", (active, uid))
    if not active:
        conn.execute("DELETE FROM sessions WHERE user_id = %s", (uid,))
        conn.execute("UPDATE api_tokens SET revoked_at = now() WHERE user_id = %s AND revoked_at IS NULL", (uid,))
    after = user_state(conn, user_id=uid)
    assert after is not None
    record_admin(conn, by=by, action="user activated" if active else "user deactivated", user_id=uid,
                 patient_id=after["patient_id"], before=before, after=after, remote_addr=remote_addr)
    return after


def reset_password(
    conn: psycopg.Connection, *, username: str, password: str, by: User, remote_addr: str | None = None
) -> None:
    """A new password for a user, to be changed at their next login (ASVS 2.3.1); their sessions
    and tokens end; the password is never audited."""
    uid = _user_id(conn, username)
    try:
        set_password(conn, user_id=uid, password=password, must_change=True)
    except WeakPassword as exc:
        raise AdminError(str(exc), key=N_("password_too_short"), n=exc.minimum) from exc
    conn.execute("DELETE FROM sessions WHERE user_id = %s", (uid,))
    conn.execute("UPDATE api_tokens SET revoked_at = now() WHERE user_id = %s AND revoked_at IS NULL", (uid,))
    conn.execute("DELETE FROM login_throttle WHERE username = %s", (username.strip().lower(),))
    state = user_state(conn, user_id=uid)
    assert state is not None
    record_admin(conn, by=by, action="password reset", user_id=uid, patient_id=state["patient_id"],
                 before={"password": "(previous)"}, after={"password": "(reset; sessions and tokens ended)"},
                 remote_addr=remote_addr)
    if state["patient_id"] is not None:
        _tell_the_citizen(conn, by=by, patient_id=state["patient_id"], action="account changed",
                          detail=f"adgangskode nulstillet af admin {by.display_name} for kontoen {state['username']}")


def unlock_login(conn: psycopg.Connection, *, username: str, by: User, remote_addr: str | None = None) -> None:
    """Clear an account's login delay."""
    uid = _user_id(conn, username)
    row = conn.execute("DELETE FROM login_throttle WHERE username = %s RETURNING failures",
                       (username.strip().lower(),)).fetchone()
    record_admin(conn, by=by, action="login unlocked", user_id=uid, before={"failures": row[0] if row else 0},
                 after={"failures": 0}, remote_addr=remote_addr)


def admin_audit(conn: psycopg.Connection, *, limit: int = 200, offset: int = 0) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT id, at, actor, action, user_id, patient_id, before, after FROM admin_audit"
        " ORDER BY at DESC, id DESC LIMIT %s OFFSET %s", (max(1, min(limit, 1000)), max(0, offset)),
    ).fetchall()
    keys = ("id", "at", "actor", "action", "user_id", "patient_id", "before", "after")
    return [dict(zip(keys, r, strict=True)) for r in rows]


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
    remote_addr: str | None = None,
) -> Enrolment:
    now = now or datetime.now(UTC)
    try:
        existing = registry.get_agent(conn, agent_id=agent_id)
    except registry.RegistryNotFound:
        existing = None
    if existing is None:
        try:
            registry.enrol_agent(conn, agent_id=agent_id, patient_id=patient_id, mqtt_username=agent_id)
        except registry.RegistryConflict as exc:
            raise AdminConflict(str(exc)) from exc
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
    record_admin(
        conn, by=by, action="agent enrolled", patient_id=patient_id,
        before={"agent_id": agent_id, "patient_id": existing.patient_id} if existing is not None else None,
        after={"agent_id": agent_id, "patient_id": patient_id if patient_id is not None else (
            existing.patient_id if existing is not None else None), "code_expires_at": (now + ttl).isoformat()},
        remote_addr=remote_addr,
    )
    if patient_id is not None:
        _tell_the_citizen(conn, by=by, patient_id=patient_id, action="account changed",
                          detail=f"måleudstyr {agent_id} tilknyttet dine data af admin {by.display_name}")
    return Enrolment(agent_id=agent_id, code=code, expires_at=now + ttl)


REDEEM_WINDOW = timedelta(minutes=15)
MAX_REDEEM_FAILURES_PER_AGENT = 5
MAX_REDEEM_FAILURES_PER_ADDR = 20


class RedeemRateLimited(AdminError):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"too many wrong enrolment codes; try again in {retry_after_s} s")
        self.retry_after_s = retry_after_s


def check_redeem_rate(conn: psycopg.Connection, *, agent_id: str, remote_addr: str | None,
                      now: datetime | None = None) -> None:
    """Wrong codes per agent and per address in the last 15 minutes (issue 12: redeems were not
    rate-limited); counted in ``login_attempts`` under ``enrol:<agent>``."""
    now = now or datetime.now(UTC)
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE username = %(u)s), min(at) FILTER (WHERE username = %(u)s),"
        " count(*) FILTER (WHERE remote_addr = %(a)s), min(at) FILTER (WHERE remote_addr = %(a)s)"
        " FROM login_attempts WHERE at > %(since)s AND NOT ok AND username LIKE 'enrol:%%'"
        " AND (username = %(u)s OR remote_addr = %(a)s)",
        {"u": f"enrol:{agent_id}", "a": remote_addr, "since": now - REDEEM_WINDOW},
    ).fetchone()
    assert row is not None
    for count, oldest, limit in ((row[0], row[1], MAX_REDEEM_FAILURES_PER_AGENT),
                                 (row[2], row[3], MAX_REDEEM_FAILURES_PER_ADDR)):
        if count >= limit and oldest is not None:
            raise RedeemRateLimited(max(1, int((oldest + REDEEM_WINDOW - now).total_seconds())))


def record_redeem(conn: psycopg.Connection, *, agent_id: str, remote_addr: str | None, ok: bool,
                  reason: str | None = None) -> None:
    """Every redeem, good or bad, in ``login_attempts`` (the limit) and ``admin_audit`` (the record)."""
    conn.execute("INSERT INTO login_attempts (username, remote_addr, ok) VALUES (%s, %s, %s)",
                 (f"enrol:{agent_id}", remote_addr, ok))
    conn.execute(
        "INSERT INTO admin_audit (actor, action, after, remote_addr) VALUES (%s, %s, %s, %s)",
        (f"tablet {remote_addr or '?'}", "enrolment redeemed" if ok else "enrolment refused",
         Jsonb({"agent_id": agent_id, **({"reason": reason} if reason else {})}), remote_addr),
    )
    log.info("enrolment redeem for %s from %s: %s", agent_id, remote_addr, "ok" if ok else reason)


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
        raise AdminForbidden("unknown, used or expired enrolment code")
    password = secrets.token_urlsafe(24)
    credentials.set_agent(agent_id=agent_id, password=password)
    return AgentCredentials(
        agent_id=agent_id, mqtt_username=agent_id, mqtt_password=password, broker_url=broker_url, topic_root=topic_root
    )


# ---- devices (issue 13: validated, listed, edited and removed; never deleted) ------------------


def _device_state(conn: psycopg.Connection, device_id: int) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT agent_id, address, model, manufacturer, serial, removed_at IS NOT NULL FROM devices WHERE id = %s",
        (device_id,),
    ).fetchone()
    if row is None:
        return None
    return dict(zip(("agent_id", "address", "model", "manufacturer", "serial", "removed"), row, strict=True))


def register_device(
    conn: psycopg.Connection,
    *,
    agent_id: str,
    address: str,
    model: str,
    serial: str | None = None,
    by: User,
    remote_addr: str | None = None,
) -> registry.Device:
    """A device on a gateway: a Bluetooth address ``AA:BB:CC:DD:EE:FF`` and a known model (its
    manufacturer follows from the model). Registering a removed one again brings it back."""
    mac = mac_address(address)
    known = known_model(model)
    existing = conn.execute("SELECT id FROM devices WHERE agent_id = %s AND address = %s",
                            (agent_id, mac)).fetchone()
    before = _device_state(conn, int(existing[0])) if existing else None
    try:
        device = registry.register_device(conn, agent_id=agent_id, address=mac, model=known.model,
                                          manufacturer=known.manufacturer, serial=serial or None)
    except registry.RegistryNotFound as exc:
        raise AdminNotFound(str(exc), key=N_("admin_no_agent"), agent=agent_id) from exc
    record_admin(conn, by=by, action="device registered", before=before, after=_device_state(conn, device.id),
                 remote_addr=remote_addr)
    return device


def _device_id(conn: psycopg.Connection, device_id: int) -> dict[str, Any]:
    state = _device_state(conn, device_id)
    if state is None:
        raise AdminNotFound(f"no device {device_id}", key=N_("device_unknown"), id=device_id)
    return state


def update_device(
    conn: psycopg.Connection,
    *,
    device_id: int,
    address: str,
    model: str,
    serial: str | None = None,
    by: User,
    remote_addr: str | None = None,
) -> dict[str, Any]:
    """Correct a device's address, model or serial number (audited with before and after)."""
    before = _device_id(conn, device_id)
    mac = mac_address(address)
    known = known_model(model)
    try:
        with conn.transaction():
            conn.execute(
                "UPDATE devices SET address = %s, model = %s, manufacturer = %s, serial = %s WHERE id = %s",
                (mac, known.model, known.manufacturer, serial or None, device_id),
            )
    except psycopg.errors.UniqueViolation as exc:
        raise AdminConflict(f"gateway {before['agent_id']} already has a device {mac}", key=N_("device_exists"),
                         address=mac) from exc
    after = _device_state(conn, device_id)
    assert after is not None
    record_admin(conn, by=by, action="device changed", before=before, after=after, remote_addr=remote_addr)
    return after


def remove_device(
    conn: psycopg.Connection, *, device_id: int, by: User, remote_addr: str | None = None
) -> dict[str, Any]:
    """Take a device off its gateway: its readings stay with it, new ones are held as from an
    unknown device. Never deleted (audited with before and after)."""
    before = _device_id(conn, device_id)
    if before["removed"]:
        raise AdminConflict(f"device {device_id} is already removed", key=N_("device_already_removed"))
    conn.execute("UPDATE devices SET removed_at = now() WHERE id = %s", (device_id,))
    after = _device_state(conn, device_id)
    assert after is not None
    record_admin(conn, by=by, action="device removed", before=before, after=after, remote_addr=remote_addr)
    return after


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
    by: User | None = None,
    remote_addr: str | None = None,
) -> registry.Team:
    if sector == "municipal" and not municipality:
        raise AdminError("a municipal team needs a municipality", key=N_("admin_team_needs_municipality"))
    if sector == "hospital" and not department:
        raise AdminError("a hospital team needs a department", key=N_("admin_team_needs_department"))
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
    except registry.RegistryConflict as exc:
        raise AdminConflict(str(exc), key=N_("admin_team_exists"), team=key) from exc
    except registry.RegistryError as exc:
        raise AdminError(str(exc)) from exc
    if municipality:
        add_municipality(conn, name=municipality)
    if department:
        add_department(conn, name=department)
    if by is not None:
        record_admin(conn, by=by, action="team created", after={
            "key": key, "name": name, "sector": sector, "municipality": municipality, "department": department,
            "phone": phone}, remote_addr=remote_addr)
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
    by: User | None = None,
    remote_addr: str | None = None,
) -> User:
    """A new account. With ``by`` (every admin route passes it) the creation is audited with the
    account as created, the account cannot log in until a different admin approves it
    (:func:`approve_user`, four-eyes), and an account linked to a citizen shows in that citizen's
    Min Log ("konto oprettet med adgang til dine data af admin X")."""
    try:
        r = Role(role)
    except ValueError as exc:
        raise AdminError(f"unknown role {role!r}", key=N_("admin_unknown_role"), role=role) from exc
    team_id = patient_id = None
    if r in (Role.NURSE, Role.SPECIALIST):
        if not team_key:
            raise AdminError("nurses and specialists belong to a team", key=N_("admin_needs_team"))
        try:
            team_id = registry.get_team_by_key(conn, key=team_key).id
        except registry.RegistryNotFound as exc:
            raise AdminNotFound(str(exc), key=N_("admin_no_team"), team=team_key) from exc
    if r is Role.CITIZEN:
        if not patient_ref:
            raise AdminError("a citizen account is linked to the citizen's patient record",
                             key=N_("admin_needs_patient"))
        patient_id = patient_id_by_ref(conn, patient_ref)
    try:
        with conn.transaction():
            user = create_user(
                conn,
                username=username,
                display_name=display_name,
                role=r,
                password=password,
                team_id=team_id,
                patient_id=patient_id,
                lang=lang,
                created_by=by.id if by is not None else None,
                approved=by is None,
                must_change_password=by is not None,
            )
            if by is not None:
                record_admin(conn, by=by, action="user created", user_id=user.id, patient_id=patient_id,
                             after=user_state(conn, user_id=user.id), remote_addr=remote_addr)
                if patient_id is not None:
                    _tell_the_citizen(
                        conn, by=by, patient_id=patient_id, action="account created",
                        detail=f"konto oprettet med adgang til dine data af admin {by.display_name}: "
                        f"{user.username} ({user.display_name})",
                    )
            return user
    except psycopg.errors.UniqueViolation as exc:
        raise AdminConflict(f"user {username!r} exists", key=N_("admin_user_exists"), username=username) from exc
    except psycopg.errors.CheckViolation as exc:
        raise AdminError(f"invalid user: {exc.diag.message_primary}") from exc
    except WeakPassword as exc:
        raise AdminError(str(exc), key=N_("password_too_short"), n=exc.minimum) from exc
    except BackendError as exc:
        raise AdminError(str(exc)) from exc


def overview(conn: psycopg.Connection) -> dict[str, Any]:
    """What the admin page lists. Names and places only: no readings, no alerts."""
    teams = conn.execute("SELECT key, name, sector, municipality, department, phone FROM teams ORDER BY key").fetchall()
    user_keys = ("username", "display_name", "role", "team", "patient_ref", "active", "approved", "created_by",
                 "failures", "delayed")
    users = [dict(zip(user_keys, r, strict=True)) for r in conn.execute(
        """SELECT u.username, u.display_name, u.role, t.key, p.external_ref, u.active, u.approved_at IS NOT NULL,
                  u.created_by, coalesce(lt.failures, 0), coalesce(lt.next_at > now(), false)
           FROM users u LEFT JOIN teams t ON t.id = u.team_id LEFT JOIN patients p ON p.id = u.patient_id
           LEFT JOIN login_throttle lt ON lt.username = u.username
           ORDER BY u.role, u.username"""
    ).fetchall()]
    # "Seneste måling" is when the gateway's newest reading arrived (its devices' last reading);
    # "seneste kontakt" is its last message of any kind (a status heartbeat counts).
    agent_keys = ("id", "patient_ref", "active", "online", "last_contact_at", "version", "devices", "last_reading_at")
    agents = [dict(zip(agent_keys, r, strict=True)) for r in conn.execute(
        """SELECT a.id, p.external_ref, a.active, a.online, greatest(a.last_seen_at, a.status_at), a.version,
                  (SELECT count(*) FROM devices d WHERE d.agent_id = a.id AND d.removed_at IS NULL),
                  (SELECT max(d.last_seen_at) FROM devices d WHERE d.agent_id = a.id)
           FROM agents a LEFT JOIN patients p ON p.id = a.patient_id ORDER BY a.id LIMIT 500"""
    ).fetchall()]
    devices = conn.execute(
        "SELECT id, agent_id, address, model, manufacturer, battery_low, serial, last_seen_at FROM devices"
        " WHERE removed_at IS NULL ORDER BY agent_id, id LIMIT 1000"
    ).fetchall()
    return {"teams": teams, "users": users, "agents": agents, "devices": devices,
            "awaiting": awaiting_approval(conn), **places(conn)}
