"""``nearcare backend …``"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from backend.settings import Settings

app = typer.Typer(no_args_is_help=True, add_completion=False)


@app.command()
def migrate() -> None:
    """Apply the database migrations that are missing. Running it twice changes nothing.

    A new database gets TimescaleDB where the server offers it; NEARCARE_TIMESCALE=off chooses
    plain PostgreSQL, =on requires TimescaleDB. A migrated database keeps its flavour."""
    import psycopg
    from pydantic import ValidationError

    from backend.errors import StoreError
    from backend.settings import Settings
    from backend.store import migrate as do_migrate
    from backend.store.capabilities import detect

    try:
        settings = Settings()
    except ValidationError as exc:
        typer.echo(f"error: invalid configuration (NEARCARE_*):\n{exc}", err=True)
        raise typer.Exit(2) from None
    try:
        applied = do_migrate(settings.database_url, timescale=settings.timescale)
        with psycopg.connect(settings.database_url) as conn:
            caps = detect(conn)
    except StoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except psycopg.Error as exc:
        typer.echo(f"error: {exc}".strip(), err=True)
        raise typer.Exit(1) from None
    flavour = "TimescaleDB" if caps.timescale else "plain PostgreSQL (no timescaledb extension)"
    if applied:
        for m in applied:
            typer.echo(f"applied {m.version:04d}_{m.name} ({m.flavour})")
    else:
        typer.echo("database is up to date")
    typer.echo(f"storage: {flavour}")


def _settings() -> Settings:
    from pydantic import ValidationError

    from backend.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        typer.echo(f"error: invalid configuration (NEARCARE_*):\n{exc}", err=True)
        raise typer.Exit(2) from None


def _serve(settings: Settings, roles: tuple[str, ...], host: str | None, port: int | None) -> None:
    import uvicorn

    from backend.app import create_app

    uvicorn.run(
        create_app(settings, roles=roles),
        host=host or settings.http_host,
        port=port or settings.http_port,
        log_level="info",
        # Live worklist streams (server-sent events) would otherwise hold a shutdown open.
        timeout_graceful_shutdown=10,
        # X-Forwarded-For is read by the app itself, from NEARCARE_TRUSTED_PROXIES only.
        proxy_headers=False,
    )


def _headless(settings: Settings, roles: tuple[str, ...], **kw: Any) -> None:
    """A role without the HTTP app; a store that cannot be used (TimescaleDB installed but not
    preloaded, an unreachable database) is one clear line and exit 1, not a traceback."""
    import psycopg

    from backend.errors import StoreError
    from backend.roles import run_headless

    try:
        run_headless(settings, roles, **kw)
    except StoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except psycopg.OperationalError as exc:
        typer.echo(f"error: the database cannot be reached: {exc}".strip(), err=True)
        raise typer.Exit(1) from None


@app.command()
def run(
    host: str = typer.Option(None, help="Listen address (NEARCARE_HTTP_HOST)."),
    port: int = typer.Option(None, help="Listen port (NEARCARE_HTTP_PORT)."),
) -> None:
    """All four roles in one process: the web and API, ingest, the rules and the scheduler."""
    from backend.roles import ROLES

    _serve(_settings(), ROLES, host, port)


@app.command()
def api(
    host: str = typer.Option(None, help="Listen address (NEARCARE_HTTP_HOST)."),
    port: int = typer.Option(None, help="Listen port (NEARCARE_HTTP_PORT)."),
) -> None:
    """The web pages and the JSON API alone (run ingest, rules and scheduler as their own processes)."""
    from backend.roles import API

    _serve(_settings(), (API,), host, port)


@app.command()
def ingest(
    client_id: str = typer.Option(None, help="MQTT client id (default: nearcare-ingest-<group>-<host>-<n>-<random>)."),
    worker: int = typer.Option(0, help="A number for this worker in its client id and logs."),
    metrics_port: int = typer.Option(None, help="Serve Prometheus metrics on this port."),
    migrate_first: bool = typer.Option(True, "--migrate/--no-migrate", help="Apply missing migrations first."),
) -> None:
    """The ingest consumer alone. Any number share the load through the MQTT v5 shared
    subscription; each holds a clean session, so a worker lost for good strands nothing (its
    agents re-send what it held). New readings go to the rules through PostgreSQL."""
    from backend.ingest.service import default_client_id
    from backend.roles import INGEST

    settings = _settings()
    _headless(settings, (INGEST,), migrate_first=migrate_first, metrics_port=metrics_port,
              ingest_client_id=client_id or default_client_id(settings.ingest_group, worker=worker))


@app.command()
def rules(
    metrics_port: int = typer.Option(None, help="Serve Prometheus metrics on this port."),
    migrate_first: bool = typer.Option(True, "--migrate/--no-migrate", help="Apply missing migrations first."),
) -> None:
    """Rule evaluation alone: committed readings from PostgreSQL, each evaluated exactly once,
    in each citizen's measurement order. Any number may run."""
    from backend.roles import RULES

    _headless(_settings(), (RULES,), migrate_first=migrate_first, metrics_port=metrics_port)


@app.command()
def scheduler(
    metrics_port: int = typer.Option(None, help="Serve Prometheus metrics on this port."),
    migrate_first: bool = typer.Option(True, "--migrate/--no-migrate", help="Apply missing migrations first."),
) -> None:
    """The scheduled checks alone (escalation, missed measurements, technical, notifications).
    Run two or more: one leads (PostgreSQL advisory lock), the others take over when it dies."""
    from backend.roles import SCHEDULER

    _headless(_settings(), (SCHEDULER,), migrate_first=migrate_first, metrics_port=metrics_port)
