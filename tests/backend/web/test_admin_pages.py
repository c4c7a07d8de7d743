"""Issue 13, the operator's pages: users deactivated (never deleted), passwords reset and login
delays removed from the admin page, all audited with before and after; the login page warns before
the delay sets in; devices validated (Bluetooth address, known model), listed, edited and removed;
"seneste måling" and "seneste kontakt" are separate columns; a refused form keeps what was typed."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest

from backend.accounts.store import FREE_FAILURES
from backend.registry.snapshot import load_snapshot
from tests.backend.web._support import PASSWORD, api_token, build_world, web_login

pytestmark = pytest.mark.usefixtures("forget_failed_logins")  # tests/backend/web/conftest.py


def _login_form(client: httpx.Client, username: str, password: str) -> httpx.Response:
    page = client.get("/login?lang=da")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token
    return client.post("/login", data={"username": username, "password": password, "csrf": token.group(1)})


def _row(html: str, attr: str, value: str) -> str:
    m = re.search(rf'<tr {attr}="{re.escape(value)}">.*?</tr>', html, re.S)
    assert m, f"no row {attr}={value}"
    return m.group(0)


def test_the_login_page_warns_before_the_delay_and_the_admin_removes_it(live: Any) -> None:
    with psycopg.connect(live.app.state.settings.database_url, autocommit=True) as conn:
        w = build_world(conn)
    with httpx.Client(base_url=live.url, timeout=30) as nurse_browser:
        said = [_login_form(nurse_browser, w.nurse, "wrong-guess") for _ in range(FREE_FAILURES)]
    assert [r.status_code for r in said] == [401] * FREE_FAILURES
    assert "2 forsøg tilbage, før du skal vente mellem forsøgene" in said[0].text
    assert "1 forsøg tilbage" in said[1].text
    assert "Nu skal du vente lidt før hvert nyt forsøg" in said[2].text

    with psycopg.connect(live.app.state.settings.database_url, autocommit=True) as conn:
        # The third failure's delay is 1 s; a longer one (as after more failures) is running now.
        conn.execute("UPDATE login_throttle SET next_at = now() + interval '5 minutes' WHERE username = %s",
                     (w.nurse,))
    with httpx.Client(base_url=live.url, timeout=30) as c:
        assert _login_form(c, w.nurse, PASSWORD).status_code == 429
        csrf = web_login(c, w.admin)
        page = c.get("/admin?lang=da").text
        row = _row(page, "data-user", w.nurse)
        assert f"Fejlede login i træk: {FREE_FAILURES}" in row and "login forsinket" in row
        r = c.post(f"/admin/users/{w.nurse}/unlock", data={"csrf": csrf})
        assert r.status_code == 200 and f"Login-forsinkelsen for {w.nurse} er fjernet." in r.text
        assert "Fejlede login" not in _row(r.text, "data-user", w.nurse)
    with psycopg.connect(live.app.state.settings.database_url, autocommit=True) as conn:
        audit = conn.execute(
            "SELECT a.before, a.after FROM admin_audit a JOIN users u ON u.id = a.user_id"
            " WHERE u.username = %s AND a.action = 'login unlocked'", (w.nurse,)).fetchall()
    assert audit == [({"failures": FREE_FAILURES}, {"failures": 0})]
    with httpx.Client(base_url=live.url, timeout=30) as c:
        assert web_login(c, w.nurse)  # at once, no delay left


def test_deactivate_reactivate_and_reset_a_password_on_the_admin_page(live: Any, client: httpx.Client) -> None:
    with psycopg.connect(live.app.state.settings.database_url, autocommit=True) as conn:
        w = build_world(conn)
        nurse_tok = api_token(client, w.nurse)
        csrf = web_login(client, w.admin)
        page = client.get("/admin?lang=da").text
        assert "/admin/users/" + w.admin + "/active" not in page  # no button to deactivate oneself
        r = client.post(f"/admin/users/{w.nurse}/active", data={"csrf": csrf, "active": "false"})
        assert r.status_code == 200 and f"Bruger {w.nurse} deaktiveret." in r.text
        assert "deaktiveret" in _row(r.text, "data-user", w.nurse)
        assert client.get("/api/v1/me", headers={"authorization": f"Bearer {nurse_tok}"}).status_code == 401
        assert conn.execute("SELECT active FROM users WHERE username = %s", (w.nurse,)).fetchone() == (False,)
        r = client.post(f"/admin/users/{w.nurse}/active", data={"csrf": csrf, "active": "true"})
        assert r.status_code == 200 and f"Bruger {w.nurse} genaktiveret." in r.text

        # ASVS 2.1.1: under 12 characters is refused, in words, in the admin's language.
        r = client.post(f"/admin/users/{w.nurse}/password", data={"csrf": csrf, "password": "elevenchars"})
        assert r.status_code == 400 and "Adgangskoden skal have mindst 12 tegn." in r.text
        r = client.post(f"/admin/users/{w.nurse}/password?lang=en", data={"csrf": csrf, "password": "short"})
        assert r.status_code == 400 and "The password needs at least 12 characters." in r.text
        assert api_token(client, w.nurse)  # the old password still works after the refusals
        r = client.post(f"/admin/users/{w.nurse}/password?lang=da",
                        data={"csrf": csrf, "password": "twelve-chars"})
        assert r.status_code == 200 and f"Ny adgangskode sat for {w.nurse}." in r.text
        assert client.post("/api/v1/auth/token",
                           json={"username": w.nurse, "password": PASSWORD}).status_code == 401
        r = client.post("/api/v1/auth/token", json={"username": w.nurse, "password": "twelve-chars"})
        assert r.status_code == 403  # to be changed at the next login (ASVS 2.3.1)
        rows = conn.execute(
            "SELECT action, before, after FROM admin_audit a JOIN users u ON u.id = a.user_id"
            " WHERE u.username = %s ORDER BY a.id", (w.nurse,)).fetchall()
        assert [r[0] for r in rows] == ["user deactivated", "user activated", "password reset"]
        assert (rows[0][1]["active"], rows[0][2]["active"]) == (True, False)
        assert "twelve-chars" not in str(rows)


def test_the_api_refuses_short_passwords_too(live: Any, client: httpx.Client) -> None:
    with psycopg.connect(live.app.state.settings.database_url, autocommit=True) as conn:
        w = build_world(conn)
    h = {"authorization": f"Bearer {api_token(client, w.admin)}"}
    r = client.post(f"/api/v1/admin/users/{w.nurse}/password", json={"password": "x" * 11}, headers=h)
    assert r.status_code == 422 and "12 characters" in r.text
    r = client.post("/api/v1/admin/users", headers=h, json={
        "username": f"n-{w.tag}", "display_name": "N", "role": "nurse", "password": "x" * 11,
        "team_key": f"sygepleje-{w.tag}"})
    assert r.status_code == 422 and "12 characters" in r.text


def test_devices_are_validated_listed_edited_and_removed(live: Any, client: httpx.Client) -> None:
    with psycopg.connect(live.app.state.settings.database_url, autocommit=True) as conn:
        w = build_world(conn)
        csrf = web_login(client, w.admin)
        # Issue 13: "not-a-mac" and an unknown model were accepted; the typed fields were lost.
        r = client.post("/admin/devices?lang=da", data={"csrf": csrf, "agent_id": w.agent_id, "address": "not-a-mac",
                                                        "model": "A&D UC-352BLE", "serial": "SN-77"})
        assert r.status_code == 400
        assert "not-a-mac er ikke en Bluetooth-adresse af formen AA:BB:CC:DD:EE:FF." in r.text
        form = re.search(r'<form[^>]*id="register-device".*?</form>', r.text, re.S)
        assert form and 'value="not-a-mac"' in form.group(0) and 'value="SN-77"' in form.group(0)
        assert f'value="{w.agent_id}"' in form.group(0)
        r = client.post("/admin/devices", data={"csrf": csrf, "agent_id": w.agent_id, "address": "11:22:33:44:55:77",
                                                "model": "Toaster 3000"})
        assert r.status_code == 400 and "Ukendt apparatmodel: Toaster 3000. Kendte modeller:" in r.text
        assert "Nonin 3230" in r.text
        assert conn.execute("SELECT count(*) FROM devices WHERE agent_id = %s", (w.agent_id,)).fetchone() == (1,)

        r = client.post("/admin/devices", data={"csrf": csrf, "agent_id": w.agent_id, "address": "11-22-33-44-55-aa",
                                                "model": "3230"})
        assert r.status_code == 200 and "Apparat registreret." in r.text
        dev = conn.execute("SELECT id, address, model, manufacturer FROM devices WHERE agent_id = %s"
                           " AND address = '11:22:33:44:55:AA'", (w.agent_id,)).fetchone()
        assert dev is not None and dev[1:] == ("11:22:33:44:55:AA", "Nonin 3230", "Nonin Medical")
        assert 'value="11:22:33:44:55:AA"' in _row(r.text, "data-device", str(dev[0]))

        # Edit: a wrong address is refused, a right one is saved and audited with before and after.
        r = client.post(f"/admin/devices/{dev[0]}", data={"csrf": csrf, "address": "11:22:33", "model": "Nonin 3230"})
        assert r.status_code == 400 and "er ikke en Bluetooth-adresse" in r.text
        r = client.post(f"/admin/devices/{dev[0]}", data={"csrf": csrf, "address": "11:22:33:44:55:AB",
                                                          "model": "Nonin WristOx2 3150", "serial": "W-1"})
        assert r.status_code == 200 and "Apparat ændret." in r.text
        assert "11:22:33:44:55:AB" in _row(r.text, "data-device", str(dev[0]))

        # Remove: kept in the table, gone from the list and from ingest's registry.
        r = client.post(f"/admin/devices/{dev[0]}/remove", data={"csrf": csrf})
        assert r.status_code == 200 and "Apparat fjernet fra gatewayen." in r.text
        assert f'data-device="{dev[0]}"' not in r.text
        assert conn.execute("SELECT removed_at IS NOT NULL FROM devices WHERE id = %s", (dev[0],)).fetchone() == (True,)
        snap = load_snapshot(conn)
        assert snap.device(w.agent_id, "11:22:33:44:55:AB") is None
        assert snap.device(w.agent_id, "AA:BB:CC:DD:EE:01") is not None
        assert client.post(f"/admin/devices/{dev[0]}/remove", data={"csrf": csrf}).status_code == 400

        rows = conn.execute("SELECT action, before, after FROM admin_audit WHERE action LIKE 'device %%'"
                            " AND (after->>'agent_id') = %s ORDER BY id", (w.agent_id,)).fetchall()
        assert [r[0] for r in rows] == ["device registered", "device changed", "device removed"]
        assert rows[1][1]["address"] == "11:22:33:44:55:AA" and rows[1][2]["address"] == "11:22:33:44:55:AB"
        assert rows[2][1]["removed"] is False and rows[2][2]["removed"] is True

        # Registering it again brings it back.
        r = client.post("/admin/devices", data={"csrf": csrf, "agent_id": w.agent_id, "address": "11:22:33:44:55:AB",
                                                "model": "Nonin 3230"})
        assert r.status_code == 200 and f'data-device="{dev[0]}"' in r.text


def test_the_device_api_refuses_what_the_page_refuses(live: Any, client: httpx.Client) -> None:
    with psycopg.connect(live.app.state.settings.database_url, autocommit=True) as conn:
        w = build_world(conn)
    h = {"authorization": f"Bearer {api_token(client, w.admin)}"}
    r = client.post(f"/api/v1/admin/agents/{w.agent_id}/devices", json={"address": "not-a-mac", "model": "3230"},
                    headers=h)
    assert r.status_code == 422
    r = client.post(f"/api/v1/admin/agents/{w.agent_id}/devices", json={"address": "00:1C:05:00:00:09",
                                                                        "model": "Toaster"}, headers=h)
    assert r.status_code == 422 and "Nonin 3230" in r.text  # the schema names the known models
    r = client.post(f"/api/v1/admin/agents/{w.agent_id}/devices", json={"address": "00:1c:05:00:00:09",
                                                                        "model": "Nonin 3230"}, headers=h)
    assert r.status_code == 200 and r.json()["address"] == "00:1C:05:00:00:09"
    dev = r.json()["id"]
    r = client.put(f"/api/v1/admin/devices/{dev}", json={"address": "00:1C:05:00:00:0A", "model": "A&D UA-651BLE"},
                   headers=h)
    assert r.status_code == 200 and r.json()["model"] == "A&D UA-651BLE"
    r = client.put(f"/api/v1/admin/devices/{dev}", json={"address": "AA:BB:CC:DD:EE:01", "model": "A&D UA-651BLE"},
                   headers=h)
    assert r.status_code == 409  # the gateway's other device has that address
    r = client.post(f"/api/v1/admin/devices/{dev}/remove", headers=h)
    assert r.status_code == 200 and r.json()["removed"] is True
    assert client.post(f"/api/v1/admin/devices/{dev}/remove", headers=h).status_code == 409
    assert client.post("/api/v1/admin/devices/999999999/remove", headers=h).status_code == 404
    listed = client.get("/api/v1/admin/overview", headers=h).json()["devices"]
    assert dev not in {d["id"] for d in listed}


def test_the_api_names_exactly_the_known_models() -> None:
    from typing import get_args

    from backend.admin.devices import KNOWN_MODELS
    from backend.admin.routes import ModelName

    assert set(get_args(ModelName)) == {m.model for m in KNOWN_MODELS}


def test_last_reading_and_last_contact_are_separate_columns(live: Any, client: httpx.Client) -> None:
    # Issue 13: "Seneste måling" in the gateway table was the last heartbeat.
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    reading, contact = now - timedelta(days=3, hours=2), now - timedelta(minutes=10)
    with psycopg.connect(live.app.state.settings.database_url, autocommit=True) as conn:
        w = build_world(conn)
        conn.execute("UPDATE devices SET last_seen_at = %s WHERE agent_id = %s", (reading, w.agent_id))
        conn.execute("UPDATE agents SET last_seen_at = %s, status_at = %s WHERE id = %s",
                     (contact, contact - timedelta(minutes=5), w.agent_id))
    csrf = web_login(client, w.admin)
    assert csrf
    page = client.get("/admin?lang=da").text
    assert "<th>Seneste måling</th><th>Seneste kontakt</th>" in page
    row = _row(page, "data-agent", w.agent_id)
    tz = ZoneInfo(live.app.state.settings.timezone)
    fmt = "%d-%m-%Y %H:%M"
    assert f'<td class="last-reading">{reading.astimezone(tz).strftime(fmt)}</td>' in row
    assert f'<td class="last-contact">{contact.astimezone(tz).strftime(fmt)}</td>' in row
    h = {"authorization": f"Bearer {api_token(client, w.admin)}"}
    agent = next(a for a in client.get("/api/v1/admin/overview", headers=h).json()["agents"] if a["id"] == w.agent_id)
    assert datetime.fromisoformat(agent["last_reading_at"]) == reading
    assert datetime.fromisoformat(agent["last_seen_at"]) == contact


def test_a_refused_user_form_keeps_what_was_typed_but_never_the_password(live: Any, client: httpx.Client) -> None:
    with psycopg.connect(live.app.state.settings.database_url, autocommit=True) as conn:
        w = build_world(conn)
    csrf = web_login(client, w.admin)
    name = f"typed-{secrets.token_hex(3)}"
    r = client.post("/admin/users?lang=da", data={"csrf": csrf, "username": name, "display_name": "Skrevet Navn",
                                                  "role": "nurse", "password": "kept-secret-12"})
    assert r.status_code == 400 and "Sygeplejersker og speciallæger skal høre til et team." in r.text
    form = re.search(r'<form[^>]*id="create-user".*?</form>', r.text, re.S)
    assert form and f'value="{name}"' in form.group(0) and 'value="Skrevet Navn"' in form.group(0)
    assert "kept-secret-12" not in r.text


def test_the_audit_list_pages_and_keeps_its_filter(live: Any, client: httpx.Client) -> None:
    # Issue 13: the audit list had no paging.
    with psycopg.connect(live.app.state.settings.database_url, autocommit=True) as conn:
        w = build_world(conn)
        conn.execute(
            "INSERT INTO audit_log (at, actor, actor_role, patient_id, action, detail, allowed)"
            " SELECT now() - i * interval '1 second', %s, 'nurse', %s, 'patient page', 'row ' || i, true"
            " FROM generate_series(1, 230) AS i", (f"{w.nurse} (Sara Test)", w.patient_id))
    web_login(client, w.admin)
    seen: list[str] = []
    url: str | None = f"/audit?lang=da&actor={w.nurse}"
    pages = 0
    while url is not None:
        page = client.get(url).text
        pages += 1
        seen += re.findall(r'<span class="muted">(row \d+)</span>', page)
        older = re.search(r'<a id="audit-older" href="([^"]+)"', page)
        url = older.group(1).replace("&amp;", "&") if older else None
        if url:
            assert f"actor={w.nurse}" in url
    assert pages == 3 and seen == [f"row {i}" for i in range(1, 231)]
    assert 'id="audit-newer"' in page and 'id="audit-older"' not in page


def test_unknown_names_are_told_in_words_on_the_page(live: Any, client: httpx.Client) -> None:
    # Issue 13: the operator's messages were English ("no agent 'x'").
    with psycopg.connect(live.app.state.settings.database_url, autocommit=True) as conn:
        w = build_world(conn)
    csrf = web_login(client, w.admin)
    cases = [
        ("/admin/agents/bind", {"agent_id": "ingen-gateway", "patient_ref": w.patient_ref},
         "Gatewayen ingen-gateway findes ikke."),
        ("/admin/agents/bind", {"agent_id": w.agent_id, "patient_ref": "ingen-ref"},
         "Der er ingen borger med referencen ingen-ref."),
        ("/admin/devices", {"agent_id": "ingen-gateway", "address": "00:1C:05:00:00:01", "model": "Nonin 3230"},
         "Gatewayen ingen-gateway findes ikke."),
        ("/admin/users", {"username": f"z-{w.tag}", "display_name": "Z", "role": "nurse",
                          "password": "long-enough-12", "team_key": "intet-team"}, "Teamet intet-team findes ikke."),
        ("/admin/teams", {"key": f"sygepleje-{w.tag}", "name": "T", "sector": "municipal", "municipality": "X"},
         f"Et team med nøglen sygepleje-{w.tag} findes allerede."),
    ]
    for path, data, words in cases:
        r = client.post(f"{path}?lang=da", data={"csrf": csrf, **data})
        assert r.status_code == 400 and words in r.text, (path, r.text[:300])
    # Binding works and reaches the citizen's Min Log (one service for the page and the API).
    r = client.post("/admin/agents/bind", data={"csrf": csrf, "agent_id": w.agent_id, "patient_ref": w.patient_ref})
    assert r.status_code == 200 and "Gateway knyttet til borgeren." in r.text
    with psycopg.connect(live.app.state.settings.database_url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM audit_log WHERE patient_id = %s AND action = 'account changed'"
                            " AND detail LIKE %s", (w.patient_id, f"måleudstyr {w.agent_id}%")).fetchone() == (1,)


def test_a_password_the_admin_set_is_changed_on_the_login_page(live: Any, client: httpx.Client) -> None:
    # ASVS 2.3.1: the password an administrator chose (a new account's or a reset) is not the long-term one.
    with psycopg.connect(live.app.state.settings.database_url, autocommit=True) as conn:
        w = build_world(conn)
    csrf = web_login(client, w.admin)
    assert client.post(f"/admin/users/{w.nurse}/password", data={"csrf": csrf, "password": "admin-chose-12"}
                       ).status_code == 200
    with httpx.Client(base_url=live.url, timeout=30) as nurse:
        r = _login_form(nurse, w.nurse, "admin-chose-12")
        assert r.status_code == 403 and "Vælg din egen, før du fortsætter." in r.text
        assert "nearcare_session" not in r.headers.get("set-cookie", "")
        form = re.search(r'<form[^>]*id="change-password".*?</form>', r.text, re.S)
        assert form and f'name="username" value="{w.nurse}"' in form.group(0)

        def change(current: str, new: str, repeat: str) -> httpx.Response:
            page = nurse.get("/login?lang=da")
            token = re.search(r'name="csrf" value="([^"]+)"', page.text)
            assert token
            return nurse.post("/login/password", data={"csrf": token.group(1), "username": w.nurse,
                                                       "password": current, "new_password": new, "repeat": repeat})

        r = change("admin-chose-12", "sara-own-pass-1", "sara-own-pass-2")
        assert r.status_code == 400 and "De to nye adgangskoder er ikke ens." in r.text
        r = change("admin-chose-12", "too-short", "too-short")
        assert r.status_code == 400 and "Adgangskoden skal have mindst 12 tegn." in r.text
        r = change("admin-chose-12", "admin-chose-12", "admin-chose-12")
        assert r.status_code == 400 and "skal være en anden end den, administratoren satte" in r.text
        r = change("wrong-current-1", "sara-own-pass-1", "sara-own-pass-1")
        assert r.status_code == 401
        r = change("admin-chose-12", "sara-own-pass-1", "sara-own-pass-1")
        assert r.status_code == 303 and r.headers["location"] == "/worklist"
        assert "nearcare_session" in r.headers.get("set-cookie", "")
    assert api_token(client, w.nurse, "sara-own-pass-1")


def test_the_login_error_is_in_the_language_the_login_page_was_in(live: Any) -> None:
    # Issue 13: on /login?lang=en the error appeared in Danish (the form posts to /login).
    with psycopg.connect(live.app.state.settings.database_url, autocommit=True) as conn:
        w = build_world(conn)
    with httpx.Client(base_url=live.url, timeout=30) as c:
        page = c.get("/login?lang=en")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token
        r = c.post("/login", data={"username": w.nurse, "password": "wrong-guess", "csrf": token.group(1)})
        assert r.status_code == 401 and "Wrong username or password. 2 tries left" in r.text
