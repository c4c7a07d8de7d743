"""The backend's ASGI app: ``create_app()`` plus a lifespan that opens the pool and services.

Nothing connects at import time; ``uvicorn --factory backend.app:create_app`` works as well.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from backend import services as services_mod
from backend.errors import ConfigError
from backend.events import EventHub
from backend.settings import DEMO_SECRET, Settings
from backend.store import migrate, open_pool

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, migrate_on_start: bool = True) -> FastAPI:
    settings = settings or Settings()
    if not settings.demo and settings.secret_key == DEMO_SECRET:
        raise ConfigError("NEARCARE_SECRET_KEY must be set outside demo mode")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if migrate_on_start:
            migrate(settings.database_url, timescale=settings.timescale)
        pool = open_pool(
            settings.database_url, min_size=settings.pool_min_size, max_size=settings.pool_max_size
        )
        runtime = services_mod.Runtime(settings=settings, pool=pool, events=EventHub())
        app.state.runtime = runtime
        started: list[services_mod.Service] = []
        try:
            for factory in services_mod.factories():
                service = factory(runtime)
                if service is None:
                    continue
                service.start()
                started.append(service)
                runtime.services.append(service)
            yield
        finally:
            for service in reversed(started):
                try:
                    service.stop()
                except Exception:  # a failing stop must not keep the others running
                    log.exception("stopping %s failed", service.name)
            pool.close()

    app = FastAPI(
        title="nearcare",
        version="0.1.0",
        description="Telemedicine home monitoring: readings, alerts, worklist, FHIR export.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    for router in routers():
        app.include_router(router)
    from backend.web.routes import static_files

    app.mount("/static", static_files(), name="static")
    return app


def routers() -> list[APIRouter]:
    from backend import metrics
    from backend.admin import routes as admin_routes
    from backend.api import health, v1
    from backend.web import routes as web_routes

    return [health.router, metrics.router, v1.router, admin_routes.api, web_routes.router, admin_routes.pages]
