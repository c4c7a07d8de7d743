"""The backend's ASGI app: ``create_app()`` plus a lifespan that starts the process's roles
(:mod:`backend.roles`; all four by default, as ``nearcare backend run``).

Nothing connects at import time; ``uvicorn --factory backend.app:create_app`` works as well.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from backend.errors import ConfigError
from backend.roles import API, ROLES, Parts, check_roles, open_parts, start, stop
from backend.settings import DEMO_SECRET, Settings
from backend.store import migrate

log = logging.getLogger(__name__)
MIN_SECRET_BYTES = 32


def create_app(settings: Settings | None = None, *, migrate_on_start: bool = True,
               roles: Sequence[str] = ROLES, parts: Parts | None = None) -> FastAPI:
    """The HTTP app of a process running ``roles`` (``api`` is always one of them). ``parts``
    lets a caller (a test, the demo) build the parts itself, e.g. with a fixed clock; they are
    closed with the app."""
    settings = settings or (parts.settings if parts is not None else Settings())
    if not settings.demo and settings.secret_key == DEMO_SECRET:
        raise ConfigError("NEARCARE_SECRET_KEY must be set outside demo mode")
    if not settings.demo and len(settings.secret_key.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(f"NEARCARE_SECRET_KEY must be at least {MIN_SECRET_BYTES} bytes (e.g. openssl rand -hex 32)")
    chosen = check_roles((*roles, API))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if migrate_on_start:
            migrate(settings.database_url, timescale=settings.timescale)
        made = parts or open_parts(settings, roles=chosen)
        try:
            runtime = start(made, chosen)
        except BaseException:
            made.pool.close()
            raise
        app.state.runtime = runtime
        try:
            yield
        finally:
            stop(runtime)

    app = FastAPI(
        title="nearcare",
        version="0.1.0",
        description="Telemedicine home monitoring: readings, alerts, worklist, FHIR export.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    from backend.web import security

    security.install(app)
    from backend.web import errors

    errors.install(app)
    for router in routers():
        app.include_router(router)
    from backend.web.routes import static_files

    app.mount("/static", static_files(), name="static")
    return app


def create_api_app() -> FastAPI:
    """The ``api`` role alone, for ``uvicorn --factory backend.app:create_api_app`` (as
    ``nearcare backend api``): the other roles run as their own processes."""
    return create_app(roles=(API,))


def routers() -> list[APIRouter]:
    from backend import metrics
    from backend.admin import routes as admin_routes
    from backend.api import health, v1
    from backend.fhir import upload as phd_upload
    from backend.fut import routes as fut_routes  # /admin/fut, /admin/gateways
    from backend.web import routes as web_routes
    from backend.web import worklist_actions
    from backend.whatif import routes as whatif_routes

    return [
        health.router, metrics.router, v1.router, admin_routes.api, worklist_actions.router, web_routes.router,
        admin_routes.pages, whatif_routes.api, whatif_routes.pages, phd_upload.router, fut_routes.pages,
    ]
