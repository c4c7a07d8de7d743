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
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
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


@pytest.fixture(scope="session")
def mqtt_url() -> Iterator[str]:
    url = os.environ.get("NEARCARE_TEST_MQTT_URL", DEFAULT_MQTT_URL)
    why = _mqtt_reachable(parse_broker_url(url))
    if why is None:
        yield url
        return
    from backend.errors import BackendError

    try:
        fallback = PrivateBroker().start()
    except BackendError as exc:
        pytest.fail(
            f"No MQTT v5 broker at {url} ({why}) and no private one: {exc}\n"
            "Start one (Debian: `apt-get install mosquitto && mosquitto -d`) or set NEARCARE_TEST_MQTT_URL.",
            pytrace=False,
        )
    try:
        yield fallback.url
    finally:
        fallback.close()


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
    """A private Mosquitto with a config of the test's own, on a free port; `.stop()` and
    `.start()` take it away and bring it back on the same port.

    ``conf`` may name files written beside it as ``{dir}/name``. It keeps every queued QoS 1
    message (Mosquitto's default drops them beyond 1000 per offline session) and runs as the
    current user, so 0600 password and ACL files in our private directory stay readable.
    """

    def __init__(self, conf: str = "allow_anonymous true", files: dict[str, str] | None = None) -> None:
        from backend.embedded import free_port

        self.workdir = Path(tempfile.mkdtemp(prefix="nearcare-mosq-"))
        for name, text in (files or {}).items():
            (self.workdir / name).write_text(text)
            (self.workdir / name).chmod(0o600)
        self.port = free_port()
        (self.workdir / "mosquitto.conf").write_text(
            f"listener {self.port} 127.0.0.1\npersistence false\nmax_queued_messages 0\nuser root\n"
            f"{conf.replace('{dir}', str(self.workdir))}\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> PrivateBroker:
        from backend.embedded import start_mosquitto

        self.proc = start_mosquitto(self.workdir / "mosquitto.conf", self.port)
        return self

    def stop(self) -> None:
        from backend.embedded import stop_process

        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


@pytest.fixture
def private_broker_factory() -> Iterator[Callable[..., PrivateBroker]]:
    """Start private brokers with their own config: ``make(conf, files)``; all closed after."""
    made: list[PrivateBroker] = []

    def make(conf: str = "allow_anonymous true", files: dict[str, str] | None = None) -> PrivateBroker:
        broker = PrivateBroker(conf, files).start()
        made.append(broker)
        return broker

    try:
        yield make
    finally:
        for broker in made:
            broker.close()


@pytest.fixture
def private_broker(private_broker_factory: Callable[..., PrivateBroker]) -> PrivateBroker:
    """A started private Mosquitto (v5, anonymous) on a free port."""
    return private_broker_factory()


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
