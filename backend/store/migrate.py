"""Apply the numbered SQL migrations in ``migrations/``, once each, tracked in a table.

``NNNN_name.sql`` is the plain PostgreSQL form; where a ``NNNN_name.timescale.sql`` sits beside
it and the database is TimescaleDB-flavoured, that form is applied instead. Which form ran is
recorded, so a database never silently changes flavour: the flavour is chosen once, when a new
database is first migrated (see :func:`backend.store.capabilities.choose_flavour` and
``NEARCARE_TIMESCALE``), and kept. Concurrent starters serialise on an advisory lock.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import psycopg

from backend.errors import StoreError
from backend.store.capabilities import Flavour, TimescaleChoice, choose_flavour, detect, not_preloaded_message

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)(\.timescale)?\.sql$")
_LOCK_KEY = 0x6E656172  # "near": serialises migrations across processes


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str
    flavour: str  # "plain" or "timescale"


def discover(*, timescale: bool, directory: Path | None = None) -> list[Migration]:
    """Every migration in order, each in the form for the flavour (TimescaleDB or plain)."""
    root = directory or Path(str(resources.files("backend.store") / "migrations"))
    plain: dict[int, tuple[str, Path]] = {}
    forked: dict[int, Path] = {}
    for path in sorted(root.iterdir()):
        m = _NAME.match(path.name)
        if not m:
            continue
        version, name, ts = int(m.group(1)), m.group(2), m.group(3)
        if ts:
            forked[version] = path
        else:
            if version in plain:
                raise StoreError(f"two migrations numbered {version:04d}: {plain[version][1].name}, {path.name}")
            plain[version] = (name, path)
    out = []
    for version in sorted(plain):
        name, path = plain[version]
        if timescale and version in forked:
            out.append(Migration(version, name, forked[version].read_text(), "timescale"))
        else:
            out.append(Migration(version, name, path.read_text(), "plain"))
    return out


def applied_versions(conn: psycopg.Connection) -> dict[int, str]:
    rows = conn.execute(
        "SELECT version, flavour FROM schema_migrations ORDER BY version"
    ).fetchall()
    return {int(v): str(f) for v, f in rows}


def recorded_flavour(done: dict[int, str], directory: Path | None = None) -> Flavour | None:
    """The flavour this database was migrated with: that of an applied migration which has a
    TimescaleDB form (the others are recorded as plain on both). None for a new database."""
    forked = {m.version for m in discover(timescale=True, directory=directory) if m.flavour == "timescale"}
    flavours = {done[v] for v in forked if v in done}
    if "timescale" in flavours:
        return "timescale"
    return "plain" if flavours else None


def migrate(
    database_url: str, *, timescale: TimescaleChoice = "auto", directory: Path | None = None
) -> list[Migration]:
    """Apply what is missing; return what was applied (empty when up to date).

    ``timescale`` is ``NEARCARE_TIMESCALE`` (``Settings.timescale``). A database in a state the
    flavour rules refuse (e.g. TimescaleDB installed on the server but not preloaded) raises a
    :class:`StoreError` that says what to do, before anything is changed."""
    try:
        conn = psycopg.connect(database_url, autocommit=True)
    except psycopg.OperationalError as exc:
        raise StoreError(f"cannot connect to PostgreSQL to migrate: {exc}".strip()) from exc
    with conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            return _migrate_locked(conn, timescale, directory)
        finally:
            # A server that ended the session (e.g. TimescaleDB's FATAL on a failed load) has
            # released the lock with it; unlocking on a closed connection would only hide the cause.
            if not conn.closed:
                conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))


def _migrate_locked(conn: psycopg.Connection, choice: TimescaleChoice, directory: Path | None) -> list[Migration]:
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    done = applied_versions(conn) if exists and exists[0] else {}
    caps = detect(conn)
    flavour = choose_flavour(caps, choice=choice, recorded=recorded_flavour(done, directory))
    conn.execute(
        """CREATE TABLE IF NOT EXISTS schema_migrations (
               version    integer PRIMARY KEY,
               name       text NOT NULL,
               flavour    text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now())"""
    )
    if flavour == "timescale" and not caps.timescaledb_installed:
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        except psycopg.OperationalError as exc:
            # Detection said "preloaded"; if the server still refuses, say what it means.
            if "must be preloaded" in str(exc):
                raise StoreError(not_preloaded_message(database_is_timescale=False)) from None
            raise StoreError(f"could not create the timescaledb extension: {exc}".strip()) from exc
        except psycopg.Error as exc:
            raise StoreError(f"could not create the timescaledb extension: {exc}".strip()) from exc
    applied = []
    for m in discover(timescale=flavour == "timescale", directory=directory):
        if m.version in done:
            continue
        log.info("applying migration %04d_%s (%s)", m.version, m.name, m.flavour)
        try:
            with conn.transaction():
                conn.execute(m.sql.encode())  # packaged SQL, not user input
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, flavour) VALUES (%s, %s, %s)",
                    (m.version, m.name, m.flavour),
                )
        except psycopg.Error as exc:
            raise StoreError(f"migration {m.version:04d}_{m.name} failed: {exc}") from exc
        applied.append(m)
    return applied
