"""Wiring for one backend process: the sink, the event listener, the dispatcher and the scheduler."""

from __future__ import annotations

import atexit
import logging
from typing import Any

from psycopg_pool import ConnectionPool

from backend.alerting.clock import Clock, SystemClock
from backend.alerting.config import AlertingConfig, NotifierSettings, load_config
from backend.alerting.engine import AlertEngine
from backend.alerting.notify import Dispatcher, EventListener
from backend.alerting.worker import EvaluationQueue
from backend.events import EventHub
from backend.readings import ReadingsSink
from backend.settings import Settings

log = logging.getLogger(__name__)


def make_sink(*, pool: ConnectionPool, settings: Settings, events: EventHub | None = None,
              clock: Clock | None = None) -> ReadingsSink:
    """The alerting sink for a standalone ingest process. Events reach the web processes through
    PostgreSQL NOTIFY, so ``events`` is not needed here."""
    engine = AlertEngine(pool=pool, config=load_config(settings.alert_rules_dir), clock=clock,
                         notifier=NotifierSettings())
    queue = EvaluationQueue(evaluate=engine.on_stored)
    queue.start()
    # No service lifecycle here: drain at interpreter exit; whatever a crash leaves queued is
    # stored, and the scheduler's catch-up job evaluates it.
    atexit.register(queue.stop)
    return queue


class AlertingService:
    name = "alerting"

    def __init__(self, *, pool: ConnectionPool, settings: Settings, events: EventHub, clock: Clock | None = None,
                 config: AlertingConfig | None = None, notifier: NotifierSettings | None = None,
                 run_scheduler: bool | None = None) -> None:
        from backend.scheduled import Scheduler, alerting_jobs

        self.clock = clock or SystemClock()
        self.config = config or load_config(settings.alert_rules_dir)
        self.notifier = notifier or NotifierSettings()
        self.engine = AlertEngine(pool=pool, config=self.config, clock=self.clock, notifier=self.notifier)
        self.queue = EvaluationQueue(evaluate=self.engine.on_stored)
        # Delivery retries are real-world I/O: they run on the wall clock even when the rules
        # run on a test's or a replay's clock.
        self.dispatcher = Dispatcher(pool=pool, settings=self.notifier)
        self.listener = EventListener(database_url=settings.database_url, events=events)
        run = settings.run_scheduler if run_scheduler is None else run_scheduler
        self.scheduler = Scheduler(
            database_url=settings.database_url, clock=self.clock, timezone=settings.timezone,
            jobs=alerting_jobs(pool=pool, engine=self.engine, dispatcher=self.dispatcher, config=self.config,
                               notifier=self.notifier, tz=settings.timezone),
        ) if run else None

    @property
    def sink(self) -> ReadingsSink:
        """Enqueue and return: ingest never waits on the rules (only on a full queue)."""
        return self.queue

    def start(self) -> None:
        self.queue.start()
        self.listener.start()
        if self.scheduler is not None:
            self.scheduler.start()

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.stop()
        self.queue.stop()
        self.listener.stop()
        self.dispatcher.close()

    def ready(self) -> tuple[bool, str]:
        if not self.queue.running:
            return False, "no-worker"
        if not self.listener.listening:
            return False, "no-listen"
        if self.scheduler is None:
            return True, "ok"
        return self.scheduler.ready()


def service_factory(runtime: Any) -> AlertingService:
    """For :func:`backend.services.factories`: registers the sink on the runtime."""
    svc = AlertingService(pool=runtime.pool, settings=runtime.settings, events=runtime.events)
    runtime.readings_sinks.append(svc.sink)
    return svc
