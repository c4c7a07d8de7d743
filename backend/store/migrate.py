"""Apply the numbered SQL migrations in ``migrations/``, once each, tracked in a table.

``NNNN_name.sql`` is the plain PostgreSQL form; where a ``NNNN_name.timescale.sql`` sits beside
it and TimescaleDB is present, that form is applied instead. Which form ran is recorded, so a
database never silently changes flavour. Concurrent starters serialise on an advisory lock.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import psycopg

from backend.errors import StoreError
from backend.store.capabilities import Capabilities, detect

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)(\.timescale)?\.sql$")
_LOCK_KEY = 0x6E656172  # "near": serialises migrations across processes


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str
    flavour: str  # "plain" or "timescale"


def discover(caps: Capabilities, directory: Path | None = None) -> list[Migration]:
    root = directory or Path(str(resources.files("backend.store") / "migrations"))
    plain: dict[int, tuple[str, Path]] = {}
    timescale: dict[int, Path] = {}
    for path in sorted(root.iterdir()):
        m = _NAME.match(path.name)
        if not m:
            continue
        version, name, ts = int(m.group(1)), m.group(2), m.group(3)
        if ts:
            timescale[version] = path
        else:
            if version in plain:
                raise StoreError(f"two migrations numbered {version:04d}: {plain[version][1].name}, {path.name}")
            plain[version] = (name, path)
    out = []
    for version in sorted(plain):
        name, path = plain[version]
        if caps.timescale and version in timescale:
            out.append(Migration(version, name, timescale[version].read_text(), "timescale"))
        else:
            out.append(Migration(version, name, path.read_text(), "plain"))
    return out


def applied_versions(conn: psycopg.Connection) -> dict[int, str]:
    rows = conn.execute(
        "SELECT version, flavour FROM schema_migrations ORDER BY version"
    ).fetchall()
    return {int(v): str(f) for v, f in rows}


def migrate(database_url: str, *, use_timescale: bool = True, directory: Path | None = None) -> list[Migration]:
    """Apply what is missing; return what was applied (empty when up to date)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            if use_timescale:
                avail = detect(conn)
                if avail.timescaledb_available and not avail.timescaledb_installed:
                    conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            caps = detect(conn)
            conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version    integer PRIMARY KEY,
                       name       text NOT NULL,
                       flavour    text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            done = applied_versions(conn)
            applied = []
            for m in discover(caps, directory):
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
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
