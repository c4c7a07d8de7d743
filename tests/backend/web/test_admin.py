"""Admin: enrol an agent with MQTT credentials on a real Mosquitto (dynamic-security plugin, or
a mosquitto_passwd file), a one-time code redeemed once, the ACL confining the agent to its
own topics; bind, devices, teams and users; admins see no clinical data."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.admin.credentials import DynsecCredentials, PasswordFileCredentials
from backend.embedded import start_mosquitto, stop_process, wait_for
from tests.backend.web._support import api_token, free_port, web_login
from vitals.broker import parse_broker_url

PLUGIN = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"


def _start_mosquitto(workdir: Path, conf: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    # Run as ourselves: started as root, Mosquitto would switch to the "mosquitto" user, which
    # cannot read the test's private temp folder (dynsec.json, passwd).
    import getpass

    (workdir / "mosquitto.conf").write_text(
        f"listener {port} 127.0.0.1\npersistence false\nuser {getpass.getuser()}\n{conf}"
    )
    return start_mosquitto(workdir / "mosquitto.conf", port), port


@pytest.fixture
def dynsec_broker(tmp_path: Path) -> Iterator[str]:
    if not os.path.exists(PLUGIN):
        pytest.fail(f"Mosquitto's dynamic-security plugin is missing at {PLUGIN} (Debian: apt-get install mosquitto)")
    subprocess.run(
        ["mosquitto_ctrl", "dynsec", "init", str(tmp_path / "dynsec.json"), "admin", "admin-secret-1"],
        check=True,
        capture_output=True,
    )
    proc, port = _start_mosquitto(
        tmp_path, f"allow_anonymous false\nplugin {PLUGIN}\nplugin_opt_config_file {tmp_path / 'dynsec.json'}\n"
    )
    try:
        yield f"mqtt://admin:admin-secret-1@127.0.0.1:{port}"
    finally:
        stop_process(proc)


def _connect(port: int, username: str, password: str) -> tuple[Any, list[tuple[str, bytes]]]:
    import paho.mqtt.client as mqtt

    got: list[tuple[str, bytes]] = []
    connected = threading.Event()
    result: dict[str, Any] = {}
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.username_pw_set(username, password)

    def on_connect(_c: Any, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        result["rc"] = rc
        connected.set()

    c.on_connect = on_connect
    c.on_message = lambda _c, _u, m: got.append((m.topic, m.payload))
    c.connect("127.0.0.1", port)
    c.loop_start()
    assert connected.wait(5)
    if result["rc"].is_failure:
        c.loop_stop()
        raise PermissionError(str(result["rc"]))
    return c, got


def test_enrol_redeem_once_and_acl_on_dynamic_security(
    client: Any, live: Any, world: Any, dynsec_broker: str, module_settings: Any
) -> None:
    topics = module_settings.topics
    store = DynsecCredentials(parse_broker_url(dynsec_broker), topics)
    live.app.state.credential_store = store
    try:
        admin = api_token(client, world.admin)
        agent = f"tablet-{world.tag}"
        r = client.post(
            "/api/v1/admin/agents",
            json={"agent_id": agent, "patient_ref": world.patient_ref},
            headers={"Authorization": f"Bearer {admin}"},
        )
        assert r.status_code == 200, r.text
        code = r.json()["code"]
        assert re.fullmatch(r"[2-9A-Z]{4}-[2-9A-Z]{4}-[2-9A-Z]{4}", code)
        r = client.post("/api/v1/enrolment/redeem", json={"agent_id": agent, "code": code.lower()})
        assert r.status_code == 200, r.text
        creds = r.json()
        assert creds["mqtt_username"] == agent and creds["topic_root"] == topics.root
        assert "admin-secret" not in creds["broker_url"]
        # Once only.
        assert client.post("/api/v1/enrolment/redeem", json={"agent_id": agent, "code": code}).status_code == 403
        port = parse_broker_url(dynsec_broker).port
        # A backend-side listener allowed to read every agent's measurements.
        store._run(
            [
                {
                    "command": "createRole",
                    "rolename": "ingest",
                    "acls": [{"acltype": "subscribePattern", "topic": topics.wildcard("measurements"), "allow": True},
                             {"acltype": "publishClientSend", "topic": topics.wildcard("messages"), "allow": True}],
                },
                {
                    "command": "createClient",
                    "username": "ingest",
                    "password": "ingest-pass-1",
                    "roles": [{"rolename": "ingest"}],
                },
            ]
        )
        listener, got = _connect(port, "ingest", "ingest-pass-1")
        listener.subscribe(topics.wildcard("measurements"), qos=1)
        time.sleep(0.3)
        with pytest.raises(PermissionError):
            _connect(port, agent, "wrong-password")
        tablet, tablet_got = _connect(port, agent, creds["mqtt_password"])
        tablet.publish(topics.measurements(agent), b"own", qos=1).wait_for_publish(5)
        tablet.publish(topics.measurements("someone-else"), b"forged", qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        assert got == [(topics.measurements(agent), b"own")]
        # The care team's message (retained, from the backend) reaches the enrolled tablet.
        tablet.subscribe(topics.messages(agent), qos=1)
        listener.publish(topics.messages(agent), b"hello", qos=1, retain=True).wait_for_publish(5)
        wait_for(lambda: (topics.messages(agent), b"hello") in tablet_got, timeout=10, what="the team's message")
        for c in (tablet, listener):
            c.disconnect()
            c.loop_stop()
        with __import__("psycopg").connect(module_settings.database_url) as db:
            row = db.execute("SELECT patient_id, mqtt_username FROM agents WHERE id = %s", (agent,)).fetchone()
        assert row == (world.patient_id, agent)
    finally:
        live.app.state.credential_store = None


def test_password_file_store_is_read_by_mosquitto(tmp_path: Path) -> None:
    store = PasswordFileCredentials(tmp_path / "passwd")
    store.set_agent(agent_id="tablet-pw", password="first-password")
    store.set_agent(agent_id="tablet-pw", password="second-password")
    text = (tmp_path / "passwd").read_text()
    assert text.startswith("tablet-pw:$") and "second-password" not in text
    proc, port = _start_mosquitto(tmp_path, f"allow_anonymous false\npassword_file {tmp_path / 'passwd'}\n")
    try:
        c, _ = _connect(port, "tablet-pw", "second-password")
        c.disconnect()
        c.loop_stop()
        with pytest.raises(PermissionError):
            _connect(port, "tablet-pw", "first-password")
    finally:
        stop_process(proc)


def test_admin_pages_create_team_user_device_and_show_code_once(
    client: Any, live: Any, world: Any, tmp_path: Path
) -> None:
    live.app.state.credential_store = PasswordFileCredentials(tmp_path / "passwd")
    try:
        csrf = web_login(client, world.admin)
        tag = world.tag
        r = client.post(
            "/admin/teams",
            data={
                "csrf": csrf,
                "key": f"team-{tag}",
                "name": f"Team {tag}",
                "sector": "municipal",
                "municipality": world.municipality,
            },
        )
        assert r.status_code == 200 and "Team oprettet." in r.text
        r = client.post(
            "/admin/users",
            data={
                "csrf": csrf,
                "username": f"new-{tag}",
                "display_name": "Ny",
                "role": "nurse",
                "password": "long-enough-1",
                "team_key": f"team-{tag}",
            },
        )
        assert r.status_code == 200 and f"new-{tag}" in r.text
        r = client.post(
            "/admin/users",
            data={
                "csrf": csrf,
                "username": f"bad-{tag}",
                "display_name": "X",
                "role": "nurse",
                "password": "long-enough-1",
            },
        )
        assert r.status_code == 400 and "skal høre til et team" in r.text
        r = client.post("/admin/agents", data={"csrf": csrf, "agent_id": f"pi-{tag}", "patient_ref": world.patient_ref})
        assert r.status_code == 200
        code = re.search(r'id="enrolment-code">([^<]+)<', r.text)
        assert code
        again = client.get("/admin").text
        assert code.group(1) not in again  # shown once
        r = client.post(
            "/admin/devices",
            data={"csrf": csrf, "agent_id": f"pi-{tag}", "address": "11:22:33:44:55:66", "model": "UC-352BLE"},
        )
        assert r.status_code == 200 and "Apparat registreret." in r.text
        r = client.post("/admin/places", data={"csrf": csrf, "kind": "department", "name": f"Afd {tag}"})
        assert f"Afd {tag}" in r.text
        # The admin page names no readings: it has no clinical data at all.
        assert "spo2" not in again.lower()
    finally:
        live.app.state.credential_store = None
