"""Benchmark of the edge agent: memory and CPU when idle and under load, spool append rate with
fsync, and the time to drain a 30-day backlog (3,000 queued readings) through the real local
Mosquitto to a real ``nearcare backend ingest`` worker, until the backend's receipts have
released every reading from the spool (end-to-end acknowledged), and until all were sent.

Run: ``.venv/bin/python bench/agent.py`` (``make bench``). Broker: NEARCARE_TEST_MQTT_URL or
mqtt://127.0.0.1:1883; PostgreSQL: NEARCARE_TEST_DATABASE_URL or the local server (a database is
created and dropped). Each figure is printed beside a baseline measured in the same run:
raw sqlite3 commits with the same pragmas, and raw paho QoS 1 publishes.

Goals on the development machine: RSS <= 60 MB, idle CPU <= 1 %, drain (acknowledged) <= 10 s.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402

from edge_agent.spool import Spool  # noqa: E402
from edge_agent.uplink import Uplink  # noqa: E402
from vitals.broker import parse_broker_url  # noqa: E402
from vitals.wire import Device, Measurement, Topics, new_measurement_id  # noqa: E402

URL = os.environ.get("NEARCARE_TEST_MQTT_URL", "mqtt://127.0.0.1:1883")
N = 3000
APPENDS = 400
IDLE_S = 10.0
LOAD_S = 10.0

# The agent process measured for RSS and CPU: the real modules (bleak, paho, pydantic, the
# decoders) imported, the spool and the uplink connected; idle first, then 20 readings a second
# decoded from real characteristic bytes, recorded and published. There is no Bluetooth adapter
# on this machine, so the scanner itself is not running.
CHILD = r"""
import json, resource, sys, time, threading
from datetime import UTC, datetime
from zoneinfo import ZoneInfo
import edge_agent.agent, edge_agent.ble, edge_agent.simulate  # the agent's full import set
from edge_agent.devices import encode
from edge_agent.devices.recipes import Capture
from edge_agent.gatt import decode, readings_from
from edge_agent.recorder import Recorder
from edge_agent.spool import Spool
from edge_agent.uplink import Uplink
from vitals.broker import parse_broker_url
from vitals.wire import Device, Topics

spool_path, url, root, idle_s, load_s = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
spool = Spool(spool_path)
up = Uplink(agent_id="bench-agent", broker=parse_broker_url(url), topics=Topics(root), spool=spool).start()
assert up.wait_connected(10)
rec = Recorder(spool, zone=ZoneInfo("Europe/Copenhagen"))
dev = Device(address="00:09:1F:00:00:01", model="A&D UA-651BLE")

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

time.sleep(1.0)
c0, t0 = cpu(), time.monotonic()
time.sleep(idle_s)
idle = {"cpu_pct": 100 * (cpu() - c0) / (time.monotonic() - t0), "rss_mb": rss_mb()}
c0, t0 = cpu(), time.monotonic()
n = 0
while time.monotonic() - t0 < load_s:
    now = datetime.now(UTC)
    data = encode.blood_pressure(128, 82, 97, at=now.replace(tzinfo=None), pulse=72, user=1)
    rec.record(Capture("2A35", data, now, readings_from(decode("2A35", data))), device=dev)
    n += 2
    time.sleep(0.05)
up.wait_sent(20)  # no backend here: the broker has them (the drain phase measures receipts)
load = {"cpu_pct": 100 * (cpu() - c0) / (time.monotonic() - t0), "rss_mb": rss_mb(), "readings": n,
        "left": spool.depth}
