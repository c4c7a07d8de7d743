"""Ingest: MQTT consumer -> validate and attribute (pure core) -> batched idempotent writes ->
hand on to the rules and receipt to the agent. See ``core`` (pure), ``writer`` and ``service``.

Nothing here connects at import; ``backend.ingest.service`` imports paho and psycopg.
"""

from backend.ingest.core import (
    FUTURE_TOLERANCE,
    AcceptedReading,
    DeadLetter,
    Decision,
    Flag,
    HeldReading,
    HoldReason,
    StatusUpdate,
    attribute,
    decide,
    validate,
)

__all__ = [
    "FUTURE_TOLERANCE",
    "AcceptedReading",
    "DeadLetter",
    "Decision",
    "Flag",
    "HeldReading",
    "HoldReason",
    "StatusUpdate",
    "attribute",
    "decide",
    "validate",
]
