"""Alert engine cost per reading against the real PostgreSQL, without the broker or ingest.

Times ``AlertEngine.on_stored`` (thread CPU and wall) on batches of stored SpO2 readings of
500 COPD citizens, in a fresh database per run:

- ``repeat``: every reading breaches the alert its citizen already has (the hot path: the
  alert's value, readings and counts change, a live refresh, no transition);
- ``mixed``: every fourth round is back in range, so alerts resolve after two and open again
  (transitions, the inhibition stage, the writer's full path).

``--before REV`` runs the same in ``git archive REV`` (a temporary copy; or give a directory
holding another checkout) as the same-run baseline; runs alternate (before, now, before, now,
…) so both see the same machine load.

    .venv/bin/python bench/alert_engine.py [--readings 6000] [--batch 60] [--rounds 3] [--before REV]

Last line: ``RESULT <workload>_cpu_ms=… <workload>_wall_ms=… …`` (medians over the rounds).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = ("repeat", "mixed")


def child(tree: str, admin_url: str, workload: str, n: int, batch: int) -> dict[str, Any]:
    """One run in ``tree`` (imports come from there), in a database of its own."""
    sys.path.insert(0, tree)
    import logging

    import psycopg
    from psycopg.types.json import Jsonb

    from backend.alerting.clock import FixedClock
    from backend.alerting.config import load_config
    from backend.alerting.engine import AlertEngine
    from backend.readings import StoredReading
    from backend.store import migrate, open_pool
    from vitals import MeasurementKind

    logging.disable(logging.ERROR)
    name = "nc_bench_engine_" + secrets.token_hex(4)
    base = admin_url.rsplit("/", 1)[0]
    with psycopg.connect(admin_url, autocommit=True) as a:
        a.execute(f"CREATE DATABASE {name}")
    url = f"{base}/{name}"
    try:
        migrate(url)
        citizens = 500
        with psycopg.connect(url, autocommit=True) as c:
            for key, municipality in (("aarhus-sygepleje", "Aarhus"), ("auh-lungeteam", None), ("auh-akut", None)):
                c.execute("INSERT INTO teams (key, name, sector, municipality) VALUES (%s,%s,%s,%s)",
                          (key, key, "municipal" if municipality else "hospital", municipality))
            pids = []
            for i in range(citizens):
                pid = c.execute("INSERT INTO patients (external_ref, name, programme, municipality)"
                                " VALUES (%s,%s,'copd','Aarhus') RETURNING id", (f"b-{i}", f"B {i}")).fetchone()
                assert pid is not None
                c.execute("INSERT INTO agents (id, patient_id) VALUES (%s,%s)", (f"b-ag-{i}", pid[0]))
                pids.append(int(pid[0]))
            t0 = datetime.now(UTC) - timedelta(hours=2)
            readings: list[Any] = []
            rows: list[tuple[Any, ...]] = []
            for i in range(n):
                k = i % citizens
                at = t0 + timedelta(milliseconds=500 * i)
                v = 84.0 if k % 2 else 88.0
                if workload == "mixed" and (i // citizens) % 4 == 3:
                    v = 95.0
                mid = uuid.uuid4()
                rows.append((mid, at, pids[k], f"b-ag-{k}", "spo2", v, Jsonb({"spo2": v}), "%", at, []))
                readings.append(StoredReading(id=mid, patient_id=pids[k], agent_id=f"b-ag-{k}",
                                              kind=MeasurementKind("spo2"), components={"spo2": v}, measured_at=at,
                                              stored_at=at))
            with c.cursor() as cur:
                cur.executemany(
                    "INSERT INTO measurements (id, measured_at, patient_id, agent_id, kind, value, components, unit,"
                    " device_clock_trusted, agent_received_at, quality) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,true,%s,%s)",
                    rows)
        pool = open_pool(url, min_size=1, max_size=2)
        try:
            engine = AlertEngine(pool=pool, config=load_config(), clock=FixedClock(t0 + timedelta(hours=1)))
            engine.on_stored(readings[:batch])  # warm: first alerts, caches
            cpu = wall = 0.0
            for k in range(batch, len(readings), batch):
                w, c0 = time.perf_counter(), time.thread_time()
                engine.on_stored(readings[k:k + batch])
                cpu += time.thread_time() - c0
                wall += time.perf_counter() - w
            with pool.connection() as conn:
                actions: dict[str, int] = dict(conn.execute(
                    "SELECT action, count(*) FROM alert_transitions GROUP BY 1").fetchall())
        finally:
            pool.close()
        done = len(readings) - batch
        return {"cpu_ms": 1000 * cpu / done, "wall_ms": 1000 * wall / done, "transitions": actions}
    finally:
        with psycopg.connect(admin_url, autocommit=True) as a:
            a.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def run_child(tree: Path, args: argparse.Namespace, workload: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(tree), "--workload", workload, "--readings", str(args.readings),
         "--batch", str(args.batch), "--admin-url", args.admin_url],
        capture_output=True, text=True, check=True, cwd=tree, timeout=600)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def archive(rev: str, into: Path) -> Path:
    data = subprocess.run(["git", "archive", rev], cwd=ROOT, capture_output=True, check=True).stdout
    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.seek(0)
        with tarfile.open(fileobj=f) as tar:
            tar.extractall(into, filter="data")
    return into


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--readings", type=int, default=6000)
    ap.add_argument("--batch", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--before", help="a git revision (or a directory with another checkout) to time alongside,"
                                     " as the baseline")
    ap.add_argument("--admin-url", default=os.environ.get("NEARCARE_TEST_DATABASE_URL",
                                                          "postgresql://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--workload", choices=WORKLOADS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.admin_url, args.workload, args.readings, args.batch)))
        return
    with tempfile.TemporaryDirectory(prefix="nearcare-bench-engine-") as tmp:
        trees = {"now": ROOT}
        if args.before:
            before = Path(args.before) if Path(args.before).is_dir() else archive(args.before, Path(tmp))
            trees = {"before": before, "now": ROOT}
        results: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for workload in WORKLOADS:
            for _ in range(args.rounds):
                for label, tree in trees.items():
                    results.setdefault((label, workload), []).append(run_child(tree, args, workload))
    print(f"command: bench/alert_engine.py {' '.join(sys.argv[1:])}")
    summary = []
    for (label, workload), runs in results.items():
        cpu = statistics.median(r["cpu_ms"] for r in runs)
        wall = statistics.median(r["wall_ms"] for r in runs)
        print(f"{label:>6} {workload:<6}: engine CPU {cpu:.3f} ms/reading, wall {wall:.3f} ms/reading"
              f" (median of {len(runs)}; each run {' '.join(format(r['cpu_ms'], '.3f') for r in runs)});"
              f" transitions {runs[-1]['transitions']}")
        if label == "now":
            summary.append(f"{workload}_cpu_ms={cpu:.3f} {workload}_wall_ms={wall:.3f}")
    print("RESULT " + " ".join(summary))


if __name__ == "__main__":
    main()
