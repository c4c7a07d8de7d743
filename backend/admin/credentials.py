"""Per-agent MQTT credentials on the broker.

Two stores, same protocol:

- :class:`DynsecCredentials`: Mosquitto's dynamic-security plugin, driven over MQTT on
  ``$CONTROL/dynamic-security/v1`` with an admin account (no broker restart needed). Each agent
  gets a client (username = agent id) and a role allowing only its own topics.
- :class:`PasswordFileCredentials`: a ``mosquitto_passwd`` file (the deploy/ setup, whose ACL
  patterns already confine ``%u`` to its own agent id). Mosquitto reloads it on SIGHUP.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Any, Protocol

from backend.errors import BackendError
from vitals.broker import BrokerUrl
from vitals.wire import Topics

log = logging.getLogger(__name__)

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = "$CONTROL/dynamic-security/v1/response"


class CredentialError(BackendError):
    """The broker refused or could not be reached to change an agent's credentials."""


class CredentialStore(Protocol):
    def set_agent(self, *, agent_id: str, password: str) -> None:
        """Create the agent's broker account (or change its password), confined to its topics."""
        ...

    def disable_agent(self, *, agent_id: str) -> None: ...


def agent_acls(topics: Topics, agent_id: str) -> list[dict[str, Any]]:
    return [
        {"acltype": "publishClientSend", "topic": topics.measurements(agent_id), "allow": True},
        {"acltype": "publishClientSend", "topic": topics.status(agent_id), "allow": True},
        {"acltype": "subscribePattern", "topic": topics.receipts(agent_id), "allow": True},
        {"acltype": "subscribePattern", "topic": topics.config(agent_id), "allow": True},
        {"acltype": "subscribePattern", "topic": topics.messages(agent_id), "allow": True},
        {"acltype": "publishClientReceive", "topic": topics.receipts(agent_id), "allow": True},
        {"acltype": "publishClientReceive", "topic": topics.config(agent_id), "allow": True},
        {"acltype": "publishClientReceive", "topic": topics.messages(agent_id), "allow": True},
    ]


class DynsecCredentials:
    """Commands to the dynamic-security plugin; each call waits for the plugin's answer."""

    def __init__(self, admin: BrokerUrl, topics: Topics, *, timeout_s: float = 10.0) -> None:
        if not admin.username:
            raise CredentialError("the dynamic-security admin URL needs a username and password")
        self.admin = admin
        self.topics = topics
        self.timeout_s = timeout_s

    def _run(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        import paho.mqtt.client as mqtt

        done = threading.Event()
        connected = threading.Event()
        result: dict[str, Any] = {}
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"nearcare-admin-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5
        )
        client.username_pw_set(self.admin.username, self.admin.password)
        if self.admin.tls:
            client.tls_set(ca_certs=self.admin.ca_file)

        def on_connect(c: Any, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
            if rc.is_failure:
                result["error"] = f"broker refused the admin login: {rc}"
                done.set()
                return
            c.subscribe(RESPONSE_TOPIC, qos=1)

        def on_subscribe(c: Any, *_a: Any) -> None:
            connected.set()
            c.publish(CONTROL_TOPIC, json.dumps({"commands": commands}), qos=1)

        def on_message(_c: Any, _u: Any, msg: Any) -> None:
            try:
                result["responses"] = json.loads(msg.payload)["responses"]
            except (ValueError, KeyError) as exc:
                result["error"] = f"unreadable dynamic-security response: {exc}"
            done.set()

        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = on_message
        try:
            client.connect(self.admin.host, self.admin.port, keepalive=30)
        except OSError as exc:
            raise CredentialError(f"cannot reach the broker at {self.admin.host}:{self.admin.port}: {exc}") from exc
        client.loop_start()
        try:
            if not done.wait(self.timeout_s):
                raise CredentialError("no answer from the dynamic-security plugin (is it loaded?)")
        finally:
            client.disconnect()
            client.loop_stop()
        if "error" in result:
            raise CredentialError(result["error"])
        return list(result.get("responses", []))

    def set_agent(self, *, agent_id: str, password: str) -> None:
        role = f"nearcare-agent-{agent_id}"
        responses = self._run(
            [
                {"command": "createRole", "rolename": role, "acls": agent_acls(self.topics, agent_id)},
                {"command": "createClient", "username": agent_id, "password": password, "roles": [{"rolename": role}]},
            ]
        )
        errors = [r.get("error") for r in responses if r.get("error")]
        # An existing agent is re-enrolled (or redeems its code): keep its client and role, set
        # the new password and make sure it is enabled.
        if any(e and "already exists" in e for e in errors):
            responses = self._run(
                [
                    {"command": "setClientPassword", "username": agent_id, "password": password},
                    {"command": "enableClient", "username": agent_id},
                ]
            )
            errors = [r.get("error") for r in responses if r.get("error")]
        if errors:
            raise CredentialError(f"dynamic-security refused: {'; '.join(map(str, errors))}")

    def disable_agent(self, *, agent_id: str) -> None:
        responses = self._run([{"command": "disableClient", "username": agent_id}])
        errors = [r.get("error") for r in responses if r.get("error")]
        if errors:
            raise CredentialError(f"dynamic-security refused: {'; '.join(map(str, errors))}")


class PasswordFileCredentials:
    """``mosquitto_passwd -b`` on the broker's password file (hashes only, never plaintext)."""

    def __init__(self, password_file: str | Path, *, binary: str | None = None) -> None:
        self.path = Path(password_file)
        self.binary = binary or shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
        self._lock = threading.Lock()

    def set_agent(self, *, agent_id: str, password: str) -> None:
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch(mode=0o600, exist_ok=True)
            proc = subprocess.run(
                [self.binary, "-b", str(self.path), agent_id, password],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        if proc.returncode != 0:
            raise CredentialError(f"mosquitto_passwd failed: {proc.stderr.strip() or proc.stdout.strip()}")

    def disable_agent(self, *, agent_id: str) -> None:
        with self._lock:
            proc = subprocess.run(
                [self.binary, "-D", str(self.path), agent_id], capture_output=True, text=True, timeout=30, check=False
            )
        if proc.returncode != 0:
            raise CredentialError(f"mosquitto_passwd failed: {proc.stderr.strip() or proc.stdout.strip()}")
