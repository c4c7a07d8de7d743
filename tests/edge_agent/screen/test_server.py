from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from edge_agent.screen.server import ScreenServer, snapshot_of, start_screen
from edge_agent.spool import Spool
from vitals.wire import Receipt

CPH = ZoneInfo("Europe/Copenhagen")


def get(server: ScreenServer, path: str, host: str | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.putrequest("GET", path, skip_host=True)
        conn.putheader("Host", host or f"127.0.0.1:{server.port}")
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "s.sqlite")


def test_page_and_status_over_real_http(spool: Spool, make_measurement, agent_id) -> None:
    online = {"now": False}
    server = ScreenServer(snapshot_of(spool, connected=lambda: online["now"], zone=CPH), port=0).start()
    try:
        m = make_measurement(95.0)
        spool.append(m)
        status, headers, body = get(server, "/status.json")
        data = json.loads(body)
        assert status == 200 and headers["content-type"].startswith("application/json")
        assert data["headline"] == "Din måling er gemt og sendes, når der er forbindelse"
        assert [r["state_text"] for r in data["today"]] == ["Gemt på tabletten"]

        spool.mark_sent([m.id])
        spool.record_receipt(Receipt(agent_id=agent_id, status="stored", ids=(m.id,), at=m.measured_at))
        online["now"] = True
        status, headers, body = get(server, "/")
        page = body.decode()
        assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
        assert headers["cache-control"] == "no-store" and "default-src 'none'" in headers["content-security-policy"]
        assert '<html lang="da">' in page and "Alt er modtaget" in page and "95 %" in page
        assert 'data-state="stored"' in page and ">Modtaget<" in page
        assert get(server, "/status.json?t=1")[0] == 200
        assert get(server, "/admin")[0] == 404
        assert get(server, "/", host="localhost")[0] == 200
        # A page from elsewhere that rebinds its name to 127.0.0.1 is refused.
        assert get(server, "/status.json", host="evil.example:8080")[0] == 403
    finally:
        server.stop()


def test_an_error_in_a_request_is_logged_and_the_server_goes_on(caplog) -> None:
    calls = {"n": 0}

    def flaky():
        calls["n"] += 1
        raise RuntimeError("database is locked")

    server = ScreenServer(flaky, port=0).start()
    try:
        status, _, body = get(server, "/")
        assert status == 500 and "Dine målinger er gemt på tabletten" in body.decode()
        assert "database is locked" in caplog.text
        assert get(server, "/status.json")[0] == 500 and calls["n"] == 2  # still answering
    finally:
        server.stop()


def test_a_taken_port_or_no_port_leaves_the_agent_running(spool: Spool, caplog) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        assert start_screen(spool, connected=lambda: True, zone=CPH, host="127.0.0.1", port=port) is None
        assert "cannot listen" in caplog.text and "runs on without it" in caplog.text
    finally:
        taken.close()
    assert start_screen(spool, connected=lambda: True, zone=CPH, host="127.0.0.1", port=None) is None
    started = start_screen(spool, connected=lambda: True, zone=CPH, host="127.0.0.1", port=0)
    assert started is not None
    try:
        assert get(started, "/")[0] == 200
    finally:
        started.stop()
