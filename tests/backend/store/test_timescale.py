"""The TimescaleDB path. It runs where the extension is available and says so plainly where not.

The skip is deliberate and visible (`-ra` prints its reason in every run): TimescaleDB cannot
be installed on this project's CI machine, so the plain-PostgreSQL path is what CI proves.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest

from backend.errors import StoreError
from backend.store import detect, migrate

if TYPE_CHECKING:
    from tests.faults.harness import PostgresCluster


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
        # The patient check is the plain store's per-statement trigger here too (0116), so both
        # refuse with the same words (tests/backend/ingest/test_writer.py); no foreign key is left.
        triggers = {r[0] for r in conn.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid IN ('measurements'::regclass, 'patients'::regclass)")}
        assert {"measurements_patient_exists", "patients_keep_measured"} <= triggers
        fks = conn.execute(
            "SELECT conrelid::regclass::text FROM pg_constraint WHERE contype = 'f'"
            " AND confrelid = 'patients'::regclass"
            " AND (conrelid = 'measurements'::regclass OR conrelid::regclass::text LIKE '\\_timescaledb%')"
        ).fetchall()
        assert fks == []


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


# -- a server where TimescaleDB is installed but not preloaded ------------------------------------
#
# That state cannot be faked on the shared server: the extension's files must be installed and
# the server started without loading them. So these tests start a private cluster from a
# PostgreSQL installation that has TimescaleDB, and skip, saying so, where there is none.


def _timescale_bindir() -> tuple[Path | None, list[str]]:
    """A PostgreSQL bin directory whose installation has the timescaledb extension's files."""
    looked: list[str] = []
    candidates = [os.environ.get("NEARCARE_TEST_TIMESCALE_PG_BIN"), os.environ.get("NEARCARE_PG_BIN"),
                  *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for c in dict.fromkeys(x for x in candidates if x):
        bindir = Path(c)
        looked.append(str(bindir))
        if not (bindir / "initdb").exists():
            continue
        try:
            share = Path(subprocess.run([str(bindir / "pg_config"), "--sharedir"], capture_output=True, text=True,
                                        check=True, timeout=30).stdout.strip())
        except (OSError, subprocess.SubprocessError):
            share = bindir.parents[3] / "share" / "postgresql" / bindir.parent.name  # Debian's layout
        if (share / "extension" / "timescaledb.control").exists():
            return bindir, looked
    return None, looked


class _Server:
    """A private cluster from that installation; ``preload`` restarts it with or without
    ``shared_preload_libraries = 'timescaledb'``."""

    def __init__(self, cluster: PostgresCluster) -> None:
        self.cluster = cluster
        self.preloaded = False

    def url(self, dbname: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.cluster.port}/{dbname}"

    def new_database(self) -> str:
        name = f"nearcare_{secrets.token_hex(4)}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def preload(self, on: bool) -> None:
        if on == self.preloaded:
            return
        self.cluster.stop()
        with (self.cluster.data / "postgresql.conf").open("a") as conf:  # the last line wins
            conf.write("shared_preload_libraries = 'timescaledb'\n" if on else "shared_preload_libraries = ''\n")
        self.cluster.start()
        self.preloaded = on


@pytest.fixture(scope="module")
def not_preloaded() -> Iterator[_Server]:
    bindir, looked = _timescale_bindir()
    if bindir is None:
        pytest.skip("'installed but not preloaded' NOT tested here: no PostgreSQL installation with TimescaleDB"
                    f" (looked in {', '.join(looked)}); set NEARCARE_TEST_TIMESCALE_PG_BIN to the bin"
                    " directory of one")
    from tests.faults import harness

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(harness, "PG_BIN", bindir)
        cluster = harness.PostgresCluster(Path(tempfile.mkdtemp(prefix="nearcare-tspg-")))
        try:
            cluster.init()
            with (cluster.data / "postgresql.conf").open("a") as conf:
                # A setting of the preloaded loader's, given without the library: a placeholder,
                # which detection must not take for "preloaded".
                conf.write("timescaledb.bgw_launcher_poll_time = 60000\ntimescaledb.telemetry_level = off\n")
            cluster.start()
            yield _Server(cluster)
        finally:
            cluster.close()
            shutil.rmtree(cluster.workdir, ignore_errors=True)


def _cli_migrate(url: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nearcare_cli", "backend", "migrate"],
        env={"NEARCARE_DATABASE_URL": url, "PATH": "/usr/bin:/bin", **env},
        capture_output=True, text=True, timeout=120,
    )


def test_migrate_where_timescaledb_is_installed_but_not_preloaded_stops_with_one_clear_message(
    not_preloaded: _Server,
) -> None:
    not_preloaded.preload(False)
    url = not_preloaded.new_database()
    with psycopg.connect(url) as conn:
        caps = detect(conn)
    assert caps.timescaledb_available and not caps.timescaledb_preloaded and not caps.timescaledb_installed

    with pytest.raises(StoreError) as refused:
        migrate(url)
    text = str(refused.value)
    assert "installed on this PostgreSQL server but not preloaded" in text
    assert "shared_preload_libraries = 'timescaledb'" in text and "postgresql.conf" in text and "restart" in text
    assert "NEARCARE_TIMESCALE=off" in text
    with psycopg.connect(url) as conn:  # refused before anything was changed
        assert conn.execute("SELECT to_regclass('schema_migrations')").fetchone() == (None,)
        assert not detect(conn).timescaledb_installed

    cli = _cli_migrate(url)
    assert cli.returncode == 1, cli
    assert cli.stdout == ""
    assert cli.stderr.strip() == f"error: {text}"  # one message: no traceback, no "connection is closed"

    # Chosen knowingly: the plain flavour.
    plain = _cli_migrate(url, NEARCARE_TIMESCALE="off")
    assert plain.returncode == 0, plain.stderr
    assert "storage: plain PostgreSQL" in plain.stdout
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT DISTINCT flavour FROM schema_migrations").fetchall() == [("plain",)]
    # It stays plain without the setting, on this server and after TimescaleDB is preloaded.
    assert migrate(url) == []
    not_preloaded.preload(True)
    assert migrate(url) == []
    with psycopg.connect(url) as conn:
        assert not detect(conn).timescaledb_installed


def test_a_timescale_database_on_a_server_that_stopped_preloading_is_refused_with_the_preload_fix(
    not_preloaded: _Server,
) -> None:
    not_preloaded.preload(True)
    url = not_preloaded.new_database()
    assert {m.flavour for m in migrate(url) if m.version == 2} == {"timescale"}
    not_preloaded.preload(False)
    with pytest.raises(StoreError) as refused:
        migrate(url)
    text = str(refused.value)
    assert "this database uses TimescaleDB" in text and "shared_preload_libraries = 'timescaledb'" in text
    assert "NEARCARE_TIMESCALE=off" not in text  # a migrated database keeps its flavour
    off = _cli_migrate(url, NEARCARE_TIMESCALE="off")
    assert off.returncode == 1 and "keeps its flavour" in off.stderr and "Traceback" not in off.stderr
