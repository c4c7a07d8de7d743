"""Fixtures for ingest tests: registry helpers, a running ingest service, an MQTT publisher,
and a private Mosquitto with per-agent passwords and ACLs."""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest

from backend.embedded import wait_for
from vitals.wire import new_measurement_id


@dataclass(frozen=True)
class Home:
    agent_id: str
    patient_id: int
    device_id: int
    address: str


@pytest.fixture
def make_home(database_url: str) -> Callable[..., Home]:
    """An enrolled agent bound to a new patient, with one registered device."""
    from backend import registry

    def make(*, prefix: str = "home", address: str = "5C:F8:21:0A:11:22", bound: bool = True) -> Home:
        tag = secrets.token_hex(4)
        with psycopg.connect(database_url, autocommit=True) as conn:
            p = registry.create_patient(
                conn, external_ref=f"{prefix}-{tag}", name=f"Borger {tag}", programme="copd", municipality="Aarhus"
            )
            a = registry.enrol_agent(conn, agent_id=f"{prefix}-{tag}", patient_id=p.id if bound else None)
            d = registry.register_device(conn, agent_id=a.id, address=address, model="UA-651BLE")
        return Home(a.id, p.id, d.id, d.address)

    return make


def envelope(agent_id: str, n: int = 1, *, address: str = "5C:F8:21:0A:11:22", kind: str = "spo2",
             value: float = 95.0, ids: list[uuid.UUID] | None = None, at: datetime | None = None) -> dict[str, Any]:
    at = at or datetime.now(UTC) - timedelta(minutes=1)
    ms = []
    for i in range(n):
        mid = ids[i] if ids else new_measurement_id()
        ms.append({
            "id": str(mid), "kind": kind, "values": {kind: value}, "unit": {"spo2": "%", "pulse": "/min"}[kind],
            "measured_at": (at + timedelta(milliseconds=i)).isoformat(), "device_clock_trusted": True,
            "received_at": at.isoformat(), "device": {"address": address},
        })
    return {"schema": "1.0", "agent_id": agent_id, "sent_at": datetime.now(UTC).isoformat(), "measurements": ms}


@pytest.fixture
def make_envelope() -> Callable[..., dict[str, Any]]:
    return envelope


class Publisher:
    """A QoS 1 publisher that waits for every PUBACK."""

    def __init__(self, url: str, *, username: str | None = None, password: str | None = None,
                 client_id: str = "") -> None:
        from vitals.broker import parse_broker_url

        b = parse_broker_url(url)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if username:
            self.client.username_pw_set(username, password)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.connect(b.host, b.port, keepalive=30)
        self.client.loop_start()
        deadline = time.monotonic() + 10
        while not self.client.is_connected():
            if time.monotonic() > deadline:
                raise RuntimeError(f"publisher could not connect to {url}")
            time.sleep(0.01)

    def publish(self, topic: str, payload: bytes | dict[str, Any], *, wait: bool = True) -> mqtt.MQTTMessageInfo:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        info = self.client.publish(topic, raw, qos=1)
        if wait:
            info.wait_for_publish(10)
        return info

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def publisher(mqtt_url: str) -> Iterator[Publisher]:
    p = Publisher(mqtt_url)
    try:
        yield p
    finally:
        p.close()


@pytest.fixture
def make_publisher() -> Iterator[Callable[..., Publisher]]:
    made: list[Publisher] = []

    def make(url: str, **kw: Any) -> Publisher:
        p = Publisher(url, **kw)
        made.append(p)
        return p

    try:
        yield make
    finally:
        for p in made:
            p.close()


@pytest.fixture
def start_ingest(database_url: str) -> Iterator[Callable[..., Any]]:
    """Start an in-process IngestService (with its own broker publisher for the receipts) for the
    given settings; stopped after the test."""
    from backend.ingest.service import IngestService
    from backend.publisher import MqttPublisher

    started: list[tuple[Any, Any]] = []

    def start(settings: Any, **kw: Any) -> Any:
        publisher = MqttPublisher(broker=settings.broker, role="test-ingest")
        publisher.start()
        kw.setdefault("client_id", f"test-ingest-{secrets.token_hex(4)}")
        service = IngestService(settings=settings, publisher=publisher, **kw)
        service.start()
        started.append((service, publisher))
        wait_for(lambda: service.ready()[0] and publisher.ready()[0], what="ingest ready")
        return service

    try:
        yield start
    finally:
        for service, publisher in reversed(started):
            service.stop()
            publisher.stop()


@pytest.fixture
def wait() -> Callable[..., Any]:
    """``wait(condition, timeout=, what=)``: :func:`backend.embedded.wait_for`."""
    return wait_for


def count(database_url: str, sql: str, params: Any = None) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(sql, params).fetchone()
    return int(row[0]) if row else 0


@pytest.fixture
def db_count(database_url: str) -> Callable[..., int]:
    return lambda sql, params=None: count(database_url, sql, params)


# --- a private Mosquitto ---------------------------------------------------------------------


@pytest.fixture
def own_broker(private_broker_factory: Callable[..., Any]) -> Callable[..., Any]:
    """A private Mosquitto with a config of our own (the shared one keeps the defaults, which
    drop QoS 1 messages beyond 1000 queued per offline session): ``own_broker(conf, files)``."""
    return private_broker_factory



