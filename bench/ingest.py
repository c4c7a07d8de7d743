"""Ingest benchmark: simulated agents -> real Mosquitto -> `nearcare backend ingest` -> PostgreSQL.

    .venv/bin/python bench/ingest.py            # defaults below; about a minute on 2 cores
    .venv/bin/python bench/ingest.py --profile  # also samples the worker with py-spy

What it measures, in one run, on one fresh database and one private broker:

- raw_mqtt_mps     paho publishing QoS 1 (waiting for every PUBACK) to a topic nobody reads, one
                   publisher; raw_mqtt_procs_mps the same from --publishers processes at once
- raw_copy_rps     binary COPY of the same rows into a scratch copy of `measurements`
- writer_*_rps     the ingest writer alone: write_batch (COPY) vs executemany multi-row
- ingest_batched_mps  readings/s end to end with envelopes of --per-envelope readings, 1 worker
- ingest_single_mps   messages/s end to end with one reading per message, 1 worker, offered by
                      --publishers processes (one paho publisher alone cannot offer 5,000/s);
                      single_offered_mps is the rate the broker accepted them at
- stored_p50/p99_ms   publish -> "stored" receipt back at the agent, at a paced rate
- workers2_vs_1       batched throughput with 2 workers on the shared subscription / with 1

Every end-to-end phase checks that the rows in the database equal the readings published.
Workers only store (and queue each new reading for the rules in the same transaction); no rules worker
runs here: the rules' speed is measured by bench/alert_latency.py.
"""

from __future__ import annotations

import argparse
import collections
import json
import multiprocessing
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
import psycopg  # noqa: E402
import psycopg.conninfo  # noqa: E402

from backend import embedded, registry  # noqa: E402
from backend.embedded import free_port  # noqa: E402
from backend.ingest.core import decide  # noqa: E402
from backend.ingest.writer import _COLS, _TYPES, prepare, write_batch  # noqa: E402
from backend.store import migrate  # noqa: E402
from vitals.wire import Topics, new_measurement_id, parse_receipt  # noqa: E402

GOAL_BATCHED = 20_000
GOAL_SINGLE = 5_000


