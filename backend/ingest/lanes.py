"""Decided messages waiting for ingest's writer, in two lanes: live ahead of backlog.

A returning tablet (or a thousand of them after a broker outage) sends its backlog at the broker's
pace, 50 readings an envelope. Taken in arrival order, a citizen measuring now would wait behind
every backlog envelope received before theirs, and so would their alert. :class:`Lanes` keeps the
decided messages in two queues, and :meth:`Lanes.take` makes each batch from the live lane first
and tops it up with a little backlog (a batch is all backlog only when no live message waits): a
live message waits for at most the commit in progress and its own short one. Within a lane the
order of arrival is kept. Memory stays bounded by the broker's receive maximum (unacknowledged
messages), as before.

Batching is unchanged: a batch closes when it holds ``size`` readings, or when the oldest waiting
message has waited ``window_s`` (under a backlog that is at once, so the writer never idles while
anything waits).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Waiting(Generic[T]):
    item: T
    readings: int
    received: float  # time.monotonic() when the broker handed it over


class Lanes(Generic[T]):
    """Thread-safe: one or more producers :meth:`put`, one writer :meth:`take`."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._live: deque[_Waiting[T]] = deque()
        self._backlog: deque[_Waiting[T]] = deque()
        self._readings = 0

    def put(self, item: T, *, readings: int, received: float, live: bool) -> None:
        with self._cond:
            (self._live if live else self._backlog).append(_Waiting(item, max(1, readings), received))
            self._readings += max(1, readings)
            self._cond.notify()

    def __len__(self) -> int:
        with self._cond:
            return len(self._live) + len(self._backlog)

    def take(self, *, size: int, window_s: float, wait_s: float = 0.2, backlog_with_live: int | None = None) -> list[T]:
        """The next batch: live messages first, then backlog, until ``size`` readings (always at
        least one message). Waits up to ``wait_s`` for a first message (``[]`` if none came),
        then until ``size`` readings wait or the oldest has waited ``window_s``. A batch that
        carries live messages takes at most ``backlog_with_live`` backlog readings (default
        ``size // 5``), so the commit a live reading waits for stays short."""
        ride_along = size // 5 if backlog_with_live is None else backlog_with_live
        with self._cond:
            if not self._cond.wait_for(lambda: self._live or self._backlog, timeout=wait_s):
                return []
            oldest = min(q[0].received for q in (self._live, self._backlog) if q)
            while self._readings < size:
                remaining = oldest + window_s - time.monotonic()
                if remaining <= 0 or not self._cond.wait(remaining):
                    break
            out: list[T] = []
            taken = 0
            while self._live and (not out or taken + self._live[0].readings <= size):
                w = self._live.popleft()
                out.append(w.item)
                taken += w.readings
            limit = min(size, taken + ride_along) if out else size
            while self._backlog and (not out or taken + self._backlog[0].readings <= limit):
                w = self._backlog.popleft()
                out.append(w.item)
                taken += w.readings
            self._readings -= taken
            return out

    def drain(self) -> list[T]:
        """Everything waiting, live first (a stopping writer commits what it already holds)."""
        with self._cond:
            out = [w.item for lane in (self._live, self._backlog) for w in lane]
            self._live.clear()
            self._backlog.clear()
            self._readings = 0
            return out
