"""Issue 12, admin power is accountable: four-eyes. An account an admin creates (a clinician, or a
citizen account linked to a patient) cannot log in until a different admin approves it; the
creating admin's own approval is refused; every step is audited with before and after, and the
citizen's Min Log shows both the creation and the approval."""

from __future__ import annotations

import re
import secrets
from typing import Any

import httpx
import psycopg
import pytest

from backend.accounts.store import create_user
from tests.backend.web._support import PASSWORD, api_token, build_world, web_login

pytestmark = pytest.mark.usefixtures("forget_failed_logins")  # tests/backend/web/conftest.py


def _h(tok: str) -> dict[str, str]:
    return {"authorization": f"Bearer {tok}"}


def _second_admin(conn: psycopg.Connection) -> str:
    name = f"admin-b-{secrets.token_hex(3)}"
    create_user(conn, username=name, display_name="Bo Test", role="admin", password=PASSWORD)
    return name


def _own_password(client: httpx.Client, username: str, set_by_admin: str) -> str:
    """The first login of an account an admin made: the admin's password is refused until the user
    chooses their own (ASVS 2.3.1); returns a token got with the user's own."""
    r = client.post("/api/v1/auth/token", json={"username": username, "password": set_by_admin})
    assert r.status_code == 403 and "set by an administrator" in r.text, r.text
    r = client.post("/api/v1/auth/password", json={"username": username, "password": set_by_admin,
                                                   "new_password": set_by_admin})
    assert r.status_code == 409  # not the one the admin chose
    r = client.post("/api/v1/auth/password", json={"username": username, "password": set_by_admin,
                                                   "new_password": "my-own-choice-1"})
    assert r.status_code == 200, r.text
    return api_token(client, username, "my-own-choice-1")


def _web_login_error(client: httpx.Client, username: str, password: str, lang: str = "da") -> httpx.Response:
    page = client.get(f"/login?lang={lang}")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token
    return client.post(f"/login?lang={lang}",
                       data={"username": username, "password": password, "csrf": token.group(1)})


def test_a_new_nurse_and_citizen_log_in_only_after_a_second_admin_approves(live: Any, client: httpx.Client) -> None:
    with psycopg.connect(live.app.state.settings.database_url, autocommit=True) as conn:
        w = build_world(conn)
        admin_b = _second_admin(conn)
        a_tok = api_token(client, w.admin)
        b_tok = api_token(client, admin_b)
        nurse, citizen = f"nurse-{secrets.token_hex(3)}", f"citizen-{secrets.token_hex(3)}"
        r = client.post("/api/v1/admin/users", headers=_h(a_tok), json={
            "username": nurse, "display_name": "Ny Sygeplejerske", "role": "nurse", "password": "nurse-pass-12",
            "team_key": f"sygepleje-{w.tag}"})
        assert r.status_code == 200, r.text
        r = client.post("/api/v1/admin/users", headers=_h(a_tok), json={
            "username": citizen, "display_name": "Skygge Borger", "role": "citizen", "password": "citizen-pass-12",
            "patient_ref": w.patient_ref})
        assert r.status_code == 200, r.text

        # Neither can log in: the API says why (403), the web page says it in words.
        for name, pw in ((nurse, "nurse-pass-12"), (citizen, "citizen-pass-12")):
            r = client.post("/api/v1/auth/token", json={"username": name, "password": pw})
            assert r.status_code == 403 and "approval" in r.text
        r = _web_login_error(client, nurse, "nurse-pass-12")
        assert r.status_code == 403 and "afventer godkendelse af en anden administrator" in r.text
        assert "nearcare_session" not in r.headers.get("set-cookie", "")
        r = _web_login_error(client, nurse, "nurse-pass-12", lang="en")
        assert "awaits approval by a second administrator" in r.text
        # A wrong password is still just wrong: the approval is told only to someone who knows it.
        r = client.post("/api/v1/auth/token", json={"username": nurse, "password": "wrong-pass-12"})
        assert r.status_code == 401

        # The admin who created them cannot approve them.
        r = client.post(f"/api/v1/admin/users/{nurse}/approve", headers=_h(a_tok))
        assert r.status_code == 403 and "different admin" in r.text
        r = client.post(f"/api/v1/admin/users/{nurse}/approve", headers=_h(b_tok))
        assert r.status_code == 200 and r.json()["approved"] is True and r.json()["approved_by"] == admin_b
        assert client.post(f"/api/v1/admin/users/{nurse}/approve", headers=_h(b_tok)).status_code == 409  # once
        assert _own_password(client, nurse, "nurse-pass-12")

        # The second admin approves the citizen account on the web page.
        csrf = web_login(client, admin_b)
        page = client.get("/admin?lang=da")  # the English login above left its language cookie
        assert f'data-user="{citizen}"' in page.text and "Afventer godkendelse" in page.text
        r = client.post(f"/admin/users/{citizen}/approve", data={"csrf": csrf})
        assert r.status_code == 200 and f"Bruger {citizen} godkendt." in r.text
        assert _own_password(client, citizen, "citizen-pass-12")

        rows = conn.execute(
            "SELECT a.action, a.actor, a.before, a.after FROM admin_audit a JOIN users u ON u.id = a.user_id"
            " WHERE u.username = ANY(%s) AND a.action IN ('user created', 'user approved') ORDER BY a.id",
            ([nurse, citizen],)).fetchall()
        assert [(r[0], r[3]["username"]) for r in rows] == [
            ("user created", nurse), ("user created", citizen), ("user approved", nurse), ("user approved", citizen)]
        assert all(r[1].startswith(w.admin) for r in rows[:2]) and all(r[1].startswith(admin_b) for r in rows[2:])
        assert rows[0][3]["approved"] is False
        assert rows[2][2]["approved"] is False and rows[2][3]["approved"] is True

        # The citizen's Min Log: who created the account with access to their data, and who approved it.
        tok = api_token(client, w.citizen)
        entries = client.get("/api/v1/me/log", headers=_h(tok)).json()["entries"]
        whats = {(e["what"], e["who"]) for e in entries}
        assert ("oprettede en konto med adgang til dine data", "Anne Test") in whats
        assert ("godkendte en konto med adgang til dine data", "Bo Test") in whats


