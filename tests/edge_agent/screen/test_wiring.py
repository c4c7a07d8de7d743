from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from backend.embedded import free_port
from edge_agent.settings import AgentSettings
from edge_agent.spool import Spool

ROOT = Path(__file__).parents[3]




def test_settings_screen_defaults_and_off(monkeypatch) -> None:
    s = AgentSettings(agent_id="home-1")
    assert (s.screen_host, s.screen_port) == ("127.0.0.1", 8080)
    for off in ("", "off", "none"):
        monkeypatch.setenv("NEARCARE_AGENT_SCREEN_PORT", off)
        assert AgentSettings(agent_id="home-1").screen_port is None
    monkeypatch.setenv("NEARCARE_AGENT_SCREEN_PORT", "8181")
    assert AgentSettings(agent_id="home-1").screen_port == 8181


def test_agent_simulate_serves_the_chosen_citizens_screen(tmp_path: Path, mqtt_url: str, topics) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "nearcare_cli", "agent", "simulate", "--citizens", "2", "--speed", "3600",
         "--history-days", "1", "--duration", "6", "--spool-dir", str(tmp_path), "--screen-port", str(port),
         "--screen-agent", "demo-agent-002"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "NEARCARE_AGENT_MQTT_URL": mqtt_url, "NEARCARE_AGENT_TOPIC_ROOT": topics.root},
    )
    try:
        data = None
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline and data is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/status.json", timeout=2) as r:
                    data = json.load(r)
            except OSError:
                time.sleep(0.2)
        assert data is not None, "the simulated citizen's screen never answered"
        assert data["connected"] in (True, False) and data["headline"]
        # demo-agent-002 is the heart-failure citizen: a scale among the devices. A day of history
        # means something was measured since yesterday, listed today or as the latest before.
        shown = data["today"] or [data["latest_before_today"]]
        assert shown[0] is not None
    finally:
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
    assert f"home screen on http://127.0.0.1:{port}/" in err
    # The screen showed demo-agent-002's own readings, not the first citizen's.
    ids = {r["id"] for r in shown}
    assert ids <= {str(r.id) for r in Spool(tmp_path / "demo-agent-002.sqlite").recent()}
    assert not ids & {str(r.id) for r in Spool(tmp_path / "demo-agent-001.sqlite").recent()}


def test_agent_run_serves_the_screen_and_stops_cleanly(tmp_path: Path, mqtt_url: str, topics) -> None:
    import signal

    port = free_port()
    (tmp_path / "devices.yaml").write_text("devices: []\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "nearcare_cli", "agent", "run"], cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
        env={**os.environ, "NEARCARE_AGENT_AGENT_ID": "screen-run-1", "NEARCARE_AGENT_MQTT_URL": mqtt_url,
             "NEARCARE_AGENT_TOPIC_ROOT": topics.root, "NEARCARE_AGENT_DEVICES_FILE": str(tmp_path / "devices.yaml"),
             "NEARCARE_AGENT_SPOOL_PATH": str(tmp_path / "spool.sqlite"), "NEARCARE_AGENT_SCREEN_PORT": str(port)},
    )
    try:
        data = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (data is None or not data["connected"]):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/status.json", timeout=2) as r:
                    data = json.load(r)
            except OSError:
                time.sleep(0.2)
            else:
                time.sleep(0.1)
        assert data is not None and data["connected"], data
        assert data["headline"] == "Ingen målinger i dag endnu" and data["today"] == []
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err[-2000:]
    assert "agent screen-run-1 stopped" in err
