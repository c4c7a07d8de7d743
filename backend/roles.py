"""One explicit composition root per process role: ``api``, ``ingest``, ``rules``, ``scheduler``.

Every backend process is one or more roles built here, from :class:`Parts` made once at start
and passed down by keyword (no module-level caches, no fallback to a packaged default):

- ``api``: the web pages and JSON API (built by :func:`backend.app.create_app`), plus the
  LISTEN that turns ``NOTIFY nearcare_alerts`` (alert transitions, stored readings) into the
  live worklist's server-sent events.
- ``ingest``: the MQTT consumer that stores readings exactly once, hands each new one to the
  rules (``rules_inbox``, same transaction) and answers every agent with a receipt.
- ``rules``: :class:`~backend.alerting.inbox.RulesInbox` feeding the alert engine with committed
  readings, in each citizen's measurement order.
- ``scheduler``: escalations, missed measurements, technical checks, baselines, notification
  delivery and the evaluation safety nets, run by one leader (PostgreSQL advisory lock) among
  any number of standbys.

Every process owns a :class:`~backend.publisher.MqttPublisher` and an
:class:`~backend.outbox.OutboxRelay`, so what a change owes a tablet (a plan, a "seen"
receipt) leaves through whichever process is alive. ``nearcare backend run`` is all four roles
in one process. Services start in dependency order (what consumes a role's output is ready
before that role starts consuming) and stop in reverse.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from psycopg_pool import ConnectionPool

from backend.alerting.clock import Clock, SystemClock
from backend.alerting.config import AlertingConfig, NotifierSettings, load_config
from backend.errors import ConfigError
from backend.events import EventHub
from backend.outbox import OutboxRelay
from backend.publisher import MqttPublisher
from backend.services import Service
from backend.settings import Settings
from backend.store import open_pool
from vitals.wire import Topics

log = logging.getLogger(__name__)

API, INGEST, RULES, SCHEDULER = "api", "ingest", "rules", "scheduler"
ROLES: tuple[str, ...] = (API, INGEST, RULES, SCHEDULER)
"""Every role; ``backend run`` runs them all in one process."""
_START_ORDER = (RULES, SCHEDULER, API, INGEST)
"""Consumers before producers: the rules listen before ingest stores anything."""
PRODUCTION_TOPOLOGY: dict[str, int] = {API: 1, INGEST: 2, RULES: 1, SCHEDULER: 2}
"""Processes per role in deploy/compose.yaml and the systemd units, as
tests/integration/test_topology.py starts them (the deploy test holds the three together)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Parts:
    """What every role is built from, made once per process by :func:`open_parts`."""

    settings: Settings
    topics: Topics
    config: AlertingConfig
    """The rules and routing the engine evaluates and the screens show and edit: one object."""
    notifier: NotifierSettings
    pool: ConnectionPool
    events: EventHub
    publisher: MqttPublisher
    clock: Clock


@dataclass(frozen=True, kw_only=True, slots=True)
class Runtime:
    """One running process: its parts and its started services (``app.state.runtime``)."""

    parts: Parts
    roles: tuple[str, ...]
    services: tuple[Service, ...] = field(default=())

    @property
    def settings(self) -> Settings:
        return self.parts.settings

    @property
    def pool(self) -> ConnectionPool:
        return self.parts.pool

    @property
    def events(self) -> EventHub:
        return self.parts.events

    @property
    def publisher(self) -> MqttPublisher:
        return self.parts.publisher

    @property
    def config(self) -> AlertingConfig:
        return self.parts.config


def check_roles(roles: Iterable[str]) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(roles))
    unknown = [r for r in chosen if r not in ROLES]
    if unknown or not chosen:
        raise ConfigError(f"unknown role(s) {unknown or '(none)'}: choose from {', '.join(ROLES)}")
    return tuple(r for r in _START_ORDER if r in chosen)


def open_parts(settings: Settings, *, roles: Sequence[str], clock: Clock | None = None,
               config: AlertingConfig | None = None, notifier: NotifierSettings | None = None) -> Parts:
    """The process's parts. The alerting configuration is read here, once, from
    ``NEARCARE_ALERT_RULES_DIR`` (the packaged rules when unset); nothing else reads it."""
    cfg = config if config is not None else load_config(settings.alert_rules_dir)
    pool = open_pool(settings.database_url, min_size=settings.pool_min_size, max_size=settings.pool_max_size)
    return Parts(
        settings=settings,
        topics=settings.topics,
        config=cfg,
        notifier=notifier or NotifierSettings(),
        pool=pool,
        events=EventHub(),
        publisher=MqttPublisher(broker=settings.broker, role="+".join(roles)),
        clock=clock or SystemClock(),
    )


def services_for(parts: Parts, roles: Sequence[str], *, ingest_client_id: str | None = None) -> list[Service]:
    """The services of ``roles`` in start order: the publisher and the outbox relay first."""
    out: list[Service] = [parts.publisher,
                          OutboxRelay(database_url=parts.settings.database_url, publisher=parts.publisher)]
    for role in check_roles(roles):
        if role == RULES:
            out += rules_services(parts)
        elif role == SCHEDULER:
            out += scheduler_services(parts)
        elif role == API:
            out += api_services(parts)
        elif role == INGEST:
            out += ingest_services(parts, client_id=ingest_client_id)
    return out