def test_the_creating_admin_cannot_approve_on_the_web_page_either(live: Any, client: httpx.Client) -> None:
    with psycopg.connect(live.app.state.settings.database_url, autocommit=True) as conn:
        w = build_world(conn)
    csrf = web_login(client, w.admin)
    name = f"spec-{secrets.token_hex(3)}"
    r = client.post("/admin/users", data={"csrf": csrf, "username": name, "display_name": "Ny Læge",
                                          "role": "specialist", "password": "special-pass-12",
                                          "team_key": f"lungeteam-{w.tag}"})
    assert r.status_code == 200 and "når en anden administrator har godkendt den" in r.text
    row = re.search(rf'<tr data-user="{name}">.*?</tr>', r.text, re.S)
    assert row and "skal godkendes af en anden administrator" in row.group(0) and "/approve" not in row.group(0)
    r = client.post(f"/admin/users/{name}/approve", data={"csrf": csrf})
    assert r.status_code == 400
    assert "En konto skal godkendes af en anden administrator end den, der oprettede den." in r.text
    r = client.post("/api/v1/auth/token", json={"username": name, "password": "special-pass-12"})
    assert r.status_code == 403


def test_the_api_answers_what_went_wrong_with_its_status(live: Any, client: httpx.Client) -> None:
    # A well-formed request the service cannot do says why by its status (schemathesis, all checks).
    with psycopg.connect(live.app.state.settings.database_url, autocommit=True) as conn:
        w = build_world(conn)
    h = _h(api_token(client, w.admin))
    assert client.post("/api/v1/admin/users/nobody-here/approve", headers=h).status_code == 404
    assert client.post(f"/api/v1/admin/users/{w.nurse}/approve", headers=h).status_code == 409  # seeded: approved
    assert client.put(f"/api/v1/admin/users/{w.admin}/active", json={"active": False}, headers=h).status_code == 403
    r = client.post("/api/v1/admin/users", headers=h, json={
        "username": w.nurse, "display_name": "Igen", "role": "nurse", "password": "nurse-pass-12",
        "team_key": f"sygepleje-{w.tag}"})
    assert r.status_code == 409
    r = client.post("/api/v1/admin/users", headers=h, json={
        "username": f"x-{w.tag}", "display_name": "X", "role": "nurse", "password": "nurse-pass-12",
        "team_key": "no-such-team"})
    assert r.status_code == 404
    r = client.post("/api/v1/admin/users", headers=h, json={  # a nurse without a team is not well formed
        "username": f"y-{w.tag}", "display_name": "Y", "role": "nurse", "password": "nurse-pass-12"})
    assert r.status_code == 422
    r = client.post("/api/v1/admin/teams", headers=h, json={"key": f"k-{w.tag}", "name": "K", "sector": "municipal"})
    assert r.status_code == 422
    r = client.post("/api/v1/admin/teams", headers=h, json={"key": f"sygepleje-{w.tag}", "name": "K",
                                                            "sector": "municipal", "municipality": "X"})
    assert r.status_code == 409
