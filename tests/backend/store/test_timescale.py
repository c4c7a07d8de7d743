"""The TimescaleDB path. It runs where the extension is available and says so plainly where not.

The skip is deliberate and visible (`-ra` prints its reason in every run): TimescaleDB cannot
be installed on this project's CI machine, so the plain-PostgreSQL path is what CI proves.
"""

from __future__ import annotations

import psycopg
import pytest

from backend.store import detect, migrate


def _available(url: str) -> bool:
    with psycopg.connect(url) as conn:
        return detect(conn).timescaledb_available


def test_timescale_hypertable_cagg_and_compression(empty_database_url: str) -> None:
    if not _available(empty_database_url):
        pytest.skip("TimescaleDB NOT tested here: the timescaledb extension is not available on this server")
    applied = migrate(empty_database_url)
    assert {m.flavour for m in applied if m.version == 2} == {"timescale"}
    with psycopg.connect(empty_database_url) as conn:
        assert detect(conn).timescale
        hyper = conn.execute(
            "SELECT count(*) FROM timescaledb_information.hypertables WHERE hypertable_name = 'measurements'"
        ).fetchone()
        assert hyper == (1,)
        cagg = conn.execute(
            "SELECT count(*) FROM timescaledb_information.continuous_aggregates"
            " WHERE view_name = 'measurement_daily_cagg'"
        ).fetchone()
        assert cagg == (1,)
        jobs = conn.execute(
            "SELECT proc_name FROM timescaledb_information.jobs WHERE hypertable_name IN ('measurements')"
        ).fetchall()
        assert ("policy_compression",) in jobs


def test_plain_path_when_timescale_absent(empty_database_url: str) -> None:
    if _available(empty_database_url):
        pytest.skip("timescaledb is available here; the plain path is exercised on servers without it")
    migrate(empty_database_url)
    with psycopg.connect(empty_database_url) as conn:
        assert not detect(conn).timescale
        idx = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'measurements'")}
        assert {"measurements_time_brin", "measurements_patient_kind_time"} <= idx
        flavours = conn.execute("SELECT DISTINCT flavour FROM schema_migrations").fetchall()
        assert flavours == [("plain",)]
