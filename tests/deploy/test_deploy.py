"""The deploy/ files, validated with what runs here: Mosquitto itself (with the production
config, ACL and a real password file, over TLS), systemd's own verifier, and YAML parsing of
the compose file (Docker does not run on this machine)."""

from __future__ import annotations

import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml

from backend.embedded import free_port, start_mosquitto, stop_process, wait_port
from backend.errors import BackendError
from backend.roles import PRODUCTION_TOPOLOGY

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"




def test_compose_file_is_complete() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"db", "broker", "migrate", "proxy", *PRODUCTION_TOPOLOGY}
    assert services["db"]["image"].startswith("timescale/timescaledb")
    assert services["broker"]["image"].startswith("eclipse-mosquitto:2")
    assert services["migrate"]["command"] == ["nearcare", "backend", "migrate"]
    # Role for role, as many as the topology test starts, each running its own role only.
    for role, count in PRODUCTION_TOPOLOGY.items():
        assert services[role]["command"][:3] == ["nearcare", "backend", role], role
        assert services[role].get("deploy", {}).get("replicas", 1) == count, role
        assert services[role]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    referenced = set(re.findall(r"\$\{(NEARCARE_[A-Z_]+)", (DEPLOY / "compose.yaml").read_text()))
    documented = {
        line.split("=", 1)[0] for line in (DEPLOY / "env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert referenced == documented
    # TLS terminates at the proxy: the api publishes no port and believes only the proxy's
    # X-Forwarded-For (issue 12).
    proxy, api = services["proxy"], services["api"]
    assert proxy["image"].startswith("caddy:2") and "443:443" in proxy["ports"]
    assert "ports" not in api
    proxy_ip = proxy["networks"]["default"]["ipv4_address"]
    assert api["environment"]["NEARCARE_TRUSTED_PROXIES"] == f'["{proxy_ip}"]'
    assert api["environment"]["NEARCARE_SECRET_KEY"] == services["migrate"]["environment"]["NEARCARE_SECRET_KEY"]
    caddyfile = (DEPLOY / "caddy" / "Caddyfile").read_text()
    assert "reverse_proxy api:8000" in caddyfile and "frame-ancestors 'none'" in caddyfile
    assert "Strict-Transport-Security" in caddyfile and "max_size 1MB" in caddyfile
    for mount in compose["services"]["broker"]["volumes"]:
        source = mount.split(":", 1)[0]
        if source.startswith("./mosquitto/") and not source.endswith("passwd"):
            assert (DEPLOY / source).exists(), source


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize("unit", sorted(p.name for p in (DEPLOY / "systemd").glob("*.service")))
def test_systemd_units_verify(unit: str, tmp_path: Path) -> None:
    # The verifier insists that ExecStart binaries exist: point them at this checkout's venv.
    text = (DEPLOY / "systemd" / unit).read_text()
    text = text.replace("/opt/nearcare/venv/bin/", str(Path(sys.executable).parent) + "/")
    instance = unit.replace("@.service", "@1.service")  # a template is verified as an instance
    for other in (DEPLOY / "systemd").glob("*.service"):  # Requires= names a unit beside it
        (tmp_path / other.name).write_text(other.read_text().replace("/opt/nearcare/venv/bin/",
                                                                     str(Path(sys.executable).parent) + "/"))
    (tmp_path / instance).write_text(text)
    out = subprocess.run(["systemd-analyze", "verify", str(tmp_path / instance)], capture_output=True, text=True,
                         cwd=tmp_path)
    problems = [
        line for line in (out.stdout + out.stderr).splitlines()
        if instance in line and "not executable" not in line and "User=" not in line
    ]
    assert problems == []


def test_systemd_units_run_the_roles_of_the_topology() -> None:
    units = {p.name: p.read_text() for p in (DEPLOY / "systemd").glob("nearcare-*.service")}
    for role in PRODUCTION_TOPOLOGY:
        name = f"nearcare-{role}.service" if role == "api" else f"nearcare-{role}@.service"
        assert f"nearcare backend {role}" in units[name], name
        assert "Requires=nearcare-migrate.service" in units[name]
    assert "nearcare backend migrate" in units["nearcare-migrate.service"]


def _certs(tmp: Path) -> None:
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=tmp, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=nearcare-test-ca",
        "-keyout", "ca.key", "-out", "ca.crt")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key",
        "-out", "server.csr")
    (tmp / "san.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-extfile", "san.cnf", "-out", "server.crt")


