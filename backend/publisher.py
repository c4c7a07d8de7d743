"""The broker connection every backend process owns, for what the backend sends to the tablets.

A :class:`MqttPublisher` is one paho client (MQTT v5 where the URL says so) with a clean session
and paho's own reconnect, started and stopped as a service. It only publishes: receipts from
ingest, and what :mod:`backend.outbox` relays (monitoring plans, "seen by nurse" receipts).
:meth:`publish_and_wait` returns only after the broker's PUBACK, so a caller that deletes its
own durable copy afterwards never loses a message to a connection that dropped.
"""

from __future__ import annotations

import logging
import secrets
import socket
import threading
from typing import Protocol

import paho.mqtt.client as mqtt

from backend.errors import BackendError
from vitals.broker import BrokerUrl

log = logging.getLogger(__name__)


class PublishError(BackendError):
    """The broker did not take a message (not connected, refused, or no PUBACK in time)."""


class Publisher(Protocol):
    """Publishes to the broker from the backend (receipts, retained monitoring plans)."""

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None: ...


class MqttPublisher:
    """A Service and a :class:`Publisher`."""

    name = "publisher"

    def __init__(self, *, broker: BrokerUrl, role: str, max_inflight: int = 1000) -> None:
        self.broker = broker
        self.client_id = f"nearcare-{role}-pub-{socket.gethostname()}-{secrets.token_hex(3)}"
        self._connected = threading.Event()
        protocol = mqtt.MQTTv5 if broker.is_v5 else mqtt.MQTTv311
        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=protocol,
            clean_session=None if broker.is_v5 else True,
        )
        if broker.username:
            self._client.username_pw_set(broker.username, broker.password)
        if broker.tls:
            self._client.tls_set(ca_certs=broker.ca_file)
        self._client.max_inflight_messages_set(max_inflight)
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._started = False

    def start(self) -> None:
        if self.broker.is_v5:
            self._client.connect_async(self.broker.host, self.broker.port, keepalive=30, clean_start=True)
        else:
            self._client.connect_async(self.broker.host, self.broker.port, keepalive=30)
        self._client.loop_start()
        self._started = True

    def stop(self) -> None:
        if self._started:
            self._client.disconnect()
            self._client.loop_stop()
            self._started = False

    def ready(self) -> tuple[bool, str]:
        return (True, "ok") if self._connected.is_set() else (False, "broker unreachable")

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        """Hand the message to paho (queued while reconnecting); never blocks."""
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise PublishError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")

    def publish_and_wait(self, topic: str, payload: bytes, *, retain: bool = False, timeout: float = 10.0) -> None:
        """QoS 1, and return only once the broker has it (PUBACK); raise :class:`PublishError` otherwise."""
        if not self._connected.is_set():
            raise PublishError("not connected to the broker")
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise PublishError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError) as exc:
            raise PublishError(f"publish to {topic} failed: {exc}") from None
        if not info.is_published():
            raise PublishError(f"no PUBACK for {topic} within {timeout:g} s")

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, reason: object,
                    props: object) -> None:
        if getattr(reason, "is_failure", False):
            log.error("broker refused the %s connection: %s", self.client_id, reason)
            return
        self._connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object, reason: object,
                       props: object) -> None:
        self._connected.clear()
