"""Long-running parts started in the app's lifespan: ingest consumer, scheduler, notifiers.

Each factory gets the shared :class:`Runtime` and returns a :class:`Service` (or None when the
settings turn it off). Nothing here connects at import time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from psycopg_pool import ConnectionPool

from backend.events import EventHub
from backend.readings import ReadingsSink, StoredReading
from backend.settings import Settings


class Publisher(Protocol):
    """Publishes to the broker from the backend (receipts, retained monitoring plans).
    Provided by the ingest service, which owns the backend's MQTT connection."""

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None: ...


class Service(Protocol):
    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def ready(self) -> tuple[bool, str]:
        """(ready, a short word for /readyz)."""
        ...


@dataclass
class Runtime:
    """What the services of one backend process share."""

    settings: Settings
    pool: ConnectionPool
    events: EventHub
    readings_sinks: list[ReadingsSink] = field(default_factory=list)
    publisher: Publisher | None = None
    services: list[Service] = field(default_factory=list)

    def on_stored(self, readings: list[StoredReading]) -> None:
        for sink in self.readings_sinks:
            sink(readings)


ServiceFactory = Callable[[Runtime], "Service | None"]


def factories() -> list[ServiceFactory]:
    """The services, in start order (stopped in reverse). Imported lazily: an agent-only
    install never imports the backend's heavier parts."""
    out: list[ServiceFactory] = []
    from backend.ingest.service import ingest_factory

    out.append(ingest_factory)
    from backend.alerting import service_factory as alerting_factory

    out.append(alerting_factory)
    return out
