"""The I/O edges of ingest: the paho consumer, the batcher and the writer thread.

Flow: paho's network thread hands each message to a queue; the decider thread decides each
through the pure core and puts it in one of two lanes (:mod:`backend.ingest.lanes`): live (someone
measuring now, a status, a dead letter) or backlog (a returning tablet's older readings). The
writer thread takes the next batch, live messages first, when it holds ``ingest_batch_size``
readings or its oldest message has waited ``ingest_batch_window_ms``, writes it in one
transaction, and only then acknowledges the messages (paho 2 ``manual_ack``) and publishes the
receipts. So a live reading waits for at most the commit in progress, never for a backlog burst
received before it.

**A worker owns no queued state.** It connects with a clean session (no session expiry) under a
fresh client id, so no reading can be stranded in a dead worker's broker session, and a worker
re-created under another host name changes nothing. What a worker held when it died (received,
not committed) is not redelivered by the broker: the agents hear no receipt for it and send it
again after their re-send interval, and a living worker stores it. A crash after the commit but
before the receipts is absorbed by the idempotent insert, which answers the re-send "stored".
A batch decided against an older registry than the writer sees at commit is decided again first.

In the batch's own transaction the writer also hands every new reading to the rules
(``rules_inbox``) and NOTIFYs the rules workers and the web processes, so nothing waits in this
process's memory for another role. After the commit: receipts to each agent through the
process's publisher (``stored``; ``held`` and ``dead_letter`` with the reason).
"""

from __future__ import annotations

import logging
import queue
import secrets
import socket
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from backend import metrics
from backend.errors import BackendError
from backend.ingest.core import DeadLetter, Decision, decide, is_live
from backend.ingest.lanes import Lanes
from backend.ingest.writer import BatchResult, prepare, write_batch
from backend.publisher import Publisher
from backend.registry.snapshot import RegistrySnapshot, load_snapshot, registry_version
from backend.settings import Settings
from vitals.wire import Receipt, ReceiptStatus, TopicKind

log = logging.getLogger(__name__)



class IngestError(BackendError):
    """Ingest could not start as configured."""


@dataclass(frozen=True, slots=True)
class Inbound:
    mid: int
    qos: int
    topic: str
    payload: bytes
    received: float  # monotonic
    generation: int  # which broker connection delivered it: an ack only means something there


@dataclass(frozen=True, slots=True)
class _Decided:
    inbound: Inbound
    decision: Decision
    registry_version: int  # the registry it was decided against


@dataclass
class _Batch:
    registry_version: int
    items: list[tuple[Inbound, Decision]] = field(default_factory=list)


