"""The home screen over HTTP, with the standard library only (a Raspberry Pi installs
``nearcare[agent]``, which has no web framework).

``GET /`` is the page, ``GET /status.json`` the same :class:`~edge_agent.screen.model.HomeScreen`
as JSON. Each request reads the spool afresh (a few small SQLite queries) and builds the view
with the pure model. A ``ThreadingHTTPServer`` runs on a daemon thread beside the uplink.

- **Never takes the agent down.** Every request is wrapped: an error is logged and answered with
  a calm 500 page; a port that is already taken is logged by :func:`start_screen`, which then
  returns None and the agent runs on without a screen.
- **Local by default.** It binds 127.0.0.1, and while bound to loopback it answers only requests
  whose ``Host`` is a loopback name, so a web page in the kiosk browser cannot read the citizen's
  readings through DNS rebinding. Binding another address (``screen_host``) shows the readings to
  anyone on that network: a choice for the operator, not a default.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from edge_agent.screen.model import HomeScreen, home_screen
from edge_agent.screen.page import render
from edge_agent.spool import Spool

log = logging.getLogger(__name__)

_LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
                                "connect-src 'self'"),
}
_SORRY = ('<!doctype html><html lang="da"><head><meta charset="utf-8"><meta http-equiv="refresh" content="15">'
          '<title>Mine målinger</title></head><body style="font:28px sans-serif;padding:1rem;background:#fbfaf6">'
          "<p>Skærmen opdateres om lidt.</p><p>Dine målinger er gemt på tabletten.</p></body></html>")


def snapshot_of(
    spool: Spool,
    *,
    connected: Callable[[], bool],
    zone: tzinfo,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Callable[[], HomeScreen]:
    """The I/O half: read the spool and the uplink's state, hand them to the pure model."""

    def snapshot() -> HomeScreen:
        readings = spool.recent()
        return home_screen(
            readings=readings,
            receipts=spool.receipts_of(r.id for r in readings),
            fill=spool.fill(),
            connected=connected(),
            plan=spool.plan(),
            now=clock(),
            zone=zone,
            message=spool.team_message(),
        )

    return snapshot


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "nearcare-screen"
    sys_version = ""

    def do_GET(self) -> None:
        try:
            if not self.server.host_allowed(self.headers.get("Host")):
                self._send(HTTPStatus.FORBIDDEN, b"forbidden host\n", "text/plain; charset=utf-8")
                return
            path = self.path.split("?", 1)[0]
            if path == "/":
                body = render(self.server.snapshot(), refresh_s=self.server.refresh_s).encode()
                self._send(HTTPStatus.OK, body, "text/html; charset=utf-8")
            elif path == "/status.json":
                body = json.dumps(self.server.snapshot().to_json(), ensure_ascii=False).encode()
                self._send(HTTPStatus.OK, body, "application/json; charset=utf-8")
            else:
                self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser went away mid-answer (a reload); nothing to tell anyone
        except Exception:
            log.exception("home screen: error answering %s", self.path)
            with contextlib.suppress(OSError):
                self._send(HTTPStatus.INTERNAL_SERVER_ERROR, _SORRY.encode(), "text/html; charset=utf-8")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in _HEADERS.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("home screen: %s - %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # A restarted agent must get its port back at once, not after TIME_WAIT.
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], snapshot: Callable[[], HomeScreen], refresh_s: int) -> None:
        self.snapshot = snapshot
        self.refresh_s = refresh_s
        super().__init__(address, _Handler)

    def host_allowed(self, host_header: str | None) -> bool:
        bound = str(self.server_address[0])
        if bound not in _LOOPBACK:
            return True
        if not host_header:
            return False
        name = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
        return name.lower() in _LOOPBACK

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("home screen: error in a connection from %s", client_address)


class ScreenServer:
    """The page on ``host:port`` (port 0: a free one; see :attr:`url`), served from a thread."""

    def __init__(self, snapshot: Callable[[], HomeScreen], *, host: str = "127.0.0.1", port: int = 8080,
                 refresh_s: int = 15) -> None:
        self._snapshot = snapshot
        self.host = host
        self.port = port
        self.refresh_s = refresh_s
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> ScreenServer:
        """Bind and serve; raises OSError if the address cannot be bound."""
        self._server = _Server((self.host, self.port), self._snapshot, self.refresh_s)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.5},
                                        name="home-screen", daemon=True)
        self._thread.start()
        log.info("home screen on %s", self.url)
        return self

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None


def start_screen(spool: Spool, *, connected: Callable[[], bool], zone: tzinfo, host: str,
                 port: int | None) -> ScreenServer | None:
    """Start the home screen, or log why not and return None: the agent runs on without it."""
    if port is None:
        log.info("home screen disabled (no screen port configured)")
        return None
    try:
        return ScreenServer(snapshot_of(spool, connected=connected, zone=zone), host=host, port=port).start()
    except OSError as exc:
        log.error("home screen cannot listen on %s:%s (%s); the agent runs on without it", host, port, exc)
        return None
