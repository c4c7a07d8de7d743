"""The FUT submission connector: an outbox of measurements and a sender of ``$submit-measurement``
calls (see :mod:`backend.fut.sender`, :mod:`backend.fut.outbox`, :mod:`backend.fhir.fut`)."""

from backend.fut.outbox import (
    OutboxMetrics,
    enqueue_new,
    link_device,
    link_patient,
    metrics,
    refused,
    retry_refused,
)
from backend.fut.sender import FutClient, FutConfig, FutError, FutOAuth, FutSender, fut_services, send_due

__all__ = [
    "FutClient",
    "FutConfig",
    "FutError",
    "FutOAuth",
    "FutSender",
    "OutboxMetrics",
    "enqueue_new",
    "fut_services",
    "link_device",
    "link_patient",
    "metrics",
    "refused",
    "retry_refused",
    "send_due",
]
