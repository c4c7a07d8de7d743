"""What this database can do. Detected, never assumed."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg


@dataclass(frozen=True, slots=True)
class Capabilities:
    server_version: int
    timescaledb_available: bool
    """The extension can be created here (listed in pg_available_extensions)."""
    timescaledb_installed: bool
    """The extension is created in this database."""

    @property
    def timescale(self) -> bool:
        return self.timescaledb_installed


def detect(conn: psycopg.Connection) -> Capabilities:
    available = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')"
    ).fetchone()
    installed = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')"
    ).fetchone()
    return Capabilities(
        server_version=conn.info.server_version,
        timescaledb_available=bool(available and available[0]),
        timescaledb_installed=bool(installed and installed[0]),
    )
