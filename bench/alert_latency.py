"""Alert latency: MQTT publish -> stored -> rules -> alert stored -> event (NOTIFY), through real
backend processes, with and without an ingest burst in the same run.

The system under test runs as OS processes against a fresh database on the local PostgreSQL
and the local Mosquitto: ``--layout roles`` (the production topology's data path: its
``nearcare backend ingest`` and ``nearcare backend rules`` processes, ``backend.roles.
PRODUCTION_TOPOLOGY``; ``--ingest``/``--rules`` change the counts) or ``--layout single``
(``nearcare backend run``, every role in one process). This process only publishes (from child
processes) and listens: alert events on PostgreSQL NOTIFY (what every web process relays to the
live worklist), and the agents' "stored" receipts.

Phases, each timed per reading from its publish:
1. baseline: breaching SpO2 readings, one per envelope, at ``--rate`` to ``--patients`` citizens;
   publish -> the backend's "stored" receipt (end-to-end acknowledgement, no rules on the path);
2. alerts: the same stream, publish -> the alert event naming the reading;
3. alerts under a burst: the same stream while other agents drain a backlog of in-range readings
   at ``--burst-rate`` readings/s (envelopes of 50) for ``--burst-seconds``.

    .venv/bin/python bench/alert_latency.py [--layout roles|single] [--rate 1000] [--seconds 10]
        [--patients 2000] [--burst-rate 10000] [--burst-seconds 3]

Last line: ``RESULT layout=… alert_p50_ms=… alert_p99_ms=… burst_alert_p99_ms=… rate=… burst_rate=…``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import secrets
import signal
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _publisher(url: str, items: list[tuple[str, bytes]], rate: float, start_at: float, pipe: Any) -> None:
    """Publish ``items`` at ``rate`` messages/s from ``start_at`` (perf_counter, shared across
    processes on Linux); send back each message's send time."""
    import paho.mqtt.client as mqtt

    from vitals.broker import parse_broker_url

    b = parse_broker_url(url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(5000)
    client.connect(b.host, b.port, keepalive=30)
    client.loop_start()
    while not client.is_connected():
        time.sleep(0.01)
    while time.perf_counter() < start_at:
        time.sleep(0.001)
    sent: list[float] = []
    start = time.perf_counter()
    for i, (topic, body) in enumerate(items):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        sent.append(time.perf_counter())
        client.publish(topic, body, qos=1)
    elapsed = time.perf_counter() - start
    time.sleep(1.0)  # the last QoS 1 messages reach the broker
    client.disconnect()
    client.loop_stop()
    pipe.send((sent, elapsed))


class Listener:
    """Alert events (NOTIFY) and "stored" receipts, each with its arrival time."""

    def __init__(self, db_url: str, mqtt_url: str, topics: Any) -> None:
        import paho.mqtt.client as mqtt
        import psycopg

        from vitals.broker import parse_broker_url
        from vitals.wire import TopicKind

        self.alerts: dict[str, float] = {}
        self.stored: dict[str, float] = {}
        self._stop = threading.Event()
        self._conn = psycopg.connect(db_url, autocommit=True)
        self._conn.execute("LISTEN nearcare_alerts")
        threading.Thread(target=self._listen, daemon=True).start()
        b = parse_broker_url(mqtt_url)
        self._mqtt = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self._mqtt.on_message = self._on_receipt
        self._mqtt.connect(b.host, b.port, keepalive=30)
        self._mqtt.subscribe(topics.wildcard(TopicKind.RECEIPTS), qos=1)
        self._mqtt.loop_start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            for n in self._conn.notifies(timeout=0.5):
                t = time.perf_counter()
                data = json.loads(n.payload)
                if data.get("type", "").startswith("alert."):
                    mid = data.get("data", {}).get("measurement_id")
                    if mid:
                        self.alerts.setdefault(mid, t)

    def _on_receipt(self, client: Any, userdata: Any, msg: Any) -> None:
        t = time.perf_counter()
        body = json.loads(msg.payload)
        if body.get("status") == "stored":
            for mid in body.get("ids", ()):
                self.stored.setdefault(mid, t)

    def close(self) -> None:
        self._stop.set()
        self._mqtt.disconnect()
        self._mqtt.loop_stop()


def _stream(agents: list[str], topics: Any, n: int, first_ms: int) -> list[tuple[str, bytes, str]]:
    """One breaching SpO2 reading per envelope, measured as it is sent (citizens measuring now):
    84 and 83 in turn, under the red limit of 85, so each updates the citizen's open red alert
    and the alert's event names the reading."""
    from vitals.wire import Device, Envelope, Measurement, new_measurement_id

    now = datetime.now(UTC) + timedelta(seconds=3)  # the publishers start three seconds from now
    out = []
    for i in range(n):
        agent = agents[i % len(agents)]
        at = now + timedelta(milliseconds=first_ms + i)
        m = Measurement(id=new_measurement_id(), kind="spo2", values={"spo2": 84.0 if i % 2 else 83.0}, unit="%",
                        measured_at=at, device_clock_trusted=True, received_at=at,
                        device=Device(address="C0:4E:30:00:00:01"))
        out.append((topics.measurements(agent), Envelope(agent_id=agent, sent_at=at, measurements=(m,)).to_json(),
                    str(m.id)))
    return out


def _backlog(agents: list[str], topics: Any, n: int, per: int = 50) -> list[tuple[str, bytes]]:
    """A returning tablet's backlog: in-range readings from hours ago, 50 per envelope."""
    from vitals.wire import Device, Envelope, Measurement, new_measurement_id

    base = datetime.now(UTC) - timedelta(hours=20)
    out = []
    for e in range(n // per):
        agent = agents[e % len(agents)]
        ms = tuple(Measurement(id=new_measurement_id(), kind="spo2", values={"spo2": 96.0}, unit="%",
                               measured_at=base + timedelta(seconds=e * per + j), device_clock_trusted=True,
                               received_at=base, device=Device(address="C0:4E:30:00:00:01")) for j in range(per))
        out.append((topics.measurements(agent), Envelope(agent_id=agent, sent_at=base, measurements=ms).to_json()))
    return out


def _start(env: dict[str, str], layout: str, counts: dict[str, int]) -> list[subprocess.Popen[str]]:
    """The backend processes, each ready before this returns: ``roles`` print a ready line;
    ``backend run`` answers /readyz."""
    import httpx

    from backend.embedded import free_port, wait_for

    port = free_port()
    cmds = ([*(["ingest", "--no-migrate", "--worker", str(n)] for n in range(counts["ingest"])),
             *(["rules", "--no-migrate"] for _ in range(counts["rules"]))] if layout == "roles"
            else [["run", "--port", str(port)]])
    procs = [subprocess.Popen([sys.executable, "-m", "nearcare_cli", "backend", *cmd], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for cmd in cmds]
    if layout == "roles":
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline()
            if "ready" not in line:
                raise SystemExit(f"a backend process did not start: {line!r}")
    for cmd, p in zip(cmds, procs, strict=True):  # keep reading: a full pipe would stall the process
        threading.Thread(target=_drain, args=(p, cmd[0]), daemon=True).start()
    if layout == "roles":
        return procs

    def ready() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(lambda: procs[0].poll() is not None or ready(), timeout=90, what="backend run ready")
    if procs[0].poll() is not None:
        raise SystemExit("backend run did not start")
    return procs


def _drain(proc: subprocess.Popen[str], role: str) -> None:
    """Pass a backend process's log lines on to stderr, prefixed with its role."""
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stderr.write(f"[{role}] {line}")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc; 0 where unreadable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


class CpuMeter:
    """CPU seconds per backend role and for this database's PostgreSQL backends, per phase."""

    def __init__(self, procs: dict[str, subprocess.Popen[str]], db_url: str, name: str) -> None:
        self.procs, self.db_url, self.name = procs, db_url, name
        self._start: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        import psycopg

        out = {role: _cpu_seconds(p.pid) for role, p in self.procs.items()}
        with psycopg.connect(self.db_url, autocommit=True) as c:
            pids = [r[0] for r in c.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <>"
                                            " pg_backend_pid()", (self.name,)).fetchall()]
        out["postgres"] = sum(_cpu_seconds(pid) for pid in pids)
        return out

    def start(self) -> None:
        self._start = self._now()

    def report(self, phase: str, seconds: float) -> None:
        now = self._now()
        parts = [f"{role} {(now[role] - self._start.get(role, 0.0)) / seconds:.2f}" for role in now]
        print(f"cpu (cores busy) during {phase}: " + ", ".join(parts), flush=True)


def _latency(items: list[tuple[str, bytes, str]], sent: list[float], arrived: dict[str, float]) -> list[float]:
    return sorted((arrived[mid] - t0) * 1000 for (_, _, mid), t0 in zip(items, sent, strict=True) if mid in arrived)


def _timeline(items: list[tuple[str, bytes, str]], sent: list[float], stored: dict[str, float],
              alerts: dict[str, float]) -> None:
    """p99 per second of the stream under the burst (the burst starts at second 1): where the time goes."""
    buckets: dict[int, tuple[list[float], list[float]]] = {}
    for (_, _, mid), t0 in zip(items, sent, strict=True):
        s, a = buckets.setdefault(int(t0 - sent[0]), ([], []))
        if mid in stored:
            s.append((stored[mid] - t0) * 1000)
        if mid in alerts:
            a.append((alerts[mid] - t0) * 1000)
    print("second  stored_p99_ms  alert_p99_ms")
    for sec, (s, a) in sorted(buckets.items()):
        s.sort()
        a.sort()
        print(f"{sec:>6}  {s[int(len(s) * 0.99)] if s else float('nan'):>13.1f}  "
              f"{a[int(len(a) * 0.99)] if a else float('nan'):>12.1f}")


def _summary(name: str, lat: list[float], total: int, rate: float) -> tuple[float, float]:
    if not lat:
        raise SystemExit(f"{name}: nothing arrived")
    p50, p99 = statistics.median(lat), lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    print(f"{name}: {total} readings at {rate:.0f}/s; matched {len(lat)} (missing {total - len(lat)}); "
          f"ms p50={p50:.1f} p90={lat[int(len(lat) * 0.9)]:.1f} p99={p99:.1f} max={lat[-1]:.1f}", flush=True)
    return p50, p99


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layout", choices=["roles", "single"], default="roles")
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--patients", type=int, default=2000)
    ap.add_argument("--burst-rate", type=float, default=10000.0, help="readings/s of the backlog burst")
    ap.add_argument("--burst-seconds", type=float, default=3.0)
    ap.add_argument("--burst-agents", type=int, default=200)
    ap.add_argument("--ingest", type=int, help="ingest workers with --layout roles (default: production's)")
    ap.add_argument("--rules", type=int, help="rules workers with --layout roles (default: production's)")
    ap.add_argument("--admin-url", default=os.environ.get("NEARCARE_TEST_DATABASE_URL",
                                                          "postgresql://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--mqtt-url", default=os.environ.get("NEARCARE_TEST_MQTT_URL", "mqtt://127.0.0.1:1883"))
    args = ap.parse_args()
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]), flush=True)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; broker, PostgreSQL, the backend "
          "processes and the publishers share them", flush=True)

    import psycopg
    import psycopg.conninfo

    from backend import registry
    from backend.registry.demo import seed_teams
    from backend.roles import PRODUCTION_TOPOLOGY
    from backend.store import migrate
    from vitals.wire import Topics

    name = f"nearcare_bench_{secrets.token_hex(4)}"
    with psycopg.connect(args.admin_url, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    params = psycopg.conninfo.conninfo_to_dict(args.admin_url)
    params["dbname"] = name
    db_url = psycopg.conninfo.make_conninfo(**params)
    topics = Topics(f"bench-{secrets.token_hex(3)}/v1")
    procs: list[subprocess.Popen[str]] = []
    listener: Listener | None = None
    try:
        migrate(db_url)
        live, backlog = [], []
        with psycopg.connect(db_url, autocommit=True) as c:
            seed_teams(c)
            for i in range(args.patients + args.burst_agents):
                p = registry.create_patient(c, external_ref=f"b{i}", name=f"Borger {i}", programme="copd",
                                            municipality="Aarhus")
                a = registry.enrol_agent(c, agent_id=f"bench-{i:05d}", patient_id=p.id)
                registry.register_device(c, agent_id=a.id, address="C0:4E:30:00:00:01", model="Nonin 3230")
                (live if i < args.patients else backlog).append(a.id)
        env = {**os.environ, "NEARCARE_DATABASE_URL": db_url, "NEARCARE_MQTT_URL": args.mqtt_url,
               "NEARCARE_TOPIC_ROOT": topics.root, "NEARCARE_INGEST_GROUP": f"bench-{secrets.token_hex(3)}",
               "NEARCARE_DEMO": "true", "NEARCARE_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING")}
        counts = {"ingest": args.ingest or PRODUCTION_TOPOLOGY["ingest"],
                  "rules": args.rules or PRODUCTION_TOPOLOGY["rules"]}
        procs = _start(env, args.layout, counts)
        roles = ([*(f"ingest-{n}" for n in range(counts["ingest"])), *(f"rules-{n}" for n in range(counts["rules"]))]
                 if args.layout == "roles" else ["run"])
        meter = CpuMeter(dict(zip(roles, procs, strict=True)), db_url, name)
        listener = Listener(db_url, args.mqtt_url, topics)
        total = int(args.rate * args.seconds)
        ctx = multiprocessing.get_context("spawn")

        def run(items: list[tuple[str, bytes, str]], burst: list[tuple[str, bytes]] | None) -> tuple[list[float], float,
                                                                                                  float | None]:
            t0 = time.perf_counter() + 3.0  # both publishers connected and waiting
            parent, child = ctx.Pipe()
            pub = ctx.Process(target=_publisher, args=(args.mqtt_url, [(t, b) for t, b, _ in items], args.rate, t0,
                                                       child))
            pub.start()
            bparent = None
            if burst:
                bparent, bchild = ctx.Pipe()
                # The burst starts a second into the stream and lasts --burst-seconds.
                bpub = ctx.Process(target=_publisher, args=(args.mqtt_url, burst, args.burst_rate / 50, t0 + 1.0,
                                                            bchild))
                bpub.start()
            sent, elapsed = parent.recv()
            pub.join(30)
            burst_rate = None
            if bparent is not None:
                bsent, belapsed = bparent.recv()
                burst_rate = len(bsent) * 50 / belapsed
            return sent, total / elapsed, burst_rate

        def settle(ids: list[str], arrived: dict[str, float]) -> None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and sum(1 for i in ids if i in arrived) < len(ids):
                time.sleep(0.2)

        items = _stream(live, topics, total, 0)
        meter.start()
        w0 = time.perf_counter()
        sent, rate, _ = run(items, None)
        meter.report("the stream", time.perf_counter() - w0)
        settle([m for _, _, m in items], listener.stored)
        base = _latency(items, sent, listener.stored)
        settle([m for _, _, m in items], listener.alerts)
        alerts = _latency(items, sent, listener.alerts)

        items2 = _stream(live, topics, total, total + 1000)
        burst = _backlog(backlog, topics, int(args.burst_rate * args.burst_seconds))
        meter.start()
        w0 = time.perf_counter()
        sent2, rate2, burst_rate = run(items2, burst)
        meter.report("the stream with the burst", time.perf_counter() - w0)
        settle([m for _, _, m in items2], listener.alerts)
        under_burst = _latency(items2, sent2, listener.alerts)
        stored_under_burst = _latency(items2, sent2, listener.stored)
        with psycopg.connect(db_url) as c:
            stored = c.execute("SELECT count(*) FROM measurements").fetchone()
            evaluated = c.execute("SELECT count(*) FROM reading_evaluations").fetchone()
        print(f"layout {args.layout} ({', '.join(roles)}): {len(live)} citizens streaming, {len(backlog)} draining a"
              " backlog")
        _summary("baseline (publish -> 'stored' receipt, no rules on the path)", base, total, rate)
        p50, p99 = _summary("alerts (publish -> alert event)", alerts, total, rate)
        _summary("  of which publish -> 'stored' receipt", stored_under_burst, total, rate2)
        bp50, bp99 = _summary(f"alerts while ingest absorbs a {burst_rate or 0:.0f} readings/s burst "
                              f"({len(burst) * 50} readings)", under_burst, total, rate2)
        print(f"stored {stored[0] if stored else '?'} readings, evaluated {evaluated[0] if evaluated else '?'}")
        _timeline(items2, sent2, listener.stored, listener.alerts)
        print(f"RESULT layout={args.layout} alert_p50_ms={p50:.1f} alert_p99_ms={p99:.1f} burst_alert_p50_ms={bp50:.1f}"
              f" burst_alert_p99_ms={bp99:.1f} rate={rate:.0f} burst_rate={burst_rate or 0:.0f}")
    finally:
        if listener is not None:
            listener.close()
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
            if p.stdout:
                p.stdout.close()
        with psycopg.connect(args.admin_url, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
