"""Migrations against the real PostgreSQL: applied once, tracked, idempotent."""

from __future__ import annotations

import subprocess
import sys

import psycopg

from backend.store import applied_versions, migrate
from backend.store.migrate import discover

EXPECTED_TABLES = {
    "teams", "patients", "agents", "devices", "device_users", "measurements",
    "rejected_readings", "dead_letters", "audit_log", "measurement_daily", "schema_migrations",
}


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
    return {r[0] for r in rows}


def test_migrate_creates_schema_and_is_idempotent(empty_database_url: str) -> None:
    first = migrate(empty_database_url)
    assert [m.version for m in first] == sorted(m.version for m in first)
    assert _tables(empty_database_url) >= EXPECTED_TABLES
    second = migrate(empty_database_url)
    assert second == []
    with psycopg.connect(empty_database_url) as conn:
        assert sorted(applied_versions(conn)) == [m.version for m in first]


def test_cli_migrate_twice_changes_nothing(empty_database_url: str) -> None:
    env = {"NEARCARE_DATABASE_URL": empty_database_url, "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, "-m", "nearcare_cli", "backend", "migrate"]
    out1 = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    assert "applied 0001_core" in out1
    before = _tables(empty_database_url)
    out2 = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    assert "database is up to date" in out2
    assert _tables(empty_database_url) == before


def test_measurement_id_is_the_idempotency_key(db: psycopg.Connection) -> None:
    db.execute(
        "INSERT INTO patients (external_ref, name, programme, municipality) VALUES ('mig-1', 'A', 'copd', 'Aarhus')"
    )
    pid = db.execute("SELECT id FROM patients WHERE external_ref = 'mig-1'").fetchone()[0]  # type: ignore[index]
    row = (
        "01a1f5d2-6c00-7a3b-9c4d-0e1f2a3b4c5d", "2026-11-22T07:30:40Z", pid, "agent-x", "spo2", 93.0,
        '{"spo2": 93.0}', "%", True, "2026-11-22T07:30:41Z",
    )
    sql = (
        "INSERT INTO measurements (id, measured_at, patient_id, agent_id, kind, value, components, unit,"
        " device_clock_trusted, agent_received_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
        " ON CONFLICT DO NOTHING"
    )
    db.execute(sql, row)
    db.execute(sql, row)
    n = db.execute("SELECT count(*) FROM measurements WHERE agent_id = 'agent-x'").fetchone()
    assert n == (1,)


def test_rollup_aggregates_local_days(db: psycopg.Connection) -> None:
    from datetime import UTC, datetime

    from backend.store.rollup import refresh

    db.execute(
        "INSERT INTO patients (external_ref, name, programme, municipality)"
        " VALUES ('roll-1', 'B', 'hypertension', 'Aarhus')"
    )
    pid = db.execute("SELECT id FROM patients WHERE external_ref = 'roll-1'").fetchone()[0]  # type: ignore[index]
    # 23:30 UTC on the 21st is 00:30 on the 22nd in Copenhagen: both readings are one local day.
    for i, (at, sys_, dia) in enumerate([("2026-11-21T23:30:00Z", 140, 90), ("2026-11-22T10:00:00Z", 130, 80)]):
        db.execute(
            "INSERT INTO measurements (id, measured_at, patient_id, agent_id, kind, value, components, unit,"
            " device_clock_trusted, agent_received_at) VALUES (%s,%s,%s,'agent-r','blood_pressure',%s,%s,"
            "'mm[Hg]',true,%s)",
            (f"01a1f5d2-6c00-7a3b-9c4d-00000000000{i}", at, pid, sys_,
             f'{{"systolic": {sys_}, "diastolic": {dia}, "mean_arterial": null}}', at),
        )
    # Plain: the rollup table is recomputed. TimescaleDB: the continuous aggregate is refreshed,
    # and measurement_daily reads it with the same local days.
    refresh(db, since=datetime(2026, 11, 21, tzinfo=UTC))
    rows = db.execute(
        "SELECT component, day::text, n, mean, min, max FROM measurement_daily"
        " WHERE patient_id = %s ORDER BY component",
        (pid,),
    ).fetchall()
    assert rows == [
        ("diastolic", "2026-11-22", 2, 85.0, 80.0, 90.0),
        ("systolic", "2026-11-22", 2, 135.0, 130.0, 140.0),
    ]


def test_discover_gives_the_timescale_form_only_to_a_timescale_database() -> None:
    plain = discover(timescale=False)
    ts = discover(timescale=True)
    assert [m.flavour for m in plain if m.version == 2] == ["plain"]
    assert [m.flavour for m in ts if m.version == 2] == ["timescale"]
    assert "create_hypertable" in next(m.sql for m in ts if m.version == 2)
