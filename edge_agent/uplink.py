"""The MQTT uplink: drains the spool to the broker, keeps a retained status, takes receipts.

paho-mqtt 2, MQTT v5 (3.1.1 where the broker URL says so), QoS 1.

- **Visible reconnect loop.** :meth:`Uplink._run` is the whole story: make a fresh paho client,
  connect, serve until the connection drops, log why, back off (doubling, capped), repeat.
  paho's own automatic reconnect is not used, so every attempt and its reason is in the log.
- **End-to-end acknowledgement.** Each published envelope's ``mid`` maps to the ids it carried;
  ``on_publish`` (the PUBACK) only marks those rows *sent*. A row leaves the spool when the
  backend's receipt (stored, held or dead letter) names it. Sent rows with no receipt are
  published again, oldest first and under the same id, after the spool's re-send interval
  (doubling per attempt) and on every new connection; the backend's store absorbs the repeat
  and answers with the receipt. A fresh connection also starts again from the oldest unsent
  row, so anything whose PUBACK was lost is sent again.
- **Status.** The Last Will is a retained "offline" :class:`vitals.AgentStatus`; on connect and
  every ``status_interval_s`` a retained "online" status carries the version and spool fill.
- **Receipts and plan.** ``receipts`` and the retained ``config`` (monitoring plan) are recorded
  in the spool database. A malformed message is logged and ignored, never a crash.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.settings import RESEND_AFTER_S, RESEND_MAX_S
from edge_agent.spool import Spool, SpooledRow
from vitals.broker import BrokerUrl
from vitals.errors import WireError
from vitals.wire import (
    SCHEMA_VERSION,
    AgentState,
    AgentStatus,
    MonitoringPlan,
    Receipt,
    Topics,
    parse_plan,
    parse_receipt,
    parse_team_message,
)

log = logging.getLogger(__name__)

_NO_MATCHING_SUBSCRIBERS = 0x10
"""MQTT v5 PUBACK reason: accepted, but nobody subscribes to the topic."""


def agent_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nearcare")
    except PackageNotFoundError:
        return "0+unknown"


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat()


def envelope_json(agent_id: str, measurements_json: list[str], sent_at: datetime) -> bytes:
    """A :class:`vitals.Envelope` built from already validated measurement JSON.

    The spool holds each measurement as ``Measurement.model_dump_json()``; re-validating
    thousands of them on every drain would cost more than the publish itself.
    """
    head = json.dumps({"schema": SCHEMA_VERSION, "agent_id": agent_id, "sent_at": _iso(sent_at)})
    return (head[:-1] + ', "measurements": [' + ",".join(measurements_json) + "]}").encode()


class Uplink:
    def __init__(
        self,
        *,
        agent_id: str,
        broker: BrokerUrl,
        topics: Topics,
        spool: Spool,
        version: str | None = None,
        batch_size: int = 50,
        max_inflight: int = 20,
        status_interval_s: float = 60.0,
        reconnect_min_s: float = 1.0,
        reconnect_max_s: float = 60.0,
        keepalive_s: int = 30,
        resend_after_s: float = RESEND_AFTER_S,
        resend_max_s: float = RESEND_MAX_S,
        on_receipt: Callable[[Receipt], None] | None = None,
        on_plan: Callable[[MonitoringPlan], None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.agent_id = agent_id
        self.broker = broker
        self.topics = topics
        self.spool = spool
        self.version = version or agent_version()
        self.batch_size = batch_size
        self.max_inflight = max_inflight
        self.status_interval_s = status_interval_s
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = reconnect_max_s
        self.keepalive_s = keepalive_s
        self.resend_after_s = resend_after_s
        self.resend_max_s = resend_max_s
        self.on_receipt = on_receipt
        self.on_plan = on_plan
        self.clock = clock
        self.attempts = 0
        """Connection attempts so far, successful or not."""
        self.connects = 0
        """How many times a CONNACK was accepted (for tests and the screen)."""
        self.last_error: str | None = None
        self.resent = 0
        """Readings published again because no receipt came (for tests, the bench and the log)."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._connected = threading.Event()
        # Per connection (reset by _serve): mid -> ids in that envelope.
        self._inflight: dict[int, list[uuid.UUID]] = {}
        self._cursor = 0
        self._exhausted_at: int | None = None
        self._next_resend_check = 0.0
        self._drop_connection: str | None = None
        self._connack: ReasonCode | None = None
        self._status_due = False

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> Uplink:
        self._thread = threading.Thread(target=self._run, name=f"uplink-{self.agent_id}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def wait_drained(self, timeout: float) -> bool:
        """Block until the spool is empty (the backend confirmed every reading) or ``timeout``."""
        deadline = time.monotonic() + timeout
        while self.spool.depth > 0:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def wait_sent(self, timeout: float) -> bool:
        """Block until the broker has acknowledged every reading ("Sendt"; the backend's receipt
        may still be due) or ``timeout``."""
        deadline = time.monotonic() + timeout
        while self._inflight or self.spool.fill().unsent > 0:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    # -- the reconnect loop -------------------------------------------------------------------

    def _run(self) -> None:
        delay = self.reconnect_min_s
        while not self._stop.is_set():
            client = self._new_client()
            self.attempts += 1
            try:
                log.info("uplink %s: connecting to %s", self.agent_id, self.broker.redacted())
                if self.broker.is_v5:
                    client.connect(self.broker.host, self.broker.port, keepalive=self.keepalive_s, clean_start=True)
                else:
                    client.connect(self.broker.host, self.broker.port, keepalive=self.keepalive_s)
                why = self._serve(client)
            except (OSError, ssl.SSLError, ValueError) as exc:
                why = f"cannot reach broker: {exc}"
            except Exception as exc:  # the uplink must outlive any bug in a callback or in paho
                log.exception("uplink %s: unexpected error", self.agent_id)
                why = f"unexpected error: {exc!r}"
            finally:
                self._connected.clear()
            if self._stop.is_set():
                self._goodbye(client)
                break
            if self._connack is not None and not self._connack.is_failure:
                delay = self.reconnect_min_s
            self.last_error = why
            log.warning("uplink %s: %s; reconnecting in %.1f s", self.agent_id, why, delay)
            self._stop.wait(delay)
            delay = min(delay * 2, self.reconnect_max_s)

    def _new_client(self) -> mqtt.Client:
        protocol = mqtt.MQTTv5 if self.broker.is_v5 else mqtt.MQTTv311
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"nearcare-agent-{self.agent_id}",
            protocol=protocol,
            clean_session=None if self.broker.is_v5 else True,
        )
        client.max_inflight_messages_set(self.max_inflight)
        if self.broker.username:
            client.username_pw_set(self.broker.username, self.broker.password)
        if self.broker.tls:
            client.tls_set(ca_certs=self.broker.ca_file)
        client.will_set(self.topics.status(self.agent_id), self._status(AgentState.OFFLINE), qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        self._connack = None
        return client

    def _serve(self, client: mqtt.Client) -> str:
        """Pump the spool through one connection; return why it ended."""
        self._inflight = {}
        self._cursor = 0
        self._exhausted_at = None
        self._next_resend_check = 0.0
        self._drop_connection = None
        connect_deadline = time.monotonic() + 15
        next_status = 0.0
        while not self._stop.is_set():
            busy = bool(self._inflight) or self._exhausted_at != self.spool.appends
            rc = client.loop(timeout=0.05 if busy else 0.25)
            if rc != mqtt.MQTT_ERR_SUCCESS:
                return f"connection lost ({mqtt.error_string(rc)})"
            if self._drop_connection:
                client.disconnect()
                return self._drop_connection
            if self._connack is not None and self._connack.is_failure:
                return f"broker refused the connection: {self._connack}"
            if not client.is_connected():
                if time.monotonic() > connect_deadline:
                    return "no CONNACK within 15 s"
                continue
            now = time.monotonic()
            if now >= next_status or self._status_due:
                self._status_due = False
                self._publish_status(client)
                next_status = now + self.status_interval_s
            self._pump(client)
        return "stopping"

    def _pump(self, client: mqtt.Client) -> None:
        now = time.monotonic()
        if now >= self._next_resend_check:
            # Sent with no receipt for too long: the oldest go first, before anything new.
            self._next_resend_check = now + 1.0
            if self.spool.depth > 0:
                room = (self.max_inflight - len(self._inflight)) * self.batch_size
                again = self.spool.due_again(room, after_s=self.resend_after_s, max_s=self.resend_max_s)
                if again:
                    log.info("uplink %s: no receipt yet for %d sent reading(s); sending them again",
                             self.agent_id, len(again))
                    self.resent += len(again)
                for start in range(0, len(again), self.batch_size):
                    if not self._send(client, again[start : start + self.batch_size]):
                        return
        while len(self._inflight) < self.max_inflight:
            appends = self.spool.appends
            if self._exhausted_at == appends:
                return  # nothing new since the last look: no query per loop turn while idle
            rows = self.spool.unsent(self.batch_size, after_seq=self._cursor)
            if len(rows) < self.batch_size:
                self._exhausted_at = appends
            if not rows:
                return
            if not self._send(client, rows):
                return
            self._cursor = rows[-1].seq

    def _send(self, client: mqtt.Client, rows: list[SpooledRow]) -> bool:
        payload = envelope_json(self.agent_id, [r.measurement_json for r in rows], self.clock())
        info = client.publish(self.topics.measurements(self.agent_id), payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            # Not sent; the rows stay in the spool and go out on the next connection.
            self._drop_connection = f"publish failed ({mqtt.error_string(info.rc)})"
            return False
        self._inflight[info.mid] = [r.id for r in rows]
        return True

    def _goodbye(self, client: mqtt.Client) -> None:
        """A clean stop says "offline" itself (the broker only sends the Will on a lost link)."""
        try:
            if client.is_connected():
                info = client.publish(self.topics.status(self.agent_id), self._status(AgentState.OFFLINE),
                                      qos=1, retain=True)
                deadline = time.monotonic() + 2
                while not info.is_published() and time.monotonic() < deadline:
                    client.loop(timeout=0.05)
                client.disconnect()
                client.loop(timeout=0.1)
        except Exception:  # best effort at shutdown; the Will covers the rest
            log.debug("uplink %s: clean offline failed", self.agent_id, exc_info=True)

    # -- status ---------------------------------------------------------------------------------

    def _status(self, state: AgentState) -> bytes:
        fill = self.spool.fill()
        return AgentStatus(
            agent_id=self.agent_id,
            state=state,
            at=self.clock(),
            version=self.version,
            spool_depth=fill.rows,
            spool_oldest_at=fill.oldest_at,
            spool_capacity=fill.capacity,
        ).to_json()

    def _publish_status(self, client: mqtt.Client) -> None:
        client.publish(self.topics.status(self.agent_id), self._status(AgentState.ONLINE), qos=1, retain=True)

    def publish_status_soon(self) -> None:
        """Ask for a status message on the next loop turn (e.g. when the spool turns full)."""
        self._status_due = True

    # -- paho callbacks (all run on the uplink thread, inside client.loop) ---------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        self._connack = reason
        if reason.is_failure:
            log.error("uplink %s: broker refused the connection: %s", self.agent_id, reason)
            return
        self.connects += 1
        self.last_error = None
        again = self.spool.send_again()  # receipts published while we were away are lost to us
        self._exhausted_at = None
        log.info("uplink %s: connected (%d readings waiting, %d of them sent before without a receipt)",
                 self.agent_id, self.spool.depth, again)
        client.subscribe(self.topics.receipts(self.agent_id), qos=1)
        client.subscribe(self.topics.config(self.agent_id), qos=1)
        client.subscribe(self.topics.messages(self.agent_id), qos=1)
        self._connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        self._connected.clear()
        if reason.is_failure:
            self._drop_connection = f"disconnected by broker or network: {reason}"

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode, props: Any) -> None:
        ids = self._inflight.pop(mid, None)
        if ids is None:
            return  # a status message
        if reason.is_failure:
            # e.g. "Not authorized" from the ACL: keep the readings and try again later.
            log.error("uplink %s: broker refused a batch of %d readings: %s; kept in the spool",
                      self.agent_id, len(ids), reason)
            self._drop_connection = f"broker refused a publish: {reason}"
            return
        nobody = reason.value == _NO_MATCHING_SUBSCRIBERS
        if nobody:
            # No ingest worker is subscribed right now (a broker restart forgets shared
            # subscriptions): the broker drops the batch, and the re-send interval brings it back.
            # Not an attempt the backend failed: the interval does not grow for it.
            log.info("uplink %s: broker has no ingest subscriber for %d readings; re-sending later",
                     self.agent_id, len(ids))
        try:
            self.spool.mark_sent(ids, attempt=not nobody)
        except Exception:
            log.exception("uplink %s: could not mark readings as sent (they will be sent again)", self.agent_id)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            if msg.topic == self.topics.receipts(self.agent_id):
                self._take_receipt(bytes(msg.payload))
            elif msg.topic == self.topics.config(self.agent_id):
                self._take_plan(bytes(msg.payload))
            elif msg.topic == self.topics.messages(self.agent_id):
                self._take_team_message(bytes(msg.payload))
        except Exception:
            log.exception("uplink %s: error handling %s", self.agent_id, msg.topic)

    def _take_receipt(self, payload: bytes) -> None:
        try:
            receipt = parse_receipt(payload)
        except WireError as exc:
            log.warning("uplink %s: ignoring malformed receipt: %s", self.agent_id, exc)
            return
        if receipt.agent_id != self.agent_id:
            log.warning("uplink %s: ignoring receipt addressed to agent %s", self.agent_id, receipt.agent_id)
            return
        self.spool.record_receipt(receipt)
        if self.on_receipt is not None:
            self.on_receipt(receipt)

    def _take_team_message(self, payload: bytes) -> None:
        if not payload:
            return  # a cleared retained message
        try:
            message = parse_team_message(payload)
        except WireError as exc:
            log.warning("uplink %s: ignoring malformed team message: %s", self.agent_id, exc)
            return
        if message.agent_id != self.agent_id:
            log.warning("uplink %s: ignoring team message addressed to agent %s", self.agent_id, message.agent_id)
            return
        if self.spool.save_team_message(message):
            log.info("uplink %s: message %d from the care team received", self.agent_id, message.id)

    def _take_plan(self, payload: bytes) -> None:
        if not payload:
            return  # a cleared retained message
        try:
            plan = parse_plan(payload)
        except WireError as exc:
            log.warning("uplink %s: ignoring malformed monitoring plan: %s", self.agent_id, exc)
            return
        if plan.agent_id != self.agent_id:
            log.warning("uplink %s: ignoring plan addressed to agent %s", self.agent_id, plan.agent_id)
            return
        self.spool.save_plan(plan)
        log.info("uplink %s: monitoring plan issued %s received", self.agent_id, plan.issued_at)
        if self.on_plan is not None:
            self.on_plan(plan)
