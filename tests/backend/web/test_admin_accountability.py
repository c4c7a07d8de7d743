"""Issue 12, finding 3: admin power is accountable. Every admin action is audited with before and
after; an account linked to a citizen shows in that citizen's Min Log; users are deactivated and
their passwords reset, never deleted."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import psycopg
import pytest

from tests.backend.web._support import PASSWORD, api_token, build_world

pytestmark = pytest.mark.usefixtures("forget_failed_logins")  # tests/backend/web/conftest.py


def _h(tok: str) -> dict[str, str]:
    return {"authorization": f"Bearer {tok}"}


def test_a_shadow_account_is_audited_and_shows_in_the_citizens_min_log(live: Any, client: httpx.Client) -> None:
    with psycopg.connect(live.app.state.settings.database_url, autocommit=True) as conn:
        w = build_world(conn)
        admin = api_token(client, w.admin)
        shadow = f"shadow-{secrets.token_hex(3)}"
        r = client.post("/api/v1/admin/users", headers=_h(admin), json={
            "username": shadow, "display_name": "Skygge Konto", "role": "citizen", "password": "shadow-pass-1",
            "patient_ref": w.patient_ref})
        assert r.status_code == 200, r.text
        nurse = f"nurse-{secrets.token_hex(3)}"
        r = client.post("/api/v1/admin/users", headers=_h(admin), json={
            "username": nurse, "display_name": "Ny Sygeplejerske", "role": "nurse", "password": "nurse-pass-12",
            "team_key": f"sygepleje-{w.tag}"})
        assert r.status_code == 200, r.text
        log = {row["action"]: row for row in client.get("/api/v1/admin/audit", headers=_h(admin)).json()
               if row["after"] and row["after"].get("username") in (shadow, nurse)}
        assert log["user created"]["actor"].startswith(w.admin)
        created = [row for row in client.get("/api/v1/admin/audit", headers=_h(admin)).json()
                   if row["action"] == "user created" and row["after"]["username"] in (shadow, nurse)]
        assert {row["after"]["username"] for row in created} == {shadow, nurse}
        assert {row["after"]["role"] for row in created} == {"citizen", "nurse"}
        assert all("password" not in str(row["after"]) for row in created)

        # The citizen sees the account with access to their data, and who made it.
        tok = api_token(client, w.citizen)
        entries = client.get("/api/v1/me/log", headers=_h(tok)).json()["entries"]
        made = [e for e in entries if e["what"] == "oprettede en konto med adgang til dine data"]
        assert made and made[0]["who"] == "Anne Test" and made[0]["role"] == "administrator"
        detail = conn.execute("SELECT detail FROM audit_log WHERE patient_id = %s AND action = 'account created'",
                              (w.patient_id,)).fetchone()
        assert detail is not None and "konto oprettet med adgang til dine data af admin Anne Test" in detail[0]


def test_deactivate_and_reset_password_are_audited_and_never_delete(live: Any, client: httpx.Client) -> None:
    with psycopg.connect(live.app.state.settings.database_url, autocommit=True) as conn:
        w = build_world(conn)
        admin = api_token(client, w.admin)
        nurse_tok = api_token(client, w.nurse)
        r = client.put(f"/api/v1/admin/users/{w.nurse}/active", json={"active": False}, headers=_h(admin))
        assert r.status_code == 200 and r.json()["active"] is False
        # The nurse's token ends at once and the nurse cannot log in; the row stays.
        assert client.get("/api/v1/me", headers=_h(nurse_tok)).status_code == 401
        assert client.post("/api/v1/auth/token", json={"username": w.nurse, "password": PASSWORD}).status_code == 401
        assert conn.execute("SELECT active FROM users WHERE username = %s", (w.nurse,)).fetchone() == (False,)
        assert client.put(f"/api/v1/admin/users/{w.nurse}/active", json={"active": True},
                          headers=_h(admin)).status_code == 200
        r = client.post(f"/api/v1/admin/users/{w.nurse}/password", json={"password": "a-new-password-9"},
                        headers=_h(admin))
        assert r.status_code == 204
        assert client.post("/api/v1/auth/token", json={"username": w.nurse, "password": PASSWORD}).status_code == 401
        # The password the admin chose is changed at the next login (ASVS 2.3.1).
        r = client.post("/api/v1/auth/token", json={"username": w.nurse, "password": "a-new-password-9"})
        assert r.status_code == 403 and "set by an administrator" in r.text
        r = client.post("/api/v1/auth/password", json={"username": w.nurse, "password": "a-new-password-9",
                                                       "new_password": "sara-chose-this"})
        assert r.status_code == 200 and r.json()["access_token"]
        assert api_token(client, w.nurse, "sara-chose-this")
        rows = conn.execute(
            "SELECT action, before, after FROM admin_audit a JOIN users u ON u.id = a.user_id"
            " WHERE u.username = %s ORDER BY a.id", (w.nurse,)).fetchall()
        assert [r[0] for r in rows] == ["user deactivated", "user activated", "password reset"]
        assert rows[0][1]["active"] is True and rows[0][2]["active"] is False
        assert "a-new-password-9" not in str(rows)
        # No delete route exists for users.
        assert client.delete(f"/api/v1/admin/users/{w.nurse}", headers=_h(admin)).status_code in (404, 405)
