"""Issue 12, finding 6 and the login items of finding 9: a per-account delay instead of a lock,
counted atomically; X-Forwarded-For only from configured proxies; short-lived bearer tokens with
refresh and revoke; secret keys under 32 bytes refused; enrolment redeems limited and audited."""

from __future__ import annotations

import concurrent.futures
import secrets
import time
from typing import Any

import httpx
import psycopg
import pytest

from backend.accounts.store import FREE_FAILURES, login_delay
from backend.app import create_app
from backend.errors import ConfigError
from backend.settings import Settings
from tests.backend.web._support import PASSWORD, build_world

pytestmark = pytest.mark.usefixtures("forget_failed_logins")  # tests/backend/web/conftest.py


def test_the_delay_doubles_and_is_capped() -> None:
    assert [login_delay(n).total_seconds() for n in range(7)] == [0, 0, 0, 1, 2, 4, 8]
    assert login_delay(100).total_seconds() == 300


def test_wrong_guesses_delay_the_account_but_the_right_password_works_after_the_delay(
    live: Any, client: httpx.Client
) -> None:
    with psycopg.connect(live.app.state.settings.database_url, autocommit=True) as conn:
        w = build_world(conn)
    for _ in range(FREE_FAILURES + 1):
        r = client.post("/api/v1/auth/token", json={"username": w.nurse, "password": "guess"})
        assert r.status_code in (401, 429)
    r = client.post("/api/v1/auth/token", json={"username": w.nurse, "password": PASSWORD})
    assert r.status_code == 429
    wait = int(r.headers["retry-after"])
    assert 1 <= wait <= 4
    time.sleep(wait + 0.2)
    r = client.post("/api/v1/auth/token", json={"username": w.nurse, "password": PASSWORD})
    assert r.status_code == 200, r.text


def test_concurrent_guesses_are_counted_one_after_the_other(live: Any) -> None:
    # Finding 6: 15 concurrent guesses got 13 evaluations past the limit of 5.
    with psycopg.connect(live.app.state.settings.database_url, autocommit=True) as conn:
        w = build_world(conn)

    def guess(_: int) -> int:
        with httpx.Client(base_url=live.url, timeout=60) as c:
            return c.post("/api/v1/auth/token", json={"username": w.nurse, "password": "guess"}).status_code

    with concurrent.futures.ThreadPoolExecutor(15) as pool:
        codes = list(pool.map(guess, range(15)))
    # Only the free tries are evaluated (one more if a slow machine let the first 1 s delay pass);
    # all others wait.
    evaluated_401 = codes.count(401)
    assert evaluated_401 in (FREE_FAILURES, FREE_FAILURES + 1) and codes.count(429) == 15 - evaluated_401, codes
    with psycopg.connect(live.app.state.settings.database_url) as conn:
        evaluated = conn.execute("SELECT count(*) FROM login_attempts WHERE username = %s", (w.nurse,)).fetchone()
    assert evaluated == (evaluated_401,)


def test_x_forwarded_for_is_believed_only_from_a_configured_proxy(live: Any, client: httpx.Client) -> None:
    with psycopg.connect(live.app.state.settings.database_url, autocommit=True) as conn:
        w = build_world(conn)
        settings = live.app.state.settings
        spoof = {"x-forwarded-for": "203.0.113.9"}
        r = client.post("/api/v1/auth/token", json={"username": w.citizen, "password": "nope"}, headers=spoof)
        assert r.status_code == 401
        addr = conn.execute("SELECT remote_addr FROM login_attempts WHERE username = %s ORDER BY id DESC LIMIT 1",
                            (w.citizen,)).fetchone()
        assert addr == ("127.0.0.1",)
        before = settings.trusted_proxies
        settings.trusted_proxies = ["127.0.0.0/8"]
        try:
            client.post("/api/v1/auth/token", json={"username": w.citizen, "password": "nope"},
                        headers={"x-forwarded-for": "198.51.100.7, 203.0.113.9"})
        finally:
            settings.trusted_proxies = before
        addr = conn.execute("SELECT remote_addr FROM login_attempts WHERE username = %s ORDER BY id DESC LIMIT 1",
                            (w.citizen,)).fetchone()
        assert addr == ("203.0.113.9",)


def test_tokens_are_short_lived_refreshed_once_and_revoked(live: Any, client: httpx.Client) -> None:
    with psycopg.connect(live.app.state.settings.database_url, autocommit=True) as conn:
        w = build_world(conn)
    body = client.post("/api/v1/auth/token", json={"username": w.nurse, "password": PASSWORD}).json()
    from datetime import datetime

    lives = datetime.fromisoformat(body["expires_at"]) - datetime.now(datetime.fromisoformat(body["expires_at"]).tzinfo)
    assert lives.total_seconds() <= 30 * 60 + 5
    h = {"authorization": f"Bearer {body['access_token']}"}
    assert client.get("/api/v1/me", headers=h).status_code == 200
    # A refresh token is not an access token.
    assert client.get("/api/v1/me", headers={"authorization": f"Bearer {body['refresh_token']}"}).status_code == 401
    new = client.post("/api/v1/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert new.status_code == 200
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": body["refresh_token"]}).status_code == 401
    nh = {"authorization": f"Bearer {new.json()['access_token']}"}
    r = client.post("/api/v1/auth/revoke", headers=nh, json={"refresh_token": new.json()["refresh_token"]})
    assert r.status_code == 204
    assert client.get("/api/v1/me", headers=nh).status_code == 401
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": new.json()["refresh_token"]}).status_code == 401


@pytest.mark.parametrize("key", ["x", "a" * 31])
def test_a_secret_key_under_32_bytes_is_refused(key: str) -> None:
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        create_app(Settings(demo=False, secret_key=key))
    create_app(Settings(demo=False, secret_key=secrets.token_hex(16)))  # 32 bytes: accepted


def test_enrolment_redeems_are_rate_limited_and_audited(live: Any, client: httpx.Client) -> None:
    agent = f"agent-redeem-{secrets.token_hex(3)}"
    codes = [client.post("/api/v1/enrolment/redeem", json={"agent_id": agent, "code": "AAAA-BBBB-CCCC"}).status_code
             for _ in range(7)]
    # Refused (403; 503 where this test app has no broker credential store), then limited.
    assert set(codes[:5]) <= {403, 503} and codes[5:] == [429, 429], codes
    with psycopg.connect(live.app.state.settings.database_url) as conn:
        rows = conn.execute("SELECT action FROM admin_audit WHERE after->>'agent_id' = %s", (agent,)).fetchall()
    assert [r[0] for r in rows] == ["enrolment refused"] * 5
