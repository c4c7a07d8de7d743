"""Users, sessions and API tokens in PostgreSQL.

Passwords are argon2 (argon2-cffi defaults). Session and API tokens are random and stored only
as an HMAC keyed with the app's secret, so a database dump neither logs anyone in nor works
against another installation.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from datetime import UTC, datetime, timedelta

import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from backend.accounts.model import (
    AuthError,
    PasswordChangeRequired,
    PasswordNotChanged,
    PendingApproval,
    RateLimited,
    Role,
    User,
    WeakPassword,
    WrongPassword,
)

log = logging.getLogger(__name__)

_hasher = PasswordHasher()
SESSION_TTL = timedelta(hours=12)
TOKEN_TTL = timedelta(minutes=30)
"""A bearer (access) token lives half an hour; a refresh token gets a new pair (issue 12: they
lived 30 days and could not be revoked)."""
REFRESH_TTL = timedelta(hours=12)
REFRESH_NAME = "refresh"
LOGIN_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_ADDR = 30
FREE_FAILURES = 3
"""Wrong passwords an account may have before each further try waits."""
MAX_DELAY = timedelta(minutes=5)
THROTTLE_FORGET = timedelta(days=1)
"""An account's throttle row quiet this long, with its delay passed, is pruned (on the next
failed login by anyone): the table stays bounded by the names tried within a day."""
MIN_PASSWORD = 12
"""ASVS 2.1.1: passwords of at least 12 characters (new and reset ones; existing hashes still work)."""
MAX_PASSWORD = 128


def login_delay(failures: int) -> timedelta:
    """Pure: the wait before the next try after ``failures`` wrong passwords in a row: none for
    the first :data:`FREE_FAILURES`, then 1, 2, 4 … seconds up to :data:`MAX_DELAY`. A delay, never
    a lock: the right password works once it has passed (issue 12: five wrong guesses by anyone
    locked a clinician out for 15 minutes)."""
    if failures < FREE_FAILURES:
        return timedelta(0)
    return min(MAX_DELAY, timedelta(seconds=2 ** min(failures - FREE_FAILURES, 20)))
# Verified against when the username is unknown, so a wrong username costs the same time.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(8))

_USER_SELECT = """
SELECT u.id, u.username, u.display_name, u.role, u.team_id, t.key, t.name, t.municipality,
       t.department, u.patient_id, u.lang