def with_db(url: str, name: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(url)
    params["dbname"] = name
    return psycopg.conninfo.make_conninfo(**params)


def cpu_seconds(pid: int) -> float:
    """user + system CPU of one process so far (Linux /proc): what a phase cost, whatever the load."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_mosquitto(stack: ExitStack) -> tuple[str, int]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-mosq-"))
    stack.callback(shutil.rmtree, workdir, True)
    port = free_port()
    # As deploy/ should configure it: no cap on queued QoS 1 messages (the default of 1000 per
    # session drops readings while a worker restarts).
    (workdir / "m.conf").write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\n"
    )
    proc = embedded.start_mosquitto(workdir / "m.conf", port)
    stack.callback(embedded.stop_process, proc)
    return f"mqtt://127.0.0.1:{port}", proc.pid


def envelope(agent_id: str, n: int, at: datetime) -> bytes:
    ms = []
    for i in range(n):
        t = (at + timedelta(milliseconds=i)).isoformat()
        ms.append({
            "id": str(new_measurement_id()), "kind": "spo2", "values": {"spo2": 90.0 + (i % 9)}, "unit": "%",
            "measured_at": t, "device_clock_trusted": True, "received_at": t,
            "device": {"address": "00:1C:05:FF:3A:10", "model": "3230", "manufacturer": "Nonin Medical"},
            "quality": [], "raw": {"characteristic": "0aad7ea0-0d60-11e2-8e3c-0002a5d5c51b", "hex": "0a1019009a00"},
        })
    return json.dumps({"schema": "1.0", "agent_id": agent_id, "sent_at": at.isoformat(), "measurements": ms}).encode()


def build(agents: list[str], topics: Topics, readings: int, per: int) -> list[tuple[str, bytes]]:
    at = datetime.now(UTC) - timedelta(hours=1)
    out = []
    for i in range(readings // per):
        a = agents[i % len(agents)]
        out.append((topics.measurements(a), envelope(a, per, at + timedelta(seconds=i))))
    return out


class Publisher:
    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("mqtt://").split(":")
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(2000)
        self.client.max_queued_messages_set(0)
        self.receipt_times: dict[str, float] = {}
        self.client.on_message = self._on_receipt
        self.client.connect(host, int(port))
        self.client.loop_start()
        while not self.client.is_connected():
            time.sleep(0.01)

    def _on_receipt(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.perf_counter()
        for i in parse_receipt(msg.payload).ids:
            self.receipt_times.setdefault(str(i), now)

    def blast(self, plan: list[tuple[str, bytes]]) -> float:
        """Publish everything at QoS 1 as fast as paho goes; return when every PUBACK is in."""
        t0 = time.perf_counter()
        infos = [self.client.publish(t, p, qos=1) for t, p in plan]
        for info in infos:
            info.wait_for_publish(120)
        return time.perf_counter() - t0

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Sender(Protocol):
    def go(self) -> float: ...
    def finish(self) -> float: ...


class ThreadSender:
    """One paho publisher (the bench's own, in this process) on a thread."""

    def __init__(self, pub: Publisher, plan: list[tuple[str, bytes]]) -> None:
        self.pub, self.plan, self.end = pub, plan, 0.0
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        self.pub.blast(self.plan)
        self.end = time.perf_counter()

    def go(self) -> float:
        t0 = time.perf_counter()
        self.thread.start()
        return t0

    def finish(self) -> float:
        self.thread.join()
        return self.end


def _publish_slice(url: str, plan: list[tuple[str, bytes]], ready: Any, go: Any, out: Any) -> None:
    """In a child process: connect, wait for the start signal, publish QoS 1, report when every
    PUBACK is in (perf_counter is CLOCK_MONOTONIC on Linux: comparable across processes)."""
    host, port = url.removeprefix("mqtt://").split(":")
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(2000)
    client.max_queued_messages_set(0)
    client.connect(host, int(port))
    client.loop_start()
    while not client.is_connected():
        time.sleep(0.01)
    ready.wait(60)
    go.wait(60)
    infos = [client.publish(t, p, qos=1) for t, p in plan]
    for info in infos:
        info.wait_for_publish(300)
    out.put(time.perf_counter())
    client.disconnect()
    client.loop_stop()


class ProcessSender:
    """``n`` publisher processes, each with its own paho client and a share of the plan; all
    connected and waiting before the clock starts."""

    def __init__(self, url: str, plan: list[tuple[str, bytes]], n: int) -> None:
        ctx = multiprocessing.get_context("spawn")  # the parent runs paho threads: no fork
        self.ready, self.start, self.out = ctx.Barrier(n + 1), ctx.Event(), ctx.Queue()
        self.procs = [ctx.Process(target=_publish_slice, args=(url, plan[i::n], self.ready, self.start, self.out),
                                  daemon=True) for i in range(n)]
        for proc in self.procs:
            proc.start()
        self.ready.wait(60)

    def go(self) -> float:
        t0 = time.perf_counter()
        self.start.set()
        return t0

    def finish(self) -> float:
        ends = [self.out.get(timeout=600) for _ in self.procs]
        for proc in self.procs:
            proc.join(30)
        return max(ends)


class Worker:
    def __init__(self, env: dict[str, str], n: int) -> None:
        self.metrics_port = free_port()
        cmd = [sys.executable, "-m", "nearcare_cli", "backend", "ingest", "--no-migrate",
               "--worker", str(n), "--metrics-port", str(self.metrics_port)]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("ingest ready"):
            raise SystemExit(f"ingest worker {n} did not start: {line!r}")

    def stored(self) -> float:
        body = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read().decode()
        m = re.search(r'^nearcare_ingest_readings_total\{outcome="stored"\} ([0-9.e+]+)$', body, re.M)
        return float(m.group(1)) if m else 0.0

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc.stdout:
            self.proc.stdout.close()


def count_rows(db_url: str, agents: list[str]) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT count(*) FROM measurements WHERE agent_id = ANY(%s)", (agents,)).fetchone()
    return int(row[0]) if row else 0


def end_to_end(sender: Sender, workers: list[Worker], readings: int, messages: int,
               db_url: str, agents: list[str], label: str, broker_pid: int) -> tuple[float, float]:
    """Readings/s from the first publish until the workers report every reading stored, and the
    rate the broker accepted the messages at (offered load)."""
    before = count_rows(db_url, agents)
    base = sum(w.stored() for w in workers)
    cpu0 = [cpu_seconds(w.proc.pid) for w in workers], cpu_seconds(broker_pid)
    t0 = sender.go()
    deadline = t0 + 600
    while sum(w.stored() for w in workers) - base < readings:
        if time.perf_counter() > deadline:
            raise SystemExit(f"{label}: timed out")
        time.sleep(0.1)  # each poll is a scrape of the worker's /metrics: keep it light
    elapsed = time.perf_counter() - t0
    worker_cpu = sum(cpu_seconds(w.proc.pid) - c for w, c in zip(workers, cpu0[0], strict=True))
    broker_cpu = cpu_seconds(broker_pid) - cpu0[1]
    offered = messages / max(1e-9, sender.finish() - t0)
    stored = count_rows(db_url, agents) - before
    status = "OK" if stored == readings else "MISMATCH"
    print(f"  {label}: {readings} readings in {elapsed:.2f}s -> {readings / elapsed:,.0f} readings/s "
          f"({messages / elapsed:,.0f} msg/s achieved; offered {offered:,.0f} msg/s = "
          f"{offered * readings / messages:,.0f} readings/s); rows in database {stored} of {readings} published "
          f"[{status}]", flush=True)
    print(f"    CPU: worker(s) {worker_cpu:.2f}s = {worker_cpu / readings * 1e6:.0f} µs/reading "
          f"({worker_cpu / messages * 1e6:.0f} µs/message, {worker_cpu / elapsed:.0%} of a core); "
          f"broker {broker_cpu / messages * 1e6:.0f} µs/message (incl. the publishers' side)", flush=True)
    if stored != readings:
        raise SystemExit(f"{label}: database holds {stored} rows for {readings} published readings")
    return readings / elapsed, offered


def raw_copy(db_url: str, rows: list[Any]) -> float:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE bench_copy (LIKE measurements INCLUDING ALL)")
        t0 = time.perf_counter()
        with conn.transaction(), conn.cursor() as cur, \
                cur.copy(f"COPY bench_copy ({_COLS}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(list(_TYPES))
            for r in rows:
                copy.write_row(r)
        elapsed = time.perf_counter() - t0
        conn.execute("DROP TABLE bench_copy")
    return len(rows) / elapsed


def copy_rows(decisions: list[Any]) -> list[tuple[Any, ...]]:
    from psycopg.types.json import Jsonb

    return [
        (r.id, r.measured_at, r.patient_id, r.agent_id, r.device_id, r.kind, r.value, Jsonb(dict(r.components)),
         r.unit, r.device_clock_trusted, r.agent_received_at, list(r.quality), list(r.flags), r.user_index,
         r.raw_characteristic, r.raw)
        for d in decisions for r in d.accepted
    ]


def writer_paths(db_url: str, decisions: list[Any], batch: int) -> tuple[float, float]:
    """The writer alone, same rows: write_batch (COPY straight into measurements; the
    ON CONFLICT path only after a unique violation) against executemany of a multi-row
    INSERT … ON CONFLICT DO NOTHING."""
    from psycopg.types.json import Jsonb

    n = sum(len(d.accepted) for d in decisions)
    per_msg = max(1, len(decisions[0].accepted))
    chunks = [decisions[i:i + max(1, batch // per_msg)] for i in range(0, len(decisions), max(1, batch // per_msg))]
    with psycopg.connect(db_url, autocommit=True) as conn:
        prepare(conn)
        conn.execute("CREATE TABLE bench_writer (LIKE measurements INCLUDING ALL)")
        t0 = time.perf_counter()
        for c in chunks:
            write_batch(conn, c, received_at=datetime.now(UTC))
        copy_rps = n / (time.perf_counter() - t0)
        conn.execute("DELETE FROM measurements WHERE id = ANY(%s)", ([r.id for d in decisions for r in d.accepted],))
        cols = _COLS.split(", ")
        t0 = time.perf_counter()
        for c in chunks:
            rows = [r for d in c for r in d.accepted]
            values = ", ".join(["(" + ", ".join(["%s"] * len(cols)) + ")"] * len(rows))
            params: list[Any] = []
            for r in rows:
                params += [r.id, r.measured_at, r.patient_id, r.agent_id, r.device_id, r.kind, r.value,
                           Jsonb(dict(r.components)), r.unit, r.device_clock_trusted, r.agent_received_at,
                           list(r.quality), list(r.flags), r.user_index, r.raw_characteristic, r.raw]
            with conn.transaction():
                conn.execute(f"INSERT INTO bench_writer ({_COLS}) VALUES {values} ON CONFLICT DO NOTHING",  # type: ignore[arg-type]
                             params)
        many_rps = n / (time.perf_counter() - t0)
        conn.execute("DROP TABLE bench_writer")
    return copy_rps, many_rps


def latency(pub: Publisher, plan: list[tuple[str, bytes]], rate: float) -> tuple[float, float]:
    """Publish single readings at a paced rate; time each until its "stored" receipt arrives."""
    sent: dict[str, float] = {}
    interval = 1.0 / rate
    t_next = time.perf_counter()
    for topic, payload in plan:
        mid = json.loads(payload)["measurements"][0]["id"]
        while time.perf_counter() < t_next:
            time.sleep(max(0.0, t_next - time.perf_counter()))
        sent[mid] = time.perf_counter()
        pub.client.publish(topic, payload, qos=1)
        t_next += interval
    deadline = time.perf_counter() + 60
    while any(i not in pub.receipt_times for i in sent) and time.perf_counter() < deadline:
        time.sleep(0.05)
    lat = sorted((pub.receipt_times[i] - t) * 1000 for i, t in sent.items() if i in pub.receipt_times)
    if len(lat) != len(sent):
        raise SystemExit(f"latency: {len(sent) - len(lat)} receipts missing")
    return lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]


def profile(worker: Worker, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not os.path.exists(spy):
        print("  (py-spy not installed: no profile)")
        return None
    return subprocess.Popen([spy, "record", "--pid", str(worker.proc.pid), "--duration", str(int(seconds)),
                             "--rate", "250", "--nonblocking", "--format", "raw", "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


_BUCKETS = [
    ("paho network thread (receive, parse MQTT, queue)", ("paho/mqtt",)),
    ("validate + attribute (pydantic, core)", ("decide (", "attribute (", "validate (")),
    ("write batch (COPY, INSERT, commit)", ("write_batch (",)),
    ("ack + receipts (paho publish)", ("_acknowledge (", "_send_receipts (")),
    ("metrics", ("_account (",)),
]


def summarise(raw: Path) -> None:
    samples: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        k = int(n)
        total += k
        frames = stack.split(";")
        leaves[frames[-1]] += k
        for name, needles in _BUCKETS:
            if any(nd in stack for nd in needles):
                samples[name] += k
                break
        else:
            samples["other"] += k
    if not total:
        print("  (profile empty)")
        return
    print(f"  where the worker's CPU time goes (py-spy, {total} samples of busy threads):")
    for name, k in samples.most_common():
        print(f"    {100 * k / total:5.1f}%  {name}")
    print("  top functions by own time:")
    for frame, k in leaves.most_common(8):
        print(f"    {100 * k / total:5.1f}%  {frame[:110]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--admin-url", default=os.environ.get("NEARCARE_TEST_DATABASE_URL",
                                                          "postgresql://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--agents", type=int, default=50)
    ap.add_argument("--batched-readings", type=int, default=100_000)
    ap.add_argument("--per-envelope", type=int, default=50)
    ap.add_argument("--single-messages", type=int, default=20_000)
    ap.add_argument("--latency-messages", type=int, default=2_000)
    ap.add_argument("--latency-rate", type=float, default=500.0, help="messages/s during the latency phase")
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--batch-window-ms", type=int, default=50)
    ap.add_argument("--publishers", type=int, default=3,
                    help="publisher processes offering the single-message load (and the raw MQTT baseline)")
    ap.add_argument("--profile", action="store_true", help="sample the worker with py-spy in the single phase")
    args = ap.parse_args()
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]), flush=True)
    print(f"machine: {os.cpu_count()} cores; the broker, PostgreSQL, the worker(s) and this load generator "
          f"share them; load average before: {os.getloadavg()[0]:.2f}", flush=True)

    with ExitStack() as stack:
        name = f"bench_ingest_{secrets.token_hex(4)}"
        with psycopg.connect(args.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]

        def drop() -> None:
            with psycopg.connect(args.admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]

        stack.callback(drop)
        db_url = with_db(args.admin_url, name)
        migrate(db_url)
        mqtt_url, broker_pid = start_mosquitto(stack)
        topics = Topics(f"bench-{secrets.token_hex(3)}/v1")
        agents = [f"bench-{i:04d}" for i in range(args.agents)]
        with psycopg.connect(db_url, autocommit=True) as conn:
            for a in agents:
                p = registry.create_patient(conn, external_ref=a, name=a, programme="copd", municipality="Aarhus")
                registry.enrol_agent(conn, agent_id=a, patient_id=p.id)
                registry.register_device(conn, agent_id=a, address="00:1C:05:FF:3A:10", model="3230")
            snapshot = registry.load_snapshot(conn)
        print(f"setup: database {name}, private mosquitto {mqtt_url}, {len(agents)} enrolled agents", flush=True)

        # --- raw limits -------------------------------------------------------------------
        single_plan = build(agents, topics, args.single_messages, 1)
        pub = Publisher(mqtt_url)
        stack.callback(pub.close)
        raw_plan = [(f"{topics.root}/raw/{i % 50}", p) for i, (_, p) in enumerate(single_plan)]
        el = pub.blast(raw_plan)
        raw_mqtt = len(raw_plan) / el
        print(f"  raw paho publish, QoS 1, {len(raw_plan)} single-reading messages: {raw_mqtt:,.0f} msg/s",
              flush=True)
        procs = ProcessSender(mqtt_url, raw_plan, args.publishers)
        t0 = procs.go()
        raw_mqtt_procs = len(raw_plan) / (procs.finish() - t0)
        print(f"  raw paho publish, QoS 1, same messages from {args.publishers} publisher processes: "
              f"{raw_mqtt_procs:,.0f} msg/s", flush=True)

        batched_plan = build(agents, topics, args.batched_readings, args.per_envelope)
        now = datetime.now(UTC)
        t0 = time.perf_counter()
        decisions = [decide(t, p, topics=topics, registry=snapshot, now=now) for t, p in batched_plan]
        core_rps = args.batched_readings / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        single_decisions = [decide(t, p, topics=topics, registry=snapshot, now=now) for t, p in single_plan]
        core_single = len(single_plan) / (time.perf_counter() - t0)
        print(f"  core decide() alone: {core_rps:,.0f} readings/s batched, {core_single:,.0f} msg/s single",
              flush=True)
        del single_decisions
        raw_copy_rps = raw_copy(db_url, copy_rows(decisions))
        print(f"  raw binary COPY of the same rows into a copy of measurements: {raw_copy_rps:,.0f} rows/s",
              flush=True)
        # Fresh ids for the writer comparison, so the end-to-end rows are not pre-inserted.
        w_plan = build(agents, topics, min(args.batched_readings, 50_000), args.per_envelope)
        w_dec = [decide(t, p, topics=topics, registry=snapshot, now=now) for t, p in w_plan]
        copy_rps, many_rps = writer_paths(db_url, w_dec, args.batch_size)
        print(f"  writer alone, batches of {args.batch_size}: write_batch (COPY, ON CONFLICT fallback) "
              f"{copy_rps:,.0f} rows/s;"
              f" executemany multi-row INSERT ON CONFLICT {many_rps:,.0f} rows/s", flush=True)

        # --- end to end -------------------------------------------------------------------
        env = {**os.environ, "NEARCARE_DATABASE_URL": db_url, "NEARCARE_MQTT_URL": mqtt_url,
               "NEARCARE_TOPIC_ROOT": topics.root, "NEARCARE_INGEST_GROUP": "bench",
               "NEARCARE_INGEST_BATCH_SIZE": str(args.batch_size),
               "NEARCARE_INGEST_BATCH_WINDOW_MS": str(args.batch_window_ms), "NEARCARE_LOG_LEVEL": "WARNING"}
        w0 = Worker(env, 0)
        stack.callback(w0.stop)
        print("end to end, 1 worker:", flush=True)
        spy_dir = Path(tempfile.mkdtemp(prefix="bench-spy-"))
        stack.callback(shutil.rmtree, spy_dir, True)
        spy = profile(w0, max(2.0, args.batched_readings / 15000), spy_dir / "batched.txt") if args.profile else None
        batched, _ = end_to_end(ThreadSender(pub, batched_plan), [w0], args.batched_readings, len(batched_plan),
                                db_url, agents, f"batched ({args.per_envelope} readings/envelope, 1 publisher)",
                                broker_pid)
        if spy is not None:
            spy.wait(120)
        sender = ProcessSender(mqtt_url, single_plan, args.publishers)
        spy = profile(w0, max(2.0, args.single_messages / 6000), spy_dir / "single.txt") if args.profile else None
        single, single_offered = end_to_end(sender, [w0], args.single_messages, len(single_plan), db_url, agents,
                                            f"single (1 reading/message, {args.publishers} publisher processes)",
                                            broker_pid)
        if spy is not None:
            spy.wait(120)
        lat_plan = build(agents, topics, args.latency_messages, 1)
        # Receipts only now: during the throughput phases this process would otherwise parse
        # every agent's receipts on the shared cores (a real agent gets only its own).
        pub.client.subscribe(topics.wildcard("receipts"), qos=0)
        time.sleep(0.2)
        p50, p99 = latency(pub, lat_plan, args.latency_rate)
        pub.client.unsubscribe(topics.wildcard("receipts"))
        print(f"  publish -> stored receipt at {args.latency_rate:.0f} msg/s: p50 {p50:.1f} ms, p99 {p99:.1f} ms",
              flush=True)

        print("end to end, 2 workers on the shared subscription:", flush=True)
        w1 = Worker(env, 1)
        stack.callback(w1.stop)
        plan2 = build(agents, topics, args.batched_readings, args.per_envelope)
        batched2, _ = end_to_end(ThreadSender(pub, plan2), [w0, w1], args.batched_readings, len(plan2), db_url,
                                 agents, f"batched ({args.per_envelope} readings/envelope, 1 publisher)", broker_pid)
        ratio = batched2 / batched

        print(f"summary (load average now {os.getloadavg()[0]:.2f}; above 2 means other work shared the cores):")
        print(f"  batched {batched:,.0f} readings/s (goal {GOAL_BATCHED:,}: "
              f"{'met' if batched >= GOAL_BATCHED else 'NOT met'}); single {single:,.0f} msg/s (goal "
              f"{GOAL_SINGLE:,}: {'met' if single >= GOAL_SINGLE else 'NOT met'})")
        print(f"  single: offered {single_offered:,.0f} msg/s by {args.publishers} publisher processes "
              f"(goal {'offered' if single_offered >= GOAL_SINGLE else 'NOT even offered'}), achieved {single:,.0f}")
        print(f"  limits on this machine: paho QoS 1 publish {raw_mqtt:,.0f} msg/s "
              f"({raw_mqtt_procs:,.0f} from {args.publishers} processes), "
              f"raw COPY {raw_copy_rps:,.0f} rows/s, "
              f"decide() {core_rps:,.0f} readings/s batched / {core_single:,.0f} msg/s single")
        for phase in ("batched", "single"):
            if (spy_dir / f"{phase}.txt").exists():
                print(f"  profile of the worker during the {phase} phase:")
                summarise(spy_dir / f"{phase}.txt")
        print(f"RESULT ingest_batched_mps={batched:.0f} ingest_single_mps={single:.0f} raw_copy_rps={raw_copy_rps:.0f}"
              f" raw_mqtt_mps={raw_mqtt:.0f} stored_p99_ms={p99:.1f} workers2_vs_1={ratio:.2f}"
              f" single_offered_mps={single_offered:.0f} raw_mqtt_procs_mps={raw_mqtt_procs:.0f}", flush=True)


if __name__ == "__main__":
    main()
