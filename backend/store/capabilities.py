"""What this database can do, and which storage flavour it gets. Detected, never assumed.

A database is TimescaleDB-flavoured exactly when the ``timescaledb`` extension is created in it;
it gets that flavour when it is first migrated and keeps it. ``NEARCARE_TIMESCALE`` says what
the operator wants: ``auto`` (the default: TimescaleDB where the server offers it), ``on``
(TimescaleDB or refuse) or ``off`` (plain PostgreSQL, chosen knowingly). :func:`choose_flavour`
turns what the server offers, what the database already is and that wish into one decision,
or one clear refusal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import psycopg

from backend.errors import StoreError

TimescaleChoice = Literal["auto", "on", "off"]
Flavour = Literal["plain", "timescale"]

PRELOAD_HOW = (
    "preload it: add shared_preload_libraries = 'timescaledb' to postgresql.conf"
    " (keep any libraries already listed there, comma-separated) and restart PostgreSQL"
)


@dataclass(frozen=True, slots=True)
class Capabilities:
    server_version: int
    timescaledb_available: bool
    """The extension can be created here (listed in pg_available_extensions)."""
    timescaledb_installed: bool
    """The extension is created in this database."""
    timescaledb_preloaded: bool = False
    """The server loaded TimescaleDB at start (``shared_preload_libraries``): without that the
    extension can neither be created nor used, and trying ends the connection."""

    @property
    def timescale(self) -> bool:
        return self.timescaledb_installed


def detect(conn: psycopg.Connection) -> Capabilities:
    """Read-only catalog queries: safe on a server where TimescaleDB is installed but not
    preloaded (nothing here loads the extension's library)."""
    available = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')"
    ).fetchone()
    installed = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')"
    ).fetchone()
    # The preloaded loader defines this server-start setting; nothing else does (a value set in
    # postgresql.conf without the library stays a placeholder, which pg_settings does not list).
    # Unlike shared_preload_libraries itself, pg_settings is readable by every role.
    preloaded = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_settings WHERE name = 'timescaledb.bgw_launcher_poll_time')"
    ).fetchone()
    return Capabilities(
        server_version=conn.info.server_version,
        timescaledb_available=bool(available and available[0]),
        timescaledb_installed=bool(installed and installed[0]),
        timescaledb_preloaded=bool(preloaded and preloaded[0]),
    )


def not_preloaded_message(*, database_is_timescale: bool) -> str:
    if database_is_timescale:
        return (
            "this database uses TimescaleDB, but the PostgreSQL server does not preload it, so it"
            f" cannot be used; {PRELOAD_HOW}"
        )
    return (
        "TimescaleDB is installed on this PostgreSQL server but not preloaded, so it cannot be used."
        f" Either {PRELOAD_HOW}; or set NEARCARE_TIMESCALE=off to store on plain PostgreSQL"
        " (a database keeps the flavour it is first migrated with)"
    )


def choose_flavour(caps: Capabilities, *, choice: TimescaleChoice, recorded: Flavour | None) -> Flavour:
    """The flavour to migrate this database with, or a :class:`StoreError` saying what to do.

    ``recorded`` is the flavour its earlier migrations were applied with (None: a new database).
    """
    if choice not in ("auto", "on", "off"):
        raise StoreError(f"NEARCARE_TIMESCALE must be auto, on or off, not {choice!r}")
    if recorded == "plain" and caps.timescaledb_installed:
        raise StoreError(
            "this database was migrated for plain PostgreSQL, but the timescaledb extension has since"
            " been created in it; a database keeps its flavour: DROP EXTENSION timescaledb there"
        )
    if recorded == "timescale" and not caps.timescaledb_installed:
        raise StoreError(
            "this database was migrated with TimescaleDB, but the timescaledb extension is no longer"
            " created in it; restore it (CREATE EXTENSION timescaledb) before migrating"
        )
    if caps.timescaledb_installed:
        if choice == "off":
            raise StoreError(
                "NEARCARE_TIMESCALE=off, but this database already has the timescaledb extension"
                + (" and was migrated with it; a database keeps its flavour: unset NEARCARE_TIMESCALE"
                   if recorded else
                   " (some installations create it in template1, so every new database inherits it):"
                   " DROP EXTENSION timescaledb in this database, or unset NEARCARE_TIMESCALE")
            )
        if not caps.timescaledb_preloaded:
            raise StoreError(not_preloaded_message(database_is_timescale=True))
        return "timescale"
    if recorded == "plain":
        if choice == "on":
            raise StoreError(
                "NEARCARE_TIMESCALE=on, but this database was migrated for plain PostgreSQL; a database"
                " keeps its flavour: migrate a new database for TimescaleDB"
            )
        return "plain"
    # A new database.
    if choice == "off":
        return "plain"
    if not caps.timescaledb_available:
        if choice == "on":
            raise StoreError(
                "NEARCARE_TIMESCALE=on, but the timescaledb extension is not installed on this PostgreSQL"
                " server; install it, or unset NEARCARE_TIMESCALE to store on plain PostgreSQL"
            )
        return "plain"
    if not caps.timescaledb_preloaded:
        raise StoreError(not_preloaded_message(database_is_timescale=False))
    return "timescale"
