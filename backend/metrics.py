"""Prometheus metrics of the backend, on their own registry, served at ``/metrics``.

Module-level metric objects: creating them touches nothing outside the process. The standalone
``nearcare backend ingest`` serves the same registry on ``--metrics-port``.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

INGEST_MESSAGES = Counter(
    "nearcare_ingest_messages", "MQTT messages taken by ingest, by topic kind.", ["topic_kind"], registry=REGISTRY
)
INGEST_READINGS = Counter(
    "nearcare_ingest_readings",
    "Readings by outcome: stored (new rows), duplicate (redelivery absorbed), rejected (held with a reason).",
    ["outcome"],
    registry=REGISTRY,
)
INGEST_DEAD_LETTERS = Counter(
    "nearcare_ingest_dead_letters", "Payloads kept as dead letters, by offending field.", ["field"], registry=REGISTRY
)
INGEST_BATCH_SIZE = Histogram(
    "nearcare_ingest_batch_readings",
    "Readings per committed batch.",
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
    registry=REGISTRY,
)
INGEST_COMMIT_SECONDS = Histogram(
    "nearcare_ingest_commit_seconds",
    "Time to write and commit one batch.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)
INGEST_LAG_SECONDS = Gauge(
    "nearcare_ingest_consumer_lag_seconds",
    "Oldest wait, in the last committed batch, from receipt by the consumer to commit.",
    registry=REGISTRY,
)
INGEST_QUEUE = Gauge(
    "nearcare_ingest_pending_messages", "Messages received and not yet committed and acknowledged.", registry=REGISTRY
)
INGEST_STORE_ERRORS = Counter(
    "nearcare_ingest_store_errors", "Batches that failed to commit and were retried.", ["kind"], registry=REGISTRY
)
INGEST_BROKER_CONNECTED = Gauge(
    "nearcare_ingest_broker_connected", "1 while the ingest consumer is connected to the broker.", registry=REGISTRY
)

router = APIRouter(tags=["metrics"])


@router.get("/metrics", include_in_schema=False)
def metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
