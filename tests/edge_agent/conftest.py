"""Fixtures for the edge agent's tests: a real MQTT subscriber and measurement factories."""

from __future__ import annotations

import json
import secrets
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
import pytest

from backend.embedded import WaitTimedOut, wait_for
from vitals.broker import BrokerUrl, parse_broker_url
from vitals.wire import Device, Measurement, new_measurement_id


class Collector:
    """Subscribes to a topic filter on a real broker and keeps every message."""

    def __init__(self, broker: BrokerUrl, topic: str) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"collector-{secrets.token_hex(4)}",
                                  protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("collector could not subscribe")

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def payloads(self, suffix: str = "") -> list[dict]:
        with self._lock:
            return [json.loads(p) for t, p, _ in self.messages if t.endswith(suffix) and p]

    def measurement_ids(self) -> list[uuid.UUID]:
        return [uuid.UUID(m["id"]) for env in self.payloads("/measurements") for m in env["measurements"]]

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Whether ``predicate`` held within ``timeout`` s (callers assert it with their own message)."""
        try:
            return bool(wait_for(predicate, timeout=timeout, what="the collected messages"))
        except WaitTimedOut:
            return False

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def collect() -> Iterator[Callable[..., Collector]]:
    made: list[Collector] = []

    def make(broker: BrokerUrl | str, topic: str) -> Collector:
        c = Collector(parse_broker_url(broker) if isinstance(broker, str) else broker, topic)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def agent_id() -> str:
    return f"test-agent-{secrets.token_hex(4)}"


@pytest.fixture
def make_measurement() -> Callable[..., Measurement]:
    def make(spo2: float = 95.0) -> Measurement:
        now = datetime.now(UTC)
        return Measurement(
            id=new_measurement_id(),
            kind="spo2",
            values={"spo2": spo2},
            unit="%",
            measured_at=now,
            device_clock_trusted=False,
            received_at=now,
            device=Device(address="00:1C:05:00:00:01", model="Nonin 3230"),
        )

    return make
