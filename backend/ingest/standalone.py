"""``nearcare backend ingest``: the consumer in its own process, without the HTTP app."""

from __future__ import annotations

import logging
import signal
import threading
import time

from backend.events import EventHub
from backend.ingest import sinks
from backend.ingest.service import IngestService, default_client_id
from backend.services import Runtime
from backend.settings import Settings
from backend.store import migrate, open_pool

log = logging.getLogger(__name__)


def run_standalone(
    settings: Settings,
    *,
    worker: int = 0,
    client_id: str | None = None,
    metrics_port: int | None = None,
    migrate_first: bool = True,
    with_sinks: bool = True,
) -> None:
    """Run until SIGTERM or SIGINT; then finish the batch in hand and leave."""
    if migrate_first:
        migrate(settings.database_url, timescale=settings.timescale)
    if metrics_port:
        from prometheus_client import start_http_server

        from backend.metrics import REGISTRY

        start_http_server(metrics_port, registry=REGISTRY)
    # The pool is for the sinks (the rules read history); ingest writes on its own connection.
    pool = open_pool(settings.database_url, min_size=1, max_size=max(2, settings.pool_max_size // 2))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        runtime = Runtime(settings=settings, pool=pool, events=EventHub())
        installed = sinks.install(runtime) if with_sinks else []
        service = IngestService(runtime, client_id=client_id or default_client_id(settings.ingest_group, worker=worker))
        runtime.services.append(service)
        service.start()
        deadline = time.monotonic() + 30
        while not service.ready()[0] and time.monotonic() < deadline and not stop.is_set():
            time.sleep(0.05)
        log.info("standalone ingest running (sinks: %s)", ", ".join(installed) or "none")
        ok, word = service.ready()
        print(f"ingest {'ready' if ok else 'started, not ready: ' + word} as {service.client_id}", flush=True)
        while not stop.wait(1.0):
            pass
        service.stop()
    finally:
        pool.close()
