"""The test harness: real PostgreSQL and a real MQTT broker, never mocks.

- PostgreSQL at 127.0.0.1:5432 (user postgres, trust), or ``NEARCARE_TEST_DATABASE_URL``
  pointing at a database we may CREATE DATABASE from. Each test session gets its own fresh
  database, migrated, and dropped at the end.
- Mosquitto at 127.0.0.1:1883, or ``NEARCARE_TEST_MQTT_URL``; failing that, a private
  ``mosquitto`` started on a free port when the binary exists.
- Each session publishes under its own topic root, so parallel runs never steal each other's
  messages on a shared broker.

Where neither server can be had, the tests fail with a message that says how to get one.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vitals.broker import BrokerUrl, parse_broker_url
from vitals.wire import Topics

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_MQTT_URL = "mqtt://127.0.0.1:1883"
GOLDEN = Path(__file__).parent / "golden"


def _with_db(url: str, dbname: str) -> str:
    import psycopg.conninfo

    params = psycopg.conninfo.conninfo_to_dict(url)
    params["dbname"] = dbname
    return psycopg.conninfo.make_conninfo(**params)


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    import psycopg

    url = os.environ.get("NEARCARE_TEST_DATABASE_URL", DEFAULT_ADMIN_URL)
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        pytest.fail(
            f"No PostgreSQL at {url}: {exc}\n"
            "Start one (Debian: `pg_ctlcluster 15 main start`, or "
            "`docker run -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust timescale/timescaledb:latest-pg16`)"
            " or set NEARCARE_TEST_DATABASE_URL to a server where this user may CREATE DATABASE.",
            pytrace=False,
        )
    return url


def create_database(admin_url: str, prefix: str = "nearcare_test") -> tuple[str, str]:
    """A new empty database; returns (name, url)."""
    import psycopg

    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, _with_db(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def database_url(pg_admin_url: str) -> Iterator[str]:
    """This session's own migrated database."""
    from backend.store import migrate

    name, url = create_database(pg_admin_url)
    try:
        migrate(url)
        yield url
    finally:
        drop_database(pg_admin_url, name)


@pytest.fixture
def empty_database_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh, unmigrated database for one test."""
    name, url = create_database(pg_admin_url, "nearcare_empty")
    try:
        yield url
    finally:
        drop_database(pg_admin_url, name)


@pytest.fixture
def db(database_url: str) -> Iterator[object]:
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _mqtt_reachable(broker: BrokerUrl, timeout: float = 3.0) -> str | None:
    """None when a v5 CONNECT is accepted, else why not."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    if broker.username:
        client.username_pw_set(broker.username, broker.password)
    try:
        client.connect(broker.host, broker.port, keepalive=10)
    except OSError as exc:
        return str(exc)
    client.loop_start()
    deadline = time.monotonic() + timeout
    while not client.is_connected() and time.monotonic() < deadline:
        time.sleep(0.02)
    ok = client.is_connected()
    client.disconnect()
    client.loop_stop()
    return None if ok else "no CONNACK"


def start_private_mosquitto(extra_conf: str = "") -> tuple[subprocess.Popen[bytes], int, Path]:
    """A private Mosquitto on a free port, for tests that need their own broker."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not os.path.exists(binary):
        raise FileNotFoundError("mosquitto binary not found (Debian: apt-get install mosquitto)")
    port = _free_port()
    workdir = Path(tempfile.mkdtemp(prefix="nearcare-mosq-"))
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n{extra_conf}")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, port, workdir
        except OSError:
            time.sleep(0.05)
    proc.kill()
    err = proc.stderr.read() if proc.stderr else b""
    raise RuntimeError(f"private mosquitto did not start: {err!r}")


@pytest.fixture(scope="session")
def mqtt_url() -> Iterator[str]:
    url = os.environ.get("NEARCARE_TEST_MQTT_URL", DEFAULT_MQTT_URL)
    why = _mqtt_reachable(parse_broker_url(url))
    if why is None:
        yield url
        return
    try:
        proc, port, workdir = start_private_mosquitto()
    except (FileNotFoundError, RuntimeError) as exc:
        pytest.fail(
            f"No MQTT v5 broker at {url} ({why}) and no private one: {exc}\n"
            "Start one (Debian: `apt-get install mosquitto && mosquitto -d`) or set NEARCARE_TEST_MQTT_URL.",
            pytrace=False,
        )
    try:
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def broker(mqtt_url: str) -> BrokerUrl:
    return parse_broker_url(mqtt_url)


@pytest.fixture(scope="session")
def topics() -> Topics:
    """This session's private topic root on the shared broker."""
    return Topics(f"nearcare-test-{secrets.token_hex(4)}/v1")


@pytest.fixture
def settings(database_url: str, mqtt_url: str, topics: Topics):  # type: ignore[no-untyped-def]
    from backend.settings import Settings

    return Settings(
        database_url=database_url,
        mqtt_url=mqtt_url,
        topic_root=topics.root,
        ingest_group=f"ingest-{secrets.token_hex(3)}",
        demo=True,
    )


class PrivateBroker:
    """A private Mosquitto for one test: stop it and start it again on the same port."""

    def __init__(self, extra_conf: str = "") -> None:
        self.extra_conf = extra_conf
        self.proc: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self.workdir: Path | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> PrivateBroker:
        if self.port is None:
            self.proc, self.port, self.workdir = start_private_mosquitto(self.extra_conf)
            return self
        assert self.workdir is not None
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([binary, "-c", str(self.workdir / "mosquitto.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("private mosquitto did not restart")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            if self.proc.stderr is not None:
                self.proc.stderr.close()
            self.proc = None


@pytest.fixture
def private_broker() -> Iterator[PrivateBroker]:
    """A started private Mosquitto (v5, anonymous) on a free port; `.stop()`/`.start()` to take
    it away and bring it back on the same port."""
    broker = PrivateBroker().start()
    try:
        yield broker
    finally:
        broker.stop()
        if broker.workdir:
            shutil.rmtree(broker.workdir, ignore_errors=True)


# ---- a live app for the web, API and browser tests (tests/backend/web/_support.py) ----------
# Module-scoped: one uvicorn server and one small world of teams, users and patients per module.


@pytest.fixture(scope="module")
def module_settings(database_url: str, mqtt_url: str, topics: Topics):  # type: ignore[no-untyped-def]
    from backend.settings import Settings

    group = f"ingest-{secrets.token_hex(3)}"
    pool = {"pool_min_size": 1, "pool_max_size": 4}
    return Settings(database_url=database_url, mqtt_url=mqtt_url, topic_root=topics.root, ingest_group=group,
                    demo=True, **pool)


@pytest.fixture(scope="module")
def world(database_url: str):  # type: ignore[no-untyped-def]
    import psycopg

    from tests.backend.web._support import build_world

    with psycopg.connect(database_url, autocommit=True) as conn:
        return build_world(conn)


@pytest.fixture(scope="module")
def live_state() -> dict[str, object]:
    """Extra ``app.state`` for the live server (a test folder's conftest may override it)."""
    return {}


@pytest.fixture(scope="module")
def live(module_settings, world, live_state):  # type: ignore[no-untyped-def]
    from tests.backend.web._support import LiveServer

    with LiveServer(module_settings, **live_state) as server:
        yield server


@pytest.fixture
def client(live):  # type: ignore[no-untyped-def]
    import httpx

    with httpx.Client(base_url=live.url, follow_redirects=False, timeout=30) as c:
        yield c