up.stop()
print(json.dumps({"idle": idle, "load": load}))
"""


def measurement(i: int) -> Measurement:
    now = datetime.now(UTC)
    return Measurement(id=new_measurement_id(), kind="spo2", values={"spo2": 90 + i % 10}, unit="%",
                       measured_at=now, device_clock_trusted=False, received_at=now,
                       device=Device(address="00:1C:05:00:00:01", model="Nonin 3230"))


def bench_process(tmp: Path, root: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(tmp / "child.sqlite"), URL, root, str(IDLE_S), str(LOAD_S)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise SystemExit(f"agent process failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_append(tmp: Path) -> tuple[float, float]:
    spool = Spool(tmp / "append.sqlite")
    ms = [measurement(i) for i in range(APPENDS)]
    t0 = time.perf_counter()
    for m in ms:
        spool.append(m)  # one committed, fsynced transaction each, as the agent does
    agent_rate = APPENDS / (time.perf_counter() - t0)
    spool.close()
    # Baseline: raw sqlite3, same pragmas, same payload size, one commit per row.
    conn = sqlite3.connect(tmp / "raw.sqlite", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, id TEXT UNIQUE, at REAL, body TEXT)")
    body = ms[0].model_dump_json()
    t0 = time.perf_counter()
    for m in ms:
        conn.execute("BEGIN")
        conn.execute("INSERT INTO t (id, at, body) VALUES (?, ?, ?)", (str(m.id), time.time(), body))
        conn.execute("COMMIT")
    raw_rate = APPENDS / (time.perf_counter() - t0)
    conn.close()
    return agent_rate, raw_rate


def bench_drain(tmp: Path, topics: Topics) -> tuple[float, float]:
    """Seconds until every reading was sent (PUBACK), and until the backend's receipts released
    all of them from the spool, through a real ingest worker in its own process."""
    import psycopg

    from backend import registry
    from backend.store import migrate

    admin = os.environ.get("NEARCARE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    name = f"bench_agent_{secrets.token_hex(4)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    params = psycopg.conninfo.conninfo_to_dict(admin)
    params["dbname"] = name
    db_url = psycopg.conninfo.make_conninfo(**params)
    worker: subprocess.Popen[str] | None = None
    try:
        migrate(db_url)
        with psycopg.connect(db_url, autocommit=True) as conn:
            p = registry.create_patient(conn, external_ref="bench-drain", name="Bench", programme="copd",
                                        municipality="Aarhus")
            registry.enrol_agent(conn, agent_id="bench-drain", patient_id=p.id)
            registry.register_device(conn, agent_id="bench-drain", address="00:1C:05:00:00:01", model="3230")
        env = {**os.environ, "NEARCARE_DATABASE_URL": db_url, "NEARCARE_MQTT_URL": URL,
               "NEARCARE_TOPIC_ROOT": topics.root, "NEARCARE_LOG_LEVEL": "WARNING"}
        worker = subprocess.Popen([sys.executable, "-m", "nearcare_cli", "backend", "ingest", "--no-migrate"],
                                  cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert worker.stdout is not None
        line = worker.stdout.readline()
        if not line.startswith("ingest ready"):
            raise SystemExit(f"ingest worker did not start: {line!r}")
        spool = Spool(tmp / "drain.sqlite")
        spool.append_many([measurement(i) for i in range(N)])
        up = Uplink(agent_id="bench-drain", broker=parse_broker_url(URL), topics=topics, spool=spool,
                    batch_size=50)
        t0 = time.perf_counter()
        up.start()
        if not up.wait_sent(120):
            raise SystemExit(f"sending did not finish: {spool.fill().unsent} unsent")
        sent = time.perf_counter() - t0
        if not up.wait_drained(120):
            raise SystemExit(f"drain did not finish: {spool.depth} without a receipt")
        acknowledged = time.perf_counter() - t0
        up.stop()
        spool.close()
        with psycopg.connect(db_url) as conn:
            stored = conn.execute("SELECT count(*) FROM measurements").fetchone()
        if stored != (N,):
            raise SystemExit(f"stored {stored} of {N}")
        return sent, acknowledged
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(30)
            if worker.stdout:
                worker.stdout.close()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


def bench_raw_paho(topics: Topics) -> float:
    """Baseline: one paho client publishing 3,000 single-reading messages at QoS 1, all PUBACKed."""
    broker = parse_broker_url(URL)
    payload = measurement(0).model_dump_json().encode()
    done = threading.Event()
    acked = 0

    def on_publish(client, userdata, mid, rc, props):  # type: ignore[no-untyped-def]
        nonlocal acked
        acked += 1
        if acked == N:
            done.set()

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                    client_id=f"bench-raw-{secrets.token_hex(3)}")
    c.on_publish = on_publish
    c.max_inflight_messages_set(20)
    c.connect(broker.host, broker.port)
    c.loop_start()
    t0 = time.perf_counter()
    for _ in range(N):
        c.publish(topics.measurements("bench-raw"), payload, qos=1)
    done.wait(120)
    elapsed = time.perf_counter() - t0
    c.disconnect()
    c.loop_stop()
    return elapsed


def main() -> None:
    topics = Topics(f"nearcare-bench-{secrets.token_hex(3)}/v1")
    print(f"command: {sys.executable} bench/agent.py   broker: {parse_broker_url(URL).redacted()}")
    with tempfile.TemporaryDirectory(prefix="nearcare-bench-") as d:
        tmp = Path(d)
        proc = bench_process(tmp, topics.root)
        agent_rate, raw_rate = bench_append(tmp)
        raw_paho = bench_raw_paho(topics)
        sent, drain = bench_drain(tmp, topics)
    idle, load = proc["idle"], proc["load"]
    print(f"agent process idle ({IDLE_S:.0f} s):  RSS {idle['rss_mb']:.1f} MB, CPU {idle['cpu_pct']:.2f} %")
    print(f"agent process load ({LOAD_S:.0f} s, {load['readings']} readings decoded+spooled+published): "
          f"RSS {load['rss_mb']:.1f} MB, CPU {load['cpu_pct']:.2f} %, left in spool {load['left']}")
    print(f"spool append (commit+fsync each): agent {agent_rate:.0f}/s   baseline raw sqlite3 {raw_rate:.0f}/s")
    print(f"drain {N} queued readings:         all sent {sent:.2f} s, all acknowledged by the backend's receipts "
          f"{drain:.2f} s (batches of 50)   baseline raw paho QoS1 {N} msgs {raw_paho:.2f} s")
    rss = max(idle["rss_mb"], load["rss_mb"])
    print(f"RESULT rss_mb={rss:.1f} idle_cpu_pct={idle['cpu_pct']:.2f} append_per_s={agent_rate:.0f} "
          f"drain_s={drain:.2f} sent_s={sent:.2f} readings={N}")


if __name__ == "__main__":
    main()
