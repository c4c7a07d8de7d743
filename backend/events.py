"""Events between the backend's processes, and the in-process hub the live worklist reads.

Across processes every event is a PostgreSQL ``NOTIFY``, sent in the transaction of the change
it announces (so it arrives only if the change commits): alert transitions and stored readings
on :data:`EVENTS_CHANNEL` (JSON ``{"type": …, "data": …}``), new work for the rules on
:data:`READINGS_CHANNEL`, messages owed to the tablets on :data:`OUTBOX_CHANNEL`. Each web
process LISTENs on the events channel and republishes on its :class:`EventHub`.

The hub is thread-safe, because listeners run in threads while the web serves on asyncio.
A slow listener loses nothing durable: events only say "look again"; the database is the truth.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import psycopg

log = logging.getLogger(__name__)

EVENTS_CHANNEL = "nearcare_alerts"
"""Alert transitions and stored readings, for the live worklist (the name predates readings)."""
READINGS_CHANNEL = "nearcare_readings"
"""Stored readings are waiting in ``rules_inbox``."""
OUTBOX_CHANNEL = "nearcare_outbox"
"""Messages for the tablets are waiting in ``mqtt_outbox``."""


@dataclass(frozen=True, slots=True)
class Event:
    type: str  # e.g. "alert.opened", "alert.updated", "alert.acknowledged", "reading.stored"
    data: dict[str, Any] = field(default_factory=dict)


class EventHub:
    def __init__(self, *, queue_size: int = 1000) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue[Event]]] = []
        self._queue_size = queue_size

    def publish(self, event: Event) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for loop, queue in subscribers:
            loop.call_soon_threadsafe(_offer, queue, event)

    def subscribe(self) -> asyncio.Queue[Event]:
        """Call from the event loop that will read the queue."""
        queue: asyncio.Queue[Event] = asyncio.Queue(self._queue_size)
        with self._lock:
            self._subscribers.append((asyncio.get_running_loop(), queue))
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        with self._lock:
            self._subscribers = [(lp, q) for lp, q in self._subscribers if q is not queue]


def _offer(queue: asyncio.Queue[Event], event: Event) -> None:
    if queue.full():
        # The listener is behind: drop the oldest hint; it re-reads the worklist anyway.
        queue.get_nowait()
    queue.put_nowait(event)


class Listening:
    """The shape of a Service that holds one ``LISTEN`` connection on a thread: it reconnects
    (logging why) whenever the connection is lost, and is ready while it listens. Subclasses name
    the ``channel`` and do their work in :meth:`turn`, which returns how long to wait for the next
    notification (0: go on at once)."""

    name = "listening"
    channel = ""

    def __init__(self, *, database_url: str) -> None:
        self.database_url = database_url
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)

    def ready(self) -> tuple[bool, str]:
        return (True, "ok") if self.listening else (False, "no-listen")

    @property
    def listening(self) -> bool:
        return self._listening.is_set() and not self._stop.is_set()

    def wait_listening(self, timeout: float) -> bool:
        return self._listening.wait(timeout)

    def turn(self, conn: psycopg.Connection[Any]) -> float:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.database_url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {self.channel}")
                    self._listening.set()
                    while not self._stop.is_set():
                        wait = self.turn(conn)
                        if wait > 0:
                            for _ in conn.notifies(timeout=wait, stop_after=1):
                                pass
            except psycopg.Error as exc:
                self._listening.clear()
                log.warning("%s lost its database connection (%s); reconnecting", self.name, exc)
                self._stop.wait(1.0)
