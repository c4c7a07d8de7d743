"""Helpers for the alerting tests: teams, patients and readings in this session's database."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest


@dataclass
class Seeder:
    conn: Any

    def teams(self) -> None:
        from backend.registry.demo import seed_teams

        seed_teams(self.conn)

    def patient(self, programme: str = "copd", municipality: str = "Aarhus", department: str | None = None) -> int:
        ref = f"t-{secrets.token_hex(5)}"
        row = self.conn.execute(
            "INSERT INTO patients (external_ref, name, programme, municipality, department)"
            " VALUES (%s,%s,%s,%s,%s) RETURNING id", (ref, f"Borger {ref}", programme, municipality, department),
        ).fetchone()
        pid = int(row[0])
        self.conn.execute("INSERT INTO agents (id, patient_id) VALUES (%s, %s)", (f"ag-{ref}", pid))
        return pid

    def agent_of(self, pid: int) -> str:
        return str(self.conn.execute("SELECT id FROM agents WHERE patient_id = %s", (pid,)).fetchone()[0])

    def reading(self, pid: int, kind: str, at: datetime, quality: tuple[str, ...] = (), **values: float) -> Any:
        from psycopg.types.json import Jsonb

        from backend.readings import StoredReading
        from vitals import MeasurementKind, spec

        mid = uuid.uuid4()
        primary = values[spec(kind).primary.name]
        agent = self.agent_of(pid)
        self.conn.execute(
            "INSERT INTO measurements (id, measured_at, patient_id, agent_id, kind, value, components, unit,"
            " device_clock_trusted, agent_received_at, quality) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,true,%s,%s)",
            (mid, at, pid, agent, kind, primary, Jsonb(values), spec(kind).unit, at, list(quality)),
        )
        return StoredReading(id=mid, patient_id=pid, agent_id=agent, kind=MeasurementKind(kind), components=values,
                             measured_at=at, stored_at=datetime.now(UTC), quality=quality)


@pytest.fixture
def seed(db: Any) -> Seeder:
    s = Seeder(db)
    s.teams()
    return s


@pytest.fixture
def pool(database_url: str) -> Iterator[Any]:
    from backend.store import open_pool

    p = open_pool(database_url, min_size=1, max_size=4)
    try:
        yield p
    finally:
        p.close()


@pytest.fixture
def own_db_url(empty_database_url: str) -> str:
    """A migrated database of this test's own: the catch-up job looks at every stored reading,
    so it must not see the rest of the session's."""
    from backend.store import migrate

    migrate(empty_database_url)
    return empty_database_url
