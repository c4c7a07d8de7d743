"""Messages the backend owes the tablets, kept in PostgreSQL until the broker has them.

A change that owes a tablet a message (a monitoring plan edited, a reading kvitteret) calls
:func:`enqueue` in its own transaction: the message is then sent if and only if the change
commits, whichever process made it, even one with no broker connection or one that dies right
after its commit. :class:`OutboxRelay` runs in every process that owns a
:class:`~backend.publisher.MqttPublisher`: woken by ``NOTIFY nearcare_outbox`` (and every few
seconds regardless), it claims the oldest rows with ``FOR UPDATE SKIP LOCKED``, publishes each
and waits for the PUBACK, and deletes the row in the same transaction. A crash before the
commit leaves the rows for the next relay: a tablet may see a message twice (both are
idempotent: a retained plan, a receipt by id), never lose one.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from backend.events import OUTBOX_CHANNEL, Listening
from backend.publisher import MqttPublisher, PublishError

log = logging.getLogger(__name__)


def enqueue(conn: psycopg.Connection[Any], *, topic: str, payload: bytes, retain: bool = False) -> None:
    """Queue one message in the caller's transaction (sent after its commit, never before)."""
    conn.execute("INSERT INTO mqtt_outbox (topic, payload, retain) VALUES (%s, %s, %s)", (topic, payload, retain))
    conn.execute("SELECT pg_notify(%s, '')", (OUTBOX_CHANNEL,))


class OutboxRelay(Listening):
    """A Service: relays ``mqtt_outbox`` to the broker through this process's publisher."""

    name = "outbox"
    channel = OUTBOX_CHANNEL

    def __init__(self, *, database_url: str, publisher: MqttPublisher, poll_s: float = 5.0, batch: int = 200) -> None:
        super().__init__(database_url=database_url)
        self.publisher = publisher
        self.poll_s = poll_s
        self.batch = batch
        self.relayed = 0

    def turn(self, conn: psycopg.Connection[Any]) -> float:
        self.relay(conn)
        return self.poll_s

    def relay(self, conn: psycopg.Connection[Any]) -> int:
        """Send what is waiting; return how many went out. Stops at the first refusal (the broker
        is away): the rest waits for the next turn, in order."""
        sent = 0
        while not self._stop.is_set() and self.publisher.ready()[0]:
            with conn.transaction():
                rows = conn.execute(
                    "SELECT id, topic, payload, retain FROM mqtt_outbox ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
                    (self.batch,),
                ).fetchall()
                if not rows:
                    return sent
                done = []
                try:
                    for row_id, topic, payload, retain in rows:
                        self.publisher.publish_and_wait(topic, bytes(payload), retain=retain)
                        done.append(row_id)
                except PublishError as exc:
                    log.warning("outbox: %s; %d message(s) wait for the broker", exc, len(rows) - len(done))
                    conn.execute("UPDATE mqtt_outbox SET attempts = attempts + 1 WHERE id = ANY(%s)",
                                 ([r[0] for r in rows if r[0] not in done],))
                conn.execute("DELETE FROM mqtt_outbox WHERE id = ANY(%s)", (done,))
                sent += len(done)
                self.relayed += len(done)
                if len(done) < len(rows):
                    return sent
        return sent