FROM users u LEFT JOIN teams t ON t.id = u.team_id
"""


def check_password(password: str) -> None:
    """Pure: WeakPassword unless ``password`` is long enough for a new or reset password."""
    if len(password) < MIN_PASSWORD:
        raise WeakPassword(MIN_PASSWORD)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _keyed(secret: str, token: str) -> str:
    return hmac.new(secret.encode(), token.encode(), hashlib.sha256).hexdigest()


def _user(row: tuple) -> User:
    return User(
        id=row[0],
        username=row[1],
        display_name=row[2],
        role=Role(row[3]),
        team_id=row[4],
        team_key=row[5],
        team_name=row[6],
        municipality=row[7],
        department=row[8],
        patient_id=row[9],
        lang=row[10],
    )


def create_user(
    conn: psycopg.Connection,
    *,
    username: str,
    display_name: str,
    role: Role | str,
    password: str | None,
    team_id: int | None = None,
    patient_id: int | None = None,
    lang: str = "da",
    created_by: int | None = None,
    approved: bool = True,
    must_change_password: bool = False,
) -> User:
    """A user. ``approved=False`` (every account an admin creates) cannot log in until a different
    admin approves it (``backend.admin.service.approve_user``); seeded accounts are created
    approved. ``must_change_password`` (a password an admin chose) is changed at the first login."""
    role = Role(role)
    if password is not None:
        check_password(password)
    row = conn.execute(
        """INSERT INTO users (username, display_name, role, team_id, patient_id, password_hash, lang,
                              created_by, approved_at, must_change_password)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, CASE WHEN %s THEN now() END, %s) RETURNING id""",
        (
            username.lower(),
            display_name,
            role.value,
            team_id,
            patient_id,
            hash_password(password) if password is not None else None,
            lang,
            created_by,
            approved,
            must_change_password,
        ),
    ).fetchone()
    assert row is not None
    user = get_user(conn, user_id=row[0])
    assert user is not None
    return user


def get_user(conn: psycopg.Connection, *, user_id: int) -> User | None:
    row = conn.execute(_USER_SELECT + " WHERE u.id = %s", (user_id,)).fetchone()
    return _user(row) if row else None


def set_password(conn: psycopg.Connection, *, user_id: int, password: str, must_change: bool = False) -> None:
    """A new password; ``must_change`` when an administrator chose it (changed at the next login)."""
    check_password(password)
    conn.execute("UPDATE users SET password_hash = %s, must_change_password = %s WHERE id = %s",
                 (hash_password(password), must_change, user_id))


def _check_rate(conn: psycopg.Connection, *, username: str, remote_addr: str | None, now: datetime) -> None:
    """The per-address limit (a window of failures), then the account's delay. The account's row
    in ``login_throttle`` is locked until the caller commits, so concurrent guesses at one account
    are counted one after the other (atomic: none slips past the delay)."""
    if remote_addr is not None:
        row = conn.execute(
            "SELECT count(*), min(at) FROM login_attempts WHERE at > %s AND NOT ok AND remote_addr = %s"
            " AND username NOT LIKE 'enrol:%%'",
            (now - LOGIN_WINDOW, remote_addr),
        ).fetchone()
        assert row is not None
        if row[0] >= MAX_FAILURES_PER_ADDR and row[1] is not None:
            raise RateLimited(max(1, int((row[1] + LOGIN_WINDOW - now).total_seconds())))
    row = conn.execute(
        "INSERT INTO login_throttle (username, failures, next_at, updated_at) VALUES (%s, 0, %s, %s)"
        " ON CONFLICT (username) DO UPDATE SET updated_at = login_throttle.updated_at RETURNING next_at",
        (username, now, now),
    ).fetchone()
    assert row is not None
    if row[0] > now:
        raise RateLimited(max(1, int((row[0] - now).total_seconds() + 0.999)))


def _count(conn: psycopg.Connection, *, username: str, ok: bool, now: datetime) -> int:
    """Count the attempt; the wrong tries left before the next one must wait."""
    if ok:
        conn.execute("UPDATE login_throttle SET failures = 0, next_at = %s, updated_at = %s WHERE username = %s",
                     (now, now, username))
        return FREE_FAILURES
    row = conn.execute(
        "UPDATE login_throttle SET failures = failures + 1, updated_at = %s WHERE username = %s RETURNING failures",
        (now, username),
    ).fetchone()
    assert row is not None
    conn.execute("UPDATE login_throttle SET next_at = %s WHERE username = %s",
                 (now + login_delay(int(row[0])), username))
    prune_throttle(conn, now=now)
    return max(0, FREE_FAILURES - int(row[0]))


def prune_throttle(conn: psycopg.Connection, *, now: datetime) -> int:
    """Forget throttle rows quiet for :data:`THROTTLE_FORGET` whose delay has passed (on every
    failed login: the table never grows past the names tried within a day). Rows another login
    holds are skipped, never waited for (no lock order to deadlock on)."""
    cur = conn.execute(
        "DELETE FROM login_throttle WHERE username IN (SELECT username FROM login_throttle"
        " WHERE updated_at < %s AND next_at <= %s FOR UPDATE SKIP LOCKED)",
        (now - THROTTLE_FORGET, now),
    )
    return cur.rowcount


def authenticate(
    conn: psycopg.Connection,
    *,
    username: str,
    password: str,
    remote_addr: str | None = None,
    now: datetime | None = None,
    changing: bool = False,
) -> User:
    """The user, or WrongPassword/RateLimited/PendingApproval/PasswordChangeRequired (all
    AuthError; the last unless ``changing``, see :func:`change_password`). Every attempt is
    recorded (and committed by the caller). An account awaiting a second admin's approval
    (four-eyes) is refused even with the right password, after the password is checked, so the
    refusal tells nothing to someone who does not know it."""
    now = now or datetime.now(UTC)
    username = username.strip().lower()[:64]
    _check_rate(conn, username=username, remote_addr=remote_addr, now=now)
    row = conn.execute(
        "SELECT id, password_hash, approved_at IS NOT NULL, must_change_password FROM users"
        " WHERE username = %s AND active", (username,),
    ).fetchone()
    stored = row[1] if row and row[1] else None
    ok = verify_password(stored or _DUMMY_HASH, password) and stored is not None
    conn.execute(
        "INSERT INTO login_attempts (at, username, remote_addr, ok) VALUES (%s, %s, %s, %s)",
        (now, username, remote_addr, ok),
    )
    tries_left = _count(conn, username=username, ok=ok and row is not None, now=now)
    if not ok or row is None:
        log.info("failed login for %r from %s", username, remote_addr)
        raise WrongPassword(tries_left)
    if not row[2]:
        log.info("login for %r refused: awaiting a second admin's approval", username)
        raise PendingApproval()
    if row[3] and not changing:
        raise PasswordChangeRequired()
    user = get_user(conn, user_id=row[0])
    assert user is not None
    return user


def change_password(
    conn: psycopg.Connection,
    *,
    username: str,
    password: str,
    new_password: str,
    remote_addr: str | None = None,
    now: datetime | None = None,
) -> User:
    """The user's own password in place of one an administrator set (or any change): the current
    password is checked as a login is (throttled, recorded), the new one must be long enough and
    differ from it. Returns the user, who may then have a session."""
    user = authenticate(conn, username=username, password=password, remote_addr=remote_addr, now=now, changing=True)
    check_password(new_password)
    if new_password == password:
        raise PasswordNotChanged()
    set_password(conn, user_id=user.id, password=new_password)
    log.info("password changed by %r", user.username)
    return user


def create_session(
    conn: psycopg.Connection,
    *,
    user: User,
    secret: str,
    remote_addr: str | None = None,
    now: datetime | None = None,
) -> tuple[str, str]:
    """(session token for the cookie, CSRF token for the forms)."""
    now = now or datetime.now(UTC)
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    conn.execute(
        """INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at, remote_addr)
           VALUES (%s, %s, %s, %s, %s, %s)""",
        (_keyed(secret, token), user.id, csrf, now, now + SESSION_TTL, remote_addr),
    )
    return token, csrf


def session_user(conn: psycopg.Connection, *, token: str, secret: str) -> tuple[User, str] | None:
    """(user, csrf token) for a live session, else None."""
    row = conn.execute(
        """SELECT s.user_id, s.csrf_token FROM sessions s JOIN users u ON u.id = s.user_id
           WHERE s.token_hash = %s AND s.expires_at > now() AND u.active AND u.approved_at IS NOT NULL""",
        (_keyed(secret, token),),
    ).fetchone()
    if row is None:
        return None
    user = get_user(conn, user_id=row[0])
    return (user, row[1]) if user else None


def delete_session(conn: psycopg.Connection, *, token: str, secret: str) -> None:
    conn.execute("DELETE FROM sessions WHERE token_hash = %s", (_keyed(secret, token),))


def create_api_token(
    conn: psycopg.Connection, *, user: User, secret: str, name: str = "api", ttl: timedelta = TOKEN_TTL
) -> tuple[str, datetime]:
    token = "nc_" + secrets.token_urlsafe(32)
    expires = datetime.now(UTC) + ttl
    conn.execute(
        "INSERT INTO api_tokens (token_hash, user_id, name, expires_at) VALUES (%s, %s, %s, %s)",
        (_keyed(secret, token), user.id, name[:64], expires),
    )
    return token, expires


def token_user(conn: psycopg.Connection, *, token: str, secret: str) -> User | None:
    """The user of a live access token (a refresh token is not one)."""
    row = conn.execute(
        """SELECT t.user_id FROM api_tokens t JOIN users u ON u.id = t.user_id
           WHERE t.token_hash = %s AND t.expires_at > now() AND t.revoked_at IS NULL AND u.active
               AND u.approved_at IS NOT NULL
             AND t.name <> %s""",
        (_keyed(secret, token), REFRESH_NAME),
    ).fetchone()
    return get_user(conn, user_id=row[0]) if row else None


def create_refresh_token(conn: psycopg.Connection, *, user: User, secret: str) -> tuple[str, datetime]:
    return create_api_token(conn, user=user, secret=secret, name=REFRESH_NAME, ttl=REFRESH_TTL)


def refresh(conn: psycopg.Connection, *, refresh_token: str, secret: str) -> User:
    """Spend a refresh token (once: it is revoked here) for its user; AuthError if it is not live."""
    row = conn.execute(
        """UPDATE api_tokens t SET revoked_at = now() FROM users u
           WHERE t.token_hash = %s AND t.name = %s AND t.expires_at > now() AND t.revoked_at IS NULL
             AND u.id = t.user_id AND u.active AND u.approved_at IS NOT NULL RETURNING t.user_id""",
        (_keyed(secret, refresh_token), REFRESH_NAME),
    ).fetchone()
    user = get_user(conn, user_id=row[0]) if row else None
    if user is None:
        raise AuthError("invalid, used or expired refresh token")
    return user


def revoke_token(conn: psycopg.Connection, *, token: str, secret: str) -> bool:
    """Revoke an access or refresh token at once; True if it was live."""
    row = conn.execute(
        "UPDATE api_tokens SET revoked_at = now() WHERE token_hash = %s AND revoked_at IS NULL RETURNING 1",
        (_keyed(secret, token),),
    ).fetchone()
    return row is not None
