"""Accounts: argon2 hashing, login with rate limiting, sessions, API tokens, scoping rules,
demo accounts only in demo mode."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from backend.accounts import (
    AuthError,
    RateLimited,
    Role,
    User,
    authenticate,
    can_read_patient,
    create_api_token,
    create_session,
    create_user,
    delete_session,
    hash_password,
    scope_clause,
    session_user,
    token_user,
    verify_password,
)
from backend.accounts.model import (
    PasswordChangeRequired,
    PasswordNotChanged,
    PendingApproval,
    WeakPassword,
    WrongPassword,
)
from backend.accounts.store import (
    FREE_FAILURES,
    MIN_PASSWORD,
    THROTTLE_FORGET,
    change_password,
    prune_throttle,
    set_password,
)
from backend.errors import ConfigError

SECRET = "test-secret-" + "x" * 20


def _user(db: Any, role: str = "admin", **kw: Any) -> tuple[User, str]:
    name = f"u{secrets.token_hex(4)}"
    return create_user(db, username=name, display_name="Test", role=role, password="pass-word-12", **kw), name


def test_password_hash_is_argon2_and_verifies() -> None:
    h = hash_password("correct horse")
    assert h.startswith("$argon2id$")
    assert verify_password(h, "correct horse")
    assert not verify_password(h, "wrong horse")
    assert not verify_password("not-a-hash", "correct horse")


def test_short_password_is_refused(db: Any) -> None:
    with pytest.raises(AuthError):
        create_user(db, username=f"s{secrets.token_hex(3)}", display_name="S", role="admin", password="short")


def test_passwords_under_twelve_characters_are_refused_with_the_minimum(db: Any) -> None:
    # ASVS 2.1.1: at least 12 characters for a new or reset password.
    with pytest.raises(WeakPassword) as exc:
        create_user(db, username=f"s{secrets.token_hex(3)}", display_name="S", role="admin", password="elevenchars")
    assert exc.value.minimum == MIN_PASSWORD == 12
    user, name = _user(db)
    with pytest.raises(WeakPassword):
        set_password(db, user_id=user.id, password="x" * 11)
    set_password(db, user_id=user.id, password="x" * 12)
    assert authenticate(db, username=name, password="x" * 12).id == user.id


def test_wrong_passwords_tell_how_many_tries_are_left_before_the_delay(db: Any) -> None:
    # Issue 13: the lockout warns before it locks; an unknown name gets the same count.
    _, name = _user(db)
    t0 = datetime.now(UTC)
    for who in (name, "nobody-" + name):
        left = []
        for i in range(FREE_FAILURES):
            with pytest.raises(WrongPassword) as exc:
                authenticate(db, username=who, password="bad-guess", now=t0 + timedelta(seconds=i))
            left.append(exc.value.tries_left)
        assert left == [2, 1, 0]


def test_an_account_awaiting_approval_cannot_log_in_until_approved(db: Any) -> None:
    creator, _ = _user(db)
    user = create_user(db, username=f"p{secrets.token_hex(4)}", display_name="P", role="admin",
                       password="pass-word-12", created_by=creator.id, approved=False)
    with pytest.raises(WrongPassword):  # a wrong password says nothing about the approval
        authenticate(db, username=user.username, password="bad-guess-12")
    with pytest.raises(PendingApproval):
        authenticate(db, username=user.username, password="pass-word-12")
    token, _ = create_session(db, user=user, secret=SECRET)  # not reachable by login; refused anyway
    assert session_user(db, token=token, secret=SECRET) is None
    import psycopg

    with pytest.raises(psycopg.errors.CheckViolation), db.transaction():  # four-eyes in the schema too
        db.execute("UPDATE users SET approved_at = now(), approved_by = created_by WHERE id = %s", (user.id,))
    db.execute("UPDATE users SET approved_at = now(), approved_by = %s WHERE id = %s", (_user(db)[0].id, user.id))
    assert authenticate(db, username=user.username, password="pass-word-12").id == user.id


def test_a_password_an_admin_set_is_changed_before_the_first_login(db: Any) -> None:
    # ASVS 2.3.1: not the long-term password.
    user = create_user(db, username=f"m{secrets.token_hex(4)}", display_name="M", role="admin",
                       password="admin-set-pass", must_change_password=True)
    with pytest.raises(PasswordChangeRequired):
        authenticate(db, username=user.username, password="admin-set-pass")
    with pytest.raises(WrongPassword):
        change_password(db, username=user.username, password="not-the-one-1", new_password="my-own-pass-1")
    with pytest.raises(WeakPassword):
        change_password(db, username=user.username, password="admin-set-pass", new_password="short")
    with pytest.raises(PasswordNotChanged):
        change_password(db, username=user.username, password="admin-set-pass", new_password="admin-set-pass")
    assert change_password(db, username=user.username, password="admin-set-pass",
                           new_password="my-own-pass-1").id == user.id
    assert authenticate(db, username=user.username, password="my-own-pass-1").id == user.id
    with pytest.raises(WrongPassword):
        authenticate(db, username=user.username, password="admin-set-pass")


def test_the_throttle_table_is_pruned_of_rows_quiet_for_a_day(db: Any) -> None:
    # Every name ever tried left a row in login_throttle for good.
    t0 = datetime.now(UTC)
    stale = [f"stale-{secrets.token_hex(4)}" for _ in range(3)]
    for who in stale:
        with pytest.raises(WrongPassword):
            authenticate(db, username=who, password="bad-guess", now=t0 - THROTTLE_FORGET - timedelta(hours=1))
    delayed = f"delayed-{secrets.token_hex(4)}"  # quiet for a day but its delay still runs: kept
    db.execute("INSERT INTO login_throttle (username, failures, next_at, updated_at) VALUES (%s, 9, %s, %s)",
               (delayed, t0 + timedelta(minutes=5), t0 - THROTTLE_FORGET - timedelta(hours=1)))
    recent = f"recent-{secrets.token_hex(4)}"
    with pytest.raises(WrongPassword):
        authenticate(db, username=recent, password="bad-guess", now=t0 - timedelta(hours=1))
    with pytest.raises(WrongPassword):  # any failed login prunes
        authenticate(db, username=f"other-{secrets.token_hex(4)}", password="bad-guess", now=t0)
    left = {r[0] for r in db.execute("SELECT username FROM login_throttle WHERE username = ANY(%s)",
                                     ([*stale, delayed, recent],)).fetchall()}
    assert left == {delayed, recent}
    assert prune_throttle(db, now=t0) == 0


def test_authenticate_ok_wrong_and_unknown(db: Any) -> None:
    user, name = _user(db)
    assert authenticate(db, username=name.upper(), password="pass-word-12").id == user.id
    with pytest.raises(AuthError):
        authenticate(db, username=name, password="nope-nope")
    with pytest.raises(AuthError):
        authenticate(db, username="nobody-" + name, password="pass-word-12")
    rows = db.execute("SELECT ok FROM login_attempts WHERE username = %s ORDER BY id", (name,)).fetchall()
    assert [r[0] for r in rows] == [True, False]


def test_wrong_passwords_delay_the_account_and_the_right_one_works_after_the_delay(db: Any) -> None:
    # Issue 12: a delay per account (3 free tries, then 1, 2, 4 … s), never a hard lock.
    _, name = _user(db)
    t0 = datetime.now(UTC)
    for i in range(3):
        with pytest.raises(AuthError):
            authenticate(db, username=name, password="bad-guess", now=t0 + timedelta(seconds=i), remote_addr="10.0.0.9")
    t1 = t0 + timedelta(seconds=2)
    with pytest.raises(RateLimited) as exc:
        authenticate(db, username=name, password="pass-word-12", now=t1 + timedelta(milliseconds=500))
    assert exc.value.retry_after_s == 1
    with pytest.raises(AuthError):  # after the delay a try is judged again; a wrong one doubles it
        authenticate(db, username=name, password="bad-guess", now=t1 + timedelta(seconds=1))
    with pytest.raises(RateLimited) as exc:
        authenticate(db, username=name, password="pass-word-12", now=t1 + timedelta(seconds=2))
    assert exc.value.retry_after_s == 1
    # The right password works as soon as the delay has passed, and clears the count.
    assert authenticate(db, username=name, password="pass-word-12", now=t1 + timedelta(seconds=3)).username == name
    assert db.execute("SELECT failures FROM login_throttle WHERE username = %s", (name,)).fetchone() == (0,)


def test_sessions_and_tokens_are_keyed_by_the_secret(db: Any) -> None:
    user, _ = _user(db)
    token, csrf = create_session(db, user=user, secret=SECRET)
    found = session_user(db, token=token, secret=SECRET)
    assert found is not None and found[0].id == user.id and found[1] == csrf
    assert session_user(db, token=token, secret="another-secret") is None
    stored = db.execute("SELECT token_hash FROM sessions WHERE user_id = %s", (user.id,)).fetchone()[0]
    assert token not in stored
    delete_session(db, token=token, secret=SECRET)
    assert session_user(db, token=token, secret=SECRET) is None
    api, expires = create_api_token(db, user=user, secret=SECRET)
    # Short-lived (issue 12: they lived 30 days).
    assert datetime.now(UTC) + timedelta(minutes=29) < expires <= datetime.now(UTC) + timedelta(minutes=30)
    assert token_user(db, token=api, secret=SECRET).id == user.id  # type: ignore[union-attr]
    assert token_user(db, token=api + "x", secret=SECRET) is None


def test_inactive_user_loses_sessions(db: Any) -> None:
    user, name = _user(db)
    token, _ = create_session(db, user=user, secret=SECRET)
    db.execute("UPDATE users SET active = false WHERE id = %s", (user.id,))
    assert session_user(db, token=token, secret=SECRET) is None
    with pytest.raises(AuthError):
        authenticate(db, username=name, password="pass-word-12")


def test_role_constraints_in_the_schema(db: Any) -> None:
    import psycopg

    with pytest.raises(psycopg.errors.CheckViolation):
        create_user(db, username=f"n{secrets.token_hex(3)}", display_name="N", role="nurse", password="pass-word-12")


@pytest.mark.parametrize(
    ("user", "patient", "allowed"),
    [
        (User(1, "c", "C", Role.CITIZEN, patient_id=5), (5, "Aarhus", None), True),
        (User(1, "c", "C", Role.CITIZEN, patient_id=5), (6, "Aarhus", None), False),
        (User(1, "n", "N", Role.NURSE, municipality="Aarhus"), (6, "Aarhus", "AUH Lunge"), True),
        (User(1, "n", "N", Role.NURSE, municipality="Aarhus"), (6, "Randers", None), False),
        (User(1, "n", "N", Role.NURSE, municipality=None), (6, "Randers", None), False),
        (User(1, "s", "S", Role.SPECIALIST, department="AUH Lunge"), (6, "Randers", "AUH Lunge"), True),
        (User(1, "s", "S", Role.SPECIALIST, department="AUH Lunge"), (6, "Aarhus", None), False),
        (User(1, "a", "A", Role.ADMIN), (6, "Aarhus", None), False),
    ],
)
def test_scope_rules(user: User, patient: tuple[int, str, str | None], allowed: bool) -> None:
    pid, mun, dep = patient
    assert can_read_patient(user, patient_id=pid, municipality=mun, department=dep)[0] is allowed


def test_scope_clause_matches_the_rules(db: Any) -> None:
    tag = secrets.token_hex(3)
    ids = [
        db.execute(
            "INSERT INTO patients (external_ref, name, programme, municipality, department)"
            " VALUES (%s, 'x', 'copd', %s, %s) RETURNING id",
            (f"sc-{tag}-{i}", m, d),
        ).fetchone()[0]
        for i, (m, d) in enumerate([(f"M{tag}", None), (f"M{tag}", f"D{tag}"), (f"O{tag}", f"D{tag}")])
    ]
    for user, expect in [
        (User(1, "n", "N", Role.NURSE, municipality=f"M{tag}"), ids[:2]),
        (User(1, "s", "S", Role.SPECIALIST, department=f"D{tag}"), ids[1:]),
        (User(1, "c", "C", Role.CITIZEN, patient_id=ids[2]), ids[2:]),
        (User(1, "a", "A", Role.ADMIN), []),
    ]:
        where, params = scope_clause(user, "p")
        params["ids"] = ids
        got = [
            r[0]
            for r in db.execute(
                f"SELECT p.id FROM patients p WHERE p.id = ANY(%(ids)s) AND {where} ORDER BY p.id", params
            ).fetchall()
        ]
        assert got == expect


def test_demo_accounts_only_in_demo_mode(empty_database_url: str) -> None:
    # Its own database: the demo's fixed team keys and usernames must not meet other tests' rows.
    import psycopg

    from backend.accounts.demo import seed_accounts
    from backend.store import migrate

    migrate(empty_database_url)
    with psycopg.connect(empty_database_url, autocommit=True) as db:
        with pytest.raises(ConfigError):
            seed_accounts(db, demo=False)
        assert db.execute("SELECT count(*) FROM users").fetchone()[0] == 0
        lines = seed_accounts(db, demo=True)
        assert {line.split()[0] for line in lines} == {"nurse", "specialist", "citizen", "admin"}
        assert seed_accounts(db, demo=True) == lines  # idempotent
        assert authenticate(db, username="sygeplejerske", password="demo-nearcare").role is Role.NURSE


def test_app_refuses_the_demo_secret_outside_demo() -> None:
    from backend.app import create_app
    from backend.settings import Settings

    with pytest.raises(ConfigError):
        create_app(Settings(demo=False))
