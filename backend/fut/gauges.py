"""The FUT outbox on ``/metrics`` (the backend's registry, :mod:`backend.metrics`).

``nearcare_fut_outbox_rows{state}`` and ``nearcare_fut_oldest_pending_age_seconds`` are the
outbox as the database holds it (the same for every process): the sender refreshes them every
``REFRESH_S`` and the admin's FUT page on each look, so the process that runs the sender (the
scheduler role) always has them fresh. ``nearcare_fut_submissions_total{outcome}`` counts this
process's attempts by outcome.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from prometheus_client import Counter, Gauge

from backend.fut import outbox
from backend.metrics import REGISTRY

REFRESH_S = 15.0

ROWS = Gauge("nearcare_fut_outbox_rows", "FUT outbox rows by state (pending, retrying, sent, refused, not_submittable)",
             ["state"], registry=REGISTRY)
OLDEST_PENDING = Gauge("nearcare_fut_oldest_pending_age_seconds",
                       "Age of the oldest FUT submission not yet delivered (pending or retrying); 0 when none.",
                       registry=REGISTRY)
SUBMISSIONS = Counter("nearcare_fut_submissions", "FUT submission attempts by this process, by outcome.",
                      ["outcome"], registry=REGISTRY)

_last = 0.0


def publish(m: outbox.OutboxMetrics) -> None:
    global _last
    for state in outbox.STATES:
        ROWS.labels(state).set(getattr(m, state))
    OLDEST_PENDING.set(m.oldest_pending_age_s or 0.0)
    _last = time.monotonic()


def refresh(conn: psycopg.Connection[Any], *, force: bool = False) -> outbox.OutboxMetrics | None:
    """Read the outbox's counts into the gauges (at most every ``REFRESH_S`` unless ``force``)."""
    if not force and time.monotonic() - _last < REFRESH_S:
        return None
    m = outbox.metrics(conn)
    publish(m)
    return m