@pytest.fixture
def production_broker():  # type: ignore[no-untyped-def]
    """Mosquitto running deploy/mosquitto/mosquitto.conf and acl, only paths and ports changed."""
    # Started as root, mosquitto drops to its own user: the files must be readable by it.
    tmp_path = Path(tempfile.mkdtemp(prefix="nearcare-deploy-"))
    tmp_path.chmod(0o755)
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make the test certificates (apt-get install openssl)")
    _certs(tmp_path)
    passwd = tmp_path / "passwd"
    for i, (user, pw) in enumerate([("nearcare-backend", "backend-pw"), ("agent-a", "a-pw"), ("agent-b", "b-pw")]):
        flags = ["-c"] if i == 0 else []
        subprocess.run(["mosquitto_passwd", *flags, "-b", str(passwd), user, pw], check=True, capture_output=True)
    tls_port, plain_port = free_port(), free_port()
    conf = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text()
    conf = conf.replace("listener 8883", f"listener {tls_port} 127.0.0.1")
    conf = conf.replace("listener 1883", f"listener {plain_port} 127.0.0.1")
    conf = conf.replace("/mosquitto/certs/", f"{tmp_path}/").replace("/mosquitto/data/", f"{tmp_path}/")
    conf = conf.replace("/mosquitto/config/passwd", str(passwd))
    conf = conf.replace("/mosquitto/config/acl", str(DEPLOY / "mosquitto" / "acl"))
    conf_path = tmp_path / "mosquitto.conf"
    conf_path.write_text(conf)
    for f in tmp_path.iterdir():
        f.chmod(0o644)
    try:
        proc = start_mosquitto(conf_path, tls_port, timeout=30)
        wait_port(plain_port, timeout=30, proc=proc)  # the second listener opens a moment later
    except BackendError as exc:
        pytest.fail(f"mosquitto refused deploy/mosquitto/mosquitto.conf: {exc}")
    yield tmp_path, tls_port, plain_port
    stop_process(proc)
    shutil.rmtree(tmp_path, ignore_errors=True)


def _client(user: str, pw: str, port: int, ca: Path | None) -> tuple[mqtt.Client, int]:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, client_id=f"{user}-{time.monotonic_ns()}")
    c.username_pw_set(user, pw)
    if ca is not None:
        c.tls_set(ca_certs=str(ca), tls_version=ssl.PROTOCOL_TLS_CLIENT)
    result: dict[str, int] = {}
    done = threading.Event()

    def on_connect(client, userdata, flags, reason_code, properties):  # type: ignore[no-untyped-def]
        result["rc"] = reason_code.value
        done.set()

    c.on_connect = on_connect
    c.connect("127.0.0.1", port)
    c.loop_start()
    done.wait(5)
    return c, result.get("rc", -1)


def test_production_acl_confines_each_agent_to_its_own_topics(production_broker) -> None:  # type: ignore[no-untyped-def]
    certs, tls_port, plain_port = production_broker
    received: list[tuple[str, bytes]] = []
    backend, rc = _client("nearcare-backend", "backend-pw", plain_port, None)
    assert rc == 0
    backend.on_message = lambda c, u, m: received.append((m.topic, m.payload))
    granted: list[int] = []
    backend.on_subscribe = lambda c, u, mid, codes, props: granted.extend(rc.value for rc in codes)
    # As the ingest workers do: an MQTT v5 shared subscription.
    backend.subscribe("$share/ingest/nearcare/v1/agents/+/measurements", qos=1)
    time.sleep(0.3)
    assert granted == [1], f"the backend's shared subscription was refused: {granted}"

    agent_a, rc = _client("agent-a", "a-pw", tls_port, certs / "ca.crt")
    assert rc == 0, "agent-a could not connect over TLS with its own credentials"
    agent_a.publish("nearcare/v1/agents/agent-a/measurements", b"own", qos=1).wait_for_publish(5)
    # Mosquitto acknowledges a denied QoS 1 publish but does not deliver it.
    agent_a.publish("nearcare/v1/agents/agent-b/measurements", b"spoofed", qos=1).wait_for_publish(5)
    deadline = time.monotonic() + 3
    while not received and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    assert received == [("nearcare/v1/agents/agent-a/measurements", b"own")]

    # The agent may not read another agent's receipts.
    snooped: list[bytes] = []
    agent_a.on_message = lambda c, u, m: snooped.append(m.payload)
    agent_a.subscribe("nearcare/v1/agents/agent-b/receipts", qos=1)
    time.sleep(0.3)
    backend.publish("nearcare/v1/agents/agent-b/receipts", b"for b", qos=1).wait_for_publish(5)
    time.sleep(0.5)
    assert snooped == []

    _, bad_rc = _client("agent-a", "wrong-pw", tls_port, certs / "ca.crt")
    assert bad_rc != 0, "a wrong password was accepted"
    for c in (backend, agent_a):
        c.loop_stop()
        c.disconnect()
