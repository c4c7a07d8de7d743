"""``nearcare backend …``"""

from __future__ import annotations

import typer

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


@app.command()
def run(
    host: str = typer.Option(None, help="Listen address (NEARCARE_HTTP_HOST)."),
    port: int = typer.Option(None, help="Listen port (NEARCARE_HTTP_PORT)."),
) -> None:
    """Run the API, the ingest consumer and the scheduler in one process."""
    import uvicorn

    from backend.app import create_app
    from backend.settings import Settings

    settings = Settings()
    uvicorn.run(
        create_app(settings),
        host=host or settings.http_host,
        port=port or settings.http_port,
        log_level="info",
        # Live worklist streams (server-sent events) would otherwise hold a shutdown open.
        timeout_graceful_shutdown=10,
    )


@app.command()
def ingest(
    worker: int = typer.Option(0, help="This worker's number on this host; give each process its own."),
    client_id: str = typer.Option(None, help="MQTT client id (default: nearcare-ingest-<group>-<host>-<worker>)."),
    metrics_port: int = typer.Option(None, help="Serve Prometheus metrics on this port."),
    migrate_first: bool = typer.Option(True, "--migrate/--no-migrate", help="Apply missing migrations first."),
    with_sinks: bool = typer.Option(
        True, "--sinks/--no-sinks", help="Hand stored readings to the rules (off: store only, e.g. to benchmark)."
    ),
) -> None:
    """Run the ingest consumer alone (no HTTP app). Any number share the load through the MQTT
    v5 shared subscription; restart a worker with the same number to take back its session."""
    from backend.ingest.standalone import run_standalone
    from backend.settings import Settings

    run_standalone(
        Settings(), worker=worker, client_id=client_id, metrics_port=metrics_port, migrate_first=migrate_first,
        with_sinks=with_sinks,
    )
