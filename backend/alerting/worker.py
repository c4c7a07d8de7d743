"""The readings sink ingest calls: hand the readings to a worker thread and return at once.

Ingest calls the sink after each commit; evaluating there would hold up its commits and acks
behind the rules. The queue is bounded (by readings, not batches): when it is full the sink
waits, which passes backpressure on to ingest and from there to the broker. The worker takes
everything waiting (up to ``max_batch`` readings) as one batch, so the busier it gets the
fewer transactions it needs per reading; the batches are concatenated in arrival order, so each
patient's readings reach the rules in the order ingest handed them over.

The queue is a fast path, not the record: a reading is durable once ingest committed it, and
``backend.alerting.jobs.catch_up`` evaluates any stored reading that has no evaluation yet (a
crash with a full queue, a sink that was not registered yet, a wait that timed out).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence

from backend.readings import StoredReading

log = logging.getLogger(__name__)


class EvaluationQueue:
    """A bounded FIFO of stored readings and the one thread that evaluates them.

    ``evaluate`` is called with merged batches; it must record its own failures (the
    engine writes them to ``alert_evaluation_failures``). Anything it raises is logged and the
    worker carries on: those readings are left to the catch-up job."""

    def __init__(
        self,
        *,
        evaluate: Callable[[Sequence[StoredReading]], None],
        max_readings: int = 20_000,
        max_batch: int = 2_000,
        put_timeout_s: float = 60.0,
        name: str = "alerting-evaluations",
    ) -> None:
        self._evaluate = evaluate
        self.max_readings = max_readings
        self.max_batch = max_batch
        self.put_timeout_s = put_timeout_s
        self.name = name
        self._items: collections.deque[Sequence[StoredReading]] = collections.deque()
        self._depth = 0
        self._busy = 0
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.handed_over = 0
        self.batches = 0
        self.errors = 0
        self.left_to_catch_up = 0

    @property
    def depth(self) -> int:
        """Readings waiting or being evaluated."""
        with self._cond:
            return self._depth + self._busy

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        with self._cond:
            if self.running:
                return
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def __call__(self, readings: Sequence[StoredReading]) -> None:
        """The ReadingsSink: enqueue and return (waits only while the queue is full)."""
        if not readings:
            return
        items = list(readings)
        with self._cond:
            if not self.running or self._stopping:
                direct = True
            else:
                direct = False
                deadline = time.monotonic() + self.put_timeout_s
                # An oversized hand-over is let in alone rather than never.
                while self._depth and self._depth + len(items) > self.max_readings and not self._stopping:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        self.left_to_catch_up += len(items)
                        log.warning("alert queue full for %.0f s (%d readings waiting); %d stored readings are"
                                    " left to the catch-up job", self.put_timeout_s, self._depth, len(items))
                        return
                    self._cond.wait(left)
                if self._stopping:
                    direct = True
                else:
                    self._items.append(items)
                    self._depth += len(items)
                    self.handed_over += len(items)
                    self._cond.notify_all()
        if direct:
            # Not running (before start, after stop): evaluate on the caller's thread rather
            # than leave the readings waiting for the next catch-up.
            self._call(items)

    def stop(self, *, timeout: float = 60.0) -> None:
        """Evaluate what is queued, then end the worker."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.error("alert queue did not drain within %.0f s; %d readings left to the catch-up job",
                          timeout, self.depth)
        self._thread = None

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Until nothing is waiting or being evaluated (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._depth or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
        return True

    def _take(self) -> list[StoredReading] | None:
        with self._cond:
            while not self._items:
                if self._stopping:
                    return None
                self._cond.wait()
            batch: list[StoredReading] = list(self._items.popleft())
            while self._items and len(batch) + len(self._items[0]) <= self.max_batch:
                batch.extend(self._items.popleft())
            self._depth -= len(batch)
            self._busy = len(batch)
            self._cond.notify_all()
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            try:
                self._call(batch)
                self.batches += 1
            finally:
                with self._cond:
                    self._busy = 0
                    self._cond.notify_all()

    def _call(self, readings: Sequence[StoredReading]) -> None:
        try:
            self._evaluate(readings)
        except Exception:  # never lose the worker; the readings are stored and the catch-up job finds them
            self.errors += 1
            log.exception("alert evaluation of %d readings failed; left to the catch-up job", len(readings))