class _BufferedSocket:
    """A plain TCP socket whose reads come from one large ``recv``.

    paho reads every packet with at least three ``recv`` calls (the command byte, each length
    byte, the rest): at thousands of single-reading messages a second those syscalls were the
    largest single cost of ingest's network thread. This wrapper fills a buffer with one
    ``recv`` and serves paho's small reads from it; ``pending()`` tells paho's loop that bytes
    are buffered (it asks TLS sockets the same), so it reads on without waiting in ``select``.
    Everything else is the socket's own.
    """

    __slots__ = ("_buf", "_pos", "_sock")

    CHUNK = 64 * 1024
    """Below glibc's mmap threshold: a larger recv buffer is mapped and unmapped on every call."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0

    def recv(self, bufsize: int) -> bytes:
        if self._pos >= len(self._buf):
            self._buf = self._sock.recv(self.CHUNK)  # BlockingIOError passes through to paho
            self._pos = 0
            if not self._buf:
                return b""  # the broker closed the connection
        start = self._pos
        self._pos = min(len(self._buf), start + bufsize)
        return self._buf[start : self._pos]

    def pending(self) -> int:
        return len(self._buf) - self._pos

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _IngestClient(mqtt.Client):
    DRAIN = 256
    """Packets read from the buffer per network-loop turn before writes (acks) get their go."""

    def _create_socket(self) -> Any:
        sock = super()._create_socket()
        # TLS sockets buffer records already (and have their own pending()); websockets wrap.
        if type(sock) is socket.socket:
            return _BufferedSocket(sock)
        return sock

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        # paho reads about one packet per turn of its loop (a select() and housekeeping each);
        # with the buffer full of packets, read on while they are already here.
        rc = super().loop_read(max_packets)
        sock = self._sock
        if not isinstance(sock, _BufferedSocket):
            return rc
        buffered: _BufferedSocket = sock
        for _ in range(self.DRAIN):
            if rc != mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS or buffered.pending() == 0 or buffered is not self._sock:
                break
            rc = super().loop_read(max_packets)
        return rc


def default_client_id(settings_group: str, *, role: str = "ingest", worker: int = 0) -> str:
    """Readable (role, group, host, worker number) and unique per process: a clean session needs
    no stable id, and two clients with one id would keep taking over each other (two containers
    may share a host name and both run as pid 1)."""
    return f"nearcare-{role}-{settings_group}-{socket.gethostname()}-{worker}-{secrets.token_hex(3)}"


class IngestService:
    """A Service (start/stop/ready): the consumer, the batch writer and the receipts."""

    name = "ingest"

    def __init__(
        self,
        *,
        settings: Settings,
        publisher: Publisher,
        client_id: str | None = None,
        receive_maximum: int | None = None,
    ) -> None:
        self.settings = settings
        self.publisher = publisher
        self.topics = self.settings.topics
        self.broker = self.settings.broker
        self.client_id = client_id or default_client_id(self.settings.ingest_group)
        # Unacknowledged messages are held here until their batch commits; the broker stops
        # sending at this many, which bounds memory and keeps batches full under load.
        self.receive_maximum = receive_maximum or min(65535, max(1000, self.settings.ingest_batch_size * 8))
        self._queue: queue.SimpleQueue[Inbound] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lanes: Lanes[_Decided] = Lanes()
        self._decider: threading.Thread | None = None
        self._client: mqtt.Client | None = None
        self._generation = 0
        self._connected = False
        self._subscribed = False
        self._db_ok = False
        self._db_word = "not started"
        self._conn: psycopg.Connection | None = None
        self._registry = RegistrySnapshot()
        self.batches = 0
        """Committed batches since start (tests watch it; metrics have the rest)."""

    # --- Service ----------------------------------------------------------------------------

    def start(self) -> None:
        self._client = self._make_client()
        if self.broker.is_v5:
            self._client.connect_async(
                self.broker.host,
                self.broker.port,
                keepalive=30,
                clean_start=True,
                properties=self._connect_properties(),
            )
        else:
            self._client.connect_async(self.broker.host, self.broker.port, keepalive=30)
        self._client.loop_start()
        self._decider = threading.Thread(target=self._run_decider, name="ingest-decider", daemon=True)
        self._decider.start()
        self._thread = threading.Thread(target=self._run, name=f"ingest-writer-{self.client_id}", daemon=True)
        self._thread.start()
        log.info("ingest consuming %s as %s", self.broker.redacted(), self.client_id)

    def stop(self, timeout: float = 15.0) -> None:
        """Commit what is already decided (acknowledge, receipts), then leave; whatever the broker
        still holds for this session goes with it, and its agents send it again (no receipt came)."""
        self._stop.set()
        if self._decider is not None:
            self._decider.join(timeout)
        if self._thread is not None:
            self._thread.join(timeout)
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
        if self._conn is not None:
            self._conn.close()
        metrics.INGEST_BROKER_CONNECTED.set(0)

    def ready(self) -> tuple[bool, str]:
        if not self._connected:
            return False, "broker unreachable"
        if not self._subscribed:
            return False, "subscribing"
        if not self._db_ok:
            return False, f"database: {self._db_word}"
        return True, "ok"

    # --- MQTT -------------------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        b = self.broker
        if b.is_v5:
            client = _IngestClient(
                mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5, manual_ack=True
            )
        else:
            client = _IngestClient(
                mqtt.CallbackAPIVersion.VERSION2,
                client_id=self.client_id,
                protocol=mqtt.MQTTv311,
                clean_session=True,
                manual_ack=True,
            )
        if b.username:
            client.username_pw_set(b.username, b.password)
        if b.tls:
            client.tls_set(ca_certs=b.ca_file)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.max_inflight_messages_set(1000)  # outgoing receipts
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def _connect_properties(self) -> Properties | None:
        if not self.broker.is_v5:
            return None
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0  # the session ends with the connection: see the module doc
        props.ReceiveMaximum = self.receive_maximum
        return props

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, reason_code: object, properties: object
    ) -> None:
        if getattr(reason_code, "is_failure", False):
            log.warning("broker refused ingest: %s", reason_code)
            return
        self._generation += 1
        if self.broker.is_v5:
            client.subscribe(
                [
                    (self.topics.shared(TopicKind.MEASUREMENTS, self.settings.ingest_group), SubscribeOptions(qos=1)),
                    # Not shared: every worker sees every status (retained ones too, which a shared
                    # subscription would not get); the update is idempotent on the status time.
                    (self.topics.wildcard(TopicKind.STATUS), SubscribeOptions(qos=1)),
                ]
            )
        else:
            client.subscribe(
                [(self.topics.wildcard(TopicKind.MEASUREMENTS), 1), (self.topics.wildcard(TopicKind.STATUS), 1)]
            )
        self._connected = True
        metrics.INGEST_BROKER_CONNECTED.set(1)
        log.info(
            "ingest connected to %s (session present: %s)",
            self.broker.redacted(),
            getattr(flags, "session_present", "?"),
        )

    def _on_subscribe(
        self, client: mqtt.Client, userdata: object, mid: int, reason_codes: list[Any], properties: object
    ) -> None:
        refused = [rc for rc in reason_codes if getattr(rc, "is_failure", False)]
        if refused:
            log.error("broker refused ingest's subscriptions: %s (check the broker's ACL)", refused)
            return
        self._subscribed = True

    def _on_disconnect(
        self, client: mqtt.Client, userdata: object, flags: object, reason_code: object, properties: object
    ) -> None:
        self._connected = False
        self._subscribed = False
        metrics.INGEST_BROKER_CONNECTED.set(0)
        if not self._stop.is_set():
            log.warning("ingest lost the broker (%s); reconnecting", reason_code)

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        # Runs on paho's network thread once per message: keep it to the minimum.
        metrics.INGEST_QUEUE.inc()
        self._queue.put(
            Inbound(message.mid, message.qos, message.topic, bytes(message.payload), time.monotonic(), self._generation)
        )

    # --- the writer thread ------------------------------------------------------------------

    def _run_decider(self) -> None:
        """Decide each message as it comes (while the writer commits) and put it in its lane."""
        while not self._stop.is_set():
            try:
                item = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            registry = self._registry
            now = datetime.now(UTC)
            d = self._decide(item, now, registry)
            self._lanes.put(_Decided(item, d, registry.version), readings=d.readings, received=item.received,
                            live=is_live(d, now))

    def _run(self) -> None:
        backoff = 0.2
        size, window = self.settings.ingest_batch_size, self.settings.ingest_batch_window_ms / 1000
        while True:
            stopping = self._stop.is_set() and not (self._decider is not None and self._decider.is_alive())
            decided = self._lanes.drain() if stopping else self._lanes.take(size=size, window_s=window)
            if not decided:
                if stopping:
                    return
                self._idle_check()
                continue
            versions = {x.registry_version for x in decided}
            batch = _Batch(registry_version=versions.pop() if len(versions) == 1 else -1,
                           items=[(x.inbound, x.decision) for x in decided])
            while True:
                try:
                    self._commit(batch)
                    backoff = 0.2
                    break
                except (psycopg.OperationalError, psycopg.errors.TransactionRollback) as exc:
                    # Nothing was acknowledged: the same batch is retried, and if this process
                    # dies or stops meanwhile its agents re-send it (no receipt came).
                    self._db_failed(exc)
                    metrics.INGEST_STORE_ERRORS.labels(type(exc).__name__).inc()
                except Exception:
                    log.exception("ingest batch failed unexpectedly; retrying")
                if self._stop.is_set():
                    return
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def _idle_check(self) -> None:
        """Keep /readyz honest while no traffic flows."""
        try:
            self._ensure_db()
        except psycopg.OperationalError as exc:
            self._db_failed(exc)

    def _ensure_db(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            if self._conn is not None:
                self._conn.close()
            self._conn = psycopg.connect(self.settings.database_url, autocommit=True, connect_timeout=5)
            prepare(self._conn)
            self._registry = load_snapshot(self._conn)
        else:
            version = registry_version(self._conn)
            if version != self._registry.version:
                self._registry = load_snapshot(self._conn)
        self._db_ok, self._db_word = True, "ok"
        return self._conn

    def _db_failed(self, exc: BaseException) -> None:
        if self._db_ok:
            log.warning("ingest database error (%s: %s); retrying with backoff", type(exc).__name__, exc)
        self._db_ok, self._db_word = False, type(exc).__name__
        if self._conn is not None and (self._conn.closed or self._conn.broken):
            self._conn.close()
            self._conn = None

    def _decide(self, item: Inbound, now: datetime, registry: RegistrySnapshot) -> Decision:
        try:
            return decide(item.topic, item.payload, topics=self.topics, registry=registry, now=now)
        except Exception as exc:  # the core never raises by design; if it does, keep the bytes
            log.exception("ingest core failed on a message from %s", item.topic)
            return Decision(
                dead_letter=DeadLetter(
                    item.topic, None, item.payload, f"ingest error: {type(exc).__name__}: {exc}", "payload"
                )
            )

    def _commit(self, batch: _Batch) -> None:
        conn = self._ensure_db()
        if batch.registry_version != self._registry.version:
            # Decided against an older registry (an enrolment or a rebinding since): decide
            # again, so no reading is attributed or refused through a stale binding.
            registry, now = self._registry, datetime.now(UTC)
            batch.items = [(item, self._decide(item, now, registry)) for item, _ in batch.items]
            batch.registry_version = registry.version
        decisions = [d for _, d in batch.items]
        received_at = datetime.now(UTC)
        t0 = time.perf_counter()
        try:
            result = write_batch(conn, decisions, received_at=received_at)
        except (psycopg.OperationalError, psycopg.errors.TransactionRollback):
            raise
        except psycopg.Error as exc:
            # Not transient: one message in the batch cannot be stored. Find it, keep it as a
            # dead letter, and store the rest, so one poison payload never stops the consumer.
            log.warning("batch refused by the database (%s); storing message by message", exc)
            metrics.INGEST_STORE_ERRORS.labels(type(exc).__name__).inc()
            result = self._commit_one_by_one(conn, batch, received_at)
        elapsed = time.perf_counter() - t0
        self._acknowledge(batch.items)
        self.batches += 1
        self._account(batch, result, elapsed)
        self._send_receipts(batch)

    def _commit_one_by_one(self, conn: psycopg.Connection, batch: _Batch, received_at: datetime) -> BatchResult:
        stored = []
        dup = held = dead = statuses = 0
        for item, d in batch.items:
            try:
                r = write_batch(conn, [d], received_at=received_at)
            except (psycopg.OperationalError, psycopg.errors.TransactionRollback):
                raise
            except psycopg.Error as exc:
                dl = DeadLetter(item.topic, d.agent_id, item.payload, f"could not be stored: {exc}".strip(), "store")
                r = write_batch(conn, [Decision(agent_id=d.agent_id, dead_letter=dl)], received_at=received_at)
            stored.extend(r.stored)
            dup += r.duplicates
            held += r.held
            dead += r.dead_letters
            statuses += r.statuses
        stored.sort(key=lambda s: (s.patient_id, s.measured_at))
        return BatchResult(stored=stored, duplicates=dup, held=held, dead_letters=dead, statuses=statuses)

    def _acknowledge(self, items: Iterable[tuple[Inbound, Decision]]) -> None:
        client = self._client
        n = 0
        for item, _ in items:
            n += 1
            # An ack on a later connection would name another message; the broker redelivers
            # this one: its agent re-sends it (no receipt), and the idempotent insert absorbs any repeat.
            if client is not None and item.qos > 0 and item.generation == self._generation:
                client.ack(item.mid, item.qos)
        metrics.INGEST_QUEUE.dec(n)

    def _account(self, batch: _Batch, result: BatchResult, elapsed: float) -> None:
        metrics.INGEST_COMMIT_SECONDS.observe(elapsed)
        metrics.INGEST_BATCH_SIZE.observe(len(result.stored) + result.duplicates + result.held)
        metrics.INGEST_READINGS.labels("stored").inc(len(result.stored))
        metrics.INGEST_READINGS.labels("duplicate").inc(result.duplicates)
        metrics.INGEST_READINGS.labels("rejected").inc(result.held)
        now = time.monotonic()
        metrics.INGEST_LAG_SECONDS.set(max(now - item.received for item, _ in batch.items))
        for item, d in batch.items:
            kind = item.topic.rsplit("/", 1)[-1]
            metrics.INGEST_MESSAGES.labels(kind if kind in ("measurements", "status") else "other").inc()
            if d.dead_letter is not None:
                metrics.INGEST_DEAD_LETTERS.labels(d.dead_letter.field or "payload").inc()

    def _send_receipts(self, batch: _Batch) -> None:
        """After the commit: one receipt per agent and outcome names every reading of the batch
        (a repeat of a stored reading is answered "stored" again), so each agent lets go of
        exactly what is on record. A lost receipt costs a re-send, never a reading."""
        at = datetime.now(UTC)
        try:
            for receipt in receipts_for(batch_decisions=[d for _, d in batch.items], at=at):
                self.publisher.publish(self.topics.receipts(receipt.agent_id), receipt.to_json())
        except Exception:  # the agent re-sends what it hears nothing about; the reading is stored
            log.exception("publishing receipts failed")


def receipts_for(*, batch_decisions: Iterable[Decision], at: datetime) -> list[Receipt]:
    """The receipts one committed batch owes its agents: stored, held (per reason), dead letter."""
    stored: dict[str, list[uuid.UUID]] = defaultdict(list)
    held: dict[tuple[str, str], list[uuid.UUID]] = defaultdict(list)
    dead: dict[tuple[str, str], list[uuid.UUID]] = defaultdict(list)
    for d in batch_decisions:
        if d.agent_id is None:
            continue
        for r in d.accepted:
            stored[d.agent_id].append(r.id)
        for h in d.held:
            held[(d.agent_id, h.reason)].append(h.id)
        dl = d.dead_letter
        if dl is not None and dl.agent_id is not None and dl.topic.endswith("/measurements"):
            ids = dl.reading_ids()
            if ids:
                dead[(dl.agent_id, dl.reason)].extend(ids)
    out = [Receipt(agent_id=a, status=ReceiptStatus.STORED, ids=tuple(ids), at=at) for a, ids in stored.items()]
    out += [Receipt(agent_id=a, status=ReceiptStatus.HELD, ids=tuple(ids), at=at, reason=why)
            for (a, why), ids in held.items()]
    out += [Receipt(agent_id=a, status=ReceiptStatus.DEAD_LETTER, ids=tuple(ids), at=at, reason=why[:500])
            for (a, why), ids in dead.items()]
    return out
