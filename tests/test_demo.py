"""`make demo`'s command on a machine with nothing configured: embedded PostgreSQL and broker,
simulated citizens, alerts on the nurse's worklist, and a clean stop with no orphan server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from backend.embedded import free_port

ROOT = Path(__file__).resolve().parents[1]




def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def _servers_of(pid: int, workdir: Path) -> dict[int, str]:
    """The demo's child processes, plus the servers it started that daemonised away from it
    (pg_ctl detaches postgres): recognised by this demo's own temp directory (``TMPDIR`` points
    it into the test's), so another demo running on the machine is never counted."""
    out = subprocess.run(["ps", "-ww", "-e", "-o", "pid=,ppid=,args="], capture_output=True, text=True).stdout
    rows = [line.split(None, 2) for line in out.splitlines()]
    procs = {int(r[0]): (int(r[1]), r[2] if len(r) > 2 else "") for r in rows}
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, (pp, _) in procs.items() if pp in frontier} - found
        found |= frontier
    found |= {p for p, (_, args) in procs.items() if str(workdir) in args}
    return {p: procs[p][1] for p in found}


@pytest.mark.slow
def test_demo_runs_on_embedded_defaults_shows_alerts_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEARCARE_")}
    env["PYTHONWARNINGS"] = "ignore"
    workdir = tmp_path / "tmp"
    workdir.mkdir()
    env["TMPDIR"] = str(workdir)  # the demo's embedded servers live under it
    log = (tmp_path / "demo.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "nearcare_cli", "demo", "--port", str(port), "--citizens", "6"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while _get(f"{base}/healthz")[0] != 200:
            assert proc.poll() is None, (tmp_path / "demo.log").read_text()
            assert time.monotonic() < deadline, "the demo's /healthz never answered 200"
            time.sleep(0.5)
        banner = (tmp_path / "demo.log").read_text()
        assert "login      nurse" in banner and "postgresql://" in banner

        body = json.dumps({"username": "sygeplejerske", "password": "demo-nearcare"}).encode()
        req = urllib.request.Request(f"{base}/api/v1/auth/token", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            token = json.loads(resp.read())["access_token"]

        # The simulated citizens' deteriorations raise alerts on the nurse's worklist.
        deadline = time.monotonic() + 180
        alerts: list[dict] = []
        while not alerts:
            assert time.monotonic() < deadline, "no alert reached the nurse's worklist"
            status, payload = _get(f"{base}/api/v1/worklist", token)
            assert status == 200, payload[:300]
            rows = json.loads(payload)["rows"]
            alerts = [a for row in rows for a in row.get("alerts", [])]
            time.sleep(2)
        # The adherence-gap citizen's missed measurements raise a blue alarm within the replay.
        deadline = time.monotonic() + 240
        while not any(a.get("severity") == "blue" for a in alerts):
            assert time.monotonic() < deadline, f"no blue alarm: {[a.get('severity') for a in alerts]}"
            time.sleep(3)
            status, payload = _get(f"{base}/api/v1/worklist", token)
            assert status == 200, payload[:300]
            alerts = [a for row in json.loads(payload)["rows"] for a in row.get("alerts", [])]
        # "Tilmeld gateway" works in the demo: the admin gets a one-time code.
        body = json.dumps({"username": "admin", "password": "demo-nearcare"}).encode()
        req = urllib.request.Request(f"{base}/api/v1/auth/token", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            admin_token = json.loads(resp.read())["access_token"]
        enrol = json.dumps({"agent_id": "ny-tablet-1"}).encode()
        req = urllib.request.Request(f"{base}/api/v1/admin/agents", data=enrol,
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {admin_token}"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.status == 200 and json.loads(resp.read())["code"]
        servers = _servers_of(proc.pid, workdir)
        assert any("postgres" in a for a in servers.values()), servers
        assert any("mosquitto" in a for a in servers.values()), servers
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        finally:
            log.close()
    assert proc.returncode == 0, (tmp_path / "demo.log").read_text()[-3000:]
    # The demo waits for its servers before it exits; the short grace only absorbs the kernel
    # reaping a daemonised process.
    deadline = time.monotonic() + 5
    while any(Path(f"/proc/{pid}").exists() for pid in servers) and time.monotonic() < deadline:
        time.sleep(0.2)
    alive = {pid: args for pid, args in servers.items() if Path(f"/proc/{pid}").exists()}
    assert alive == {}, f"orphan processes after Ctrl-C: {alive}"
    assert "embedded servers are down" in (tmp_path / "demo.log").read_text()