def api_services(parts: Parts) -> list[Service]:
    from backend.alerting.notify import EventListener

    return [EventListener(database_url=parts.settings.database_url, events=parts.events)]


def ingest_services(parts: Parts, *, client_id: str | None = None) -> list[Service]:
    from backend.ingest.service import IngestService

    return [IngestService(settings=parts.settings, publisher=parts.publisher, client_id=client_id)]


def rules_services(parts: Parts) -> list[Service]:
    from backend.alerting.engine import AlertEngine
    from backend.alerting.inbox import RulesInbox

    engine = AlertEngine(pool=parts.pool, config=parts.config, clock=parts.clock, notifier=parts.notifier)
    return [RulesInbox(database_url=parts.settings.database_url, evaluate=engine.on_stored)]


def scheduler_services(parts: Parts) -> list[Service]:
    from backend.alerting.engine import AlertEngine
    from backend.alerting.notify import Dispatcher
    from backend.scheduled import Scheduler, alerting_jobs

    engine = AlertEngine(pool=parts.pool, config=parts.config, clock=parts.clock, notifier=parts.notifier)
    # Delivery retries are real-world I/O: they run on the wall clock even when the rules run on
    # a test's or a replay's clock.
    dispatcher = Dispatcher(pool=parts.pool, settings=parts.notifier)
    s = parts.settings
    scheduler = Scheduler(
        database_url=s.database_url, clock=parts.clock, timezone=s.timezone, election_seconds=s.scheduler_election_s,
        jobs=alerting_jobs(pool=parts.pool, engine=engine, dispatcher=dispatcher, config=parts.config,
                           notifier=parts.notifier, tz=s.timezone, escalation_seconds=s.escalation_check_s,
                           missed_seconds=s.missed_check_s),
        on_stop=dispatcher.close,
    )
    from backend.fut import fut_services  # FUT sender (backend/fut), only where NEARCARE_FUT_BASE_URL is set
    return [scheduler, *fut_services(s.database_url)]


def start(parts: Parts, roles: Sequence[str], *, ingest_client_id: str | None = None) -> Runtime:
    """Start the roles' services in order; on a failure, stop what started and raise."""
    chosen = check_roles(roles)
    started: list[Service] = []
    try:
        for service in services_for(parts, chosen, ingest_client_id=ingest_client_id):
            service.start()
            started.append(service)
    except BaseException:
        stop_all(started)
        raise
    log.info("roles %s started: %s", "+".join(chosen), ", ".join(s.name for s in started))
    return Runtime(parts=parts, roles=chosen, services=tuple(started))


def stop_all(services: Sequence[Service]) -> None:
    for service in reversed(services):
        try:
            service.stop()
        except Exception:  # a failing stop must not keep the others running
            log.exception("stopping %s failed", service.name)


def stop(runtime: Runtime) -> None:
    stop_all(runtime.services)
    runtime.pool.close()


def wait_ready(runtime: Runtime, *, timeout: float = 30.0) -> tuple[bool, dict[str, str]]:
    deadline = time.monotonic() + timeout
    while True:
        checks = {s.name: s.ready()[1] for s in runtime.services}
        ok = all(s.ready()[0] for s in runtime.services)
        if ok or time.monotonic() > deadline:
            return ok, checks
        time.sleep(0.05)


def run_headless(settings: Settings, roles: Sequence[str], *, migrate_first: bool = True,
                 metrics_port: int | None = None, ingest_client_id: str | None = None) -> None:
    """``nearcare backend ingest|rules|scheduler``: the roles without the HTTP app, until SIGTERM
    or SIGINT. Prints one ``<roles> ready …`` line once every service is ready (deploy probes
    and tests wait for it)."""
    from backend.store import migrate

    chosen = check_roles(roles)
    if API in chosen:
        raise ConfigError("the api role runs in the HTTP app: use `nearcare backend api` or `backend run`")
    if migrate_first:
        migrate(settings.database_url, timescale=settings.timescale)
    if metrics_port:
        from prometheus_client import start_http_server

        from backend.metrics import REGISTRY

        start_http_server(metrics_port, registry=REGISTRY)
    stop_event = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop_event.set())
    signal.signal(signal.SIGINT, lambda *_: stop_event.set())
    parts = open_parts(settings, roles=chosen)
    try:
        runtime = start(parts, chosen, ingest_client_id=ingest_client_id)
    except BaseException:
        parts.pool.close()
        raise
    try:
        ok, checks = wait_ready(runtime)
        words = " ".join(f"{k}={v}" for k, v in checks.items())
        print(f"{'+'.join(chosen)} {'ready' if ok else 'started, not ready'} ({words})", flush=True)
        while not stop_event.wait(1.0):
            pass
    finally:
        stop(runtime)
