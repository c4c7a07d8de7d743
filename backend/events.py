"""An in-process event hub: alerting publishes, the live worklist (server-sent events) listens.

Thread-safe, because ingest and the scheduler run in threads while the web serves on asyncio.
A slow listener loses nothing durable: events only say "look again"; the database is the truth.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any


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
