from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def _nearcare(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "nearcare_cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def test_the_agent_never_imports_the_backend_stack() -> None:
    code = ("import sys, edge_agent.agent, edge_agent.simulate, edge_agent.ble, edge_agent.cli\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('fastapi', 'psycopg', 'backend'))\n"
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_agent_run_with_bad_configuration_says_why(tmp_path: Path) -> None:
    out = _nearcare("agent", "run", env={"NEARCARE_AGENT_AGENT_ID": "home-1",
                                         "NEARCARE_AGENT_DEVICES_FILE": str(tmp_path / "missing.yaml"),
                                         "NEARCARE_AGENT_SPOOL_PATH": str(tmp_path / "spool.sqlite")})
    assert out.returncode == 2 and "cannot read device registry" in out.stderr
    out = _nearcare("agent", "run", env={"NEARCARE_AGENT_AGENT_ID": "not ok!"})
    assert out.returncode == 2 and "agent_id" in out.stderr


def test_agent_simulate_runs_and_stops(tmp_path: Path, mqtt_url: str, topics, collect, broker) -> None:
    col = collect(broker, topics.wildcard("measurements"))
    out = _nearcare("agent", "simulate", "--citizens", "2", "--speed", "3600", "--history-days", "1",
                    "--duration", "4", "--spool-dir", str(tmp_path), "--screen-port", "-1",
                    env={"NEARCARE_AGENT_MQTT_URL": mqtt_url, "NEARCARE_AGENT_TOPIC_ROOT": topics.root})
    assert out.returncode == 0, out.stderr[-2000:]
    assert col.wait_for(lambda: {e["agent_id"] for e in col.payloads()} == {"demo-agent-001", "demo-agent-002"}, 10)
