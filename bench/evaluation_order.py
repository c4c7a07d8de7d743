"""The alert engine's CPU per reading, in order and with late readings (evaluation in measurement order).

Seeds a database of its own (COPD patients, SpO2 readings at 88/84/95 %), then times
``AlertEngine.on_stored`` (thread CPU and wall) over the same readings twice, each on fresh
patients:

- ``in_order``: batches of ``--batch`` readings in measurement order (the common path: no late
  reading, nothing replayed);
- ``late``: each patient's readings in batches of ``--late-batch``, newest batch first, so every
  batch after the first is late and replays the span from it onward (the late path).

``--before TREE`` runs the same measurement on another source tree in a subprocess in the same
run, e.g. the engine before ordering::

    git archive e77d170~1 | (mkdir -p /tmp/before && tar -x -C /tmp/before)
    .venv/bin/python bench/evaluation_order.py --before /tmp/before

Last line: ``RESULT in_order_cpu_ms_per_reading_before=… after=… late_cpu_ms_per_reading=…``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ADMIN = os.environ.get("NEARCARE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


def measure(tree: Path, patients: int, readings: int, batch: int, late_batch: int) -> dict[str, float]:
    sys.path.insert(0, str(tree))
    import psycopg
    from psycopg.types.json import Jsonb

    from backend.alerting.clock import FixedClock
    from backend.alerting.config import load_config
    from backend.alerting.engine import AlertEngine
    from backend.readings import StoredReading
    from backend.store import migrate, open_pool
    from vitals import MeasurementKind

    name = "nc_order_" + secrets.token_hex(4)
    base = ADMIN.rsplit("/", 1)[0]
    with psycopg.connect(ADMIN, autocommit=True) as a:
        a.execute(f"CREATE DATABASE {name}")
    url = f"{base}/{name}"
    try:
        migrate(url)
        t0 = datetime.now(UTC) - timedelta(hours=3)
        out: dict[str, float] = {}
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("INSERT INTO teams (key, name, sector, municipality) VALUES"
                      " ('aarhus-sygepleje', 'Aarhus', 'municipal', 'Aarhus'),"
                      " ('auh-lungeteam', 'AUH', 'hospital', NULL), ('auh-akut', 'AUH akut', 'hospital', NULL)")

            def seed(tag: str) -> list[Any]:
                pids = []
                for i in range(patients):
                    row = c.execute("INSERT INTO patients (external_ref, name, programme, municipality)"
                                    " VALUES (%s, %s, 'copd', 'Aarhus') RETURNING id",
                                    (f"{tag}-{i}", f"B {i}")).fetchone()
                    assert row is not None
                    pid = row[0]
                    c.execute("INSERT INTO agents (id, patient_id) VALUES (%s, %s)", (f"{tag}-ag-{i}", pid))
                    pids.append(pid)
                rows: list[tuple[Any, ...]] = []
                stored: list[Any] = []
                for n in range(readings):
                    k = n % patients
                    at = t0 + timedelta(milliseconds=500 * n)
                    v = (88.0, 84.0, 95.0, 95.0)[(n // patients) % 4]
                    mid = uuid.uuid4()
                    rows.append((mid, at, pids[k], f"{tag}-ag-{k}", "spo2", v, Jsonb({"spo2": v}), "%", at, []))
                    stored.append(StoredReading(id=mid, patient_id=pids[k], agent_id=f"{tag}-ag-{k}",
                                                kind=MeasurementKind("spo2"), components={"spo2": v}, measured_at=at,
                                                stored_at=at))
                with c.cursor() as cur:
                    cur.executemany("INSERT INTO measurements (id, measured_at, patient_id, agent_id, kind, value,"
                                    " components, unit, device_clock_trusted, agent_received_at, quality)"
                                    " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,true,%s,%s)", rows)
                return stored

            in_order = seed("o")
            scrambled = seed("l")
        pool = open_pool(url, min_size=1, max_size=2)
        try:
            engine = AlertEngine(pool=pool, config=load_config(), clock=FixedClock(t0 + timedelta(hours=3)))
            engine.on_stored(in_order[:batch])  # warm: caches, prepared statements
            batches = [in_order[i:i + batch] for i in range(batch, len(in_order), batch)]
            out["in_order_cpu"], out["in_order_wall"] = _time(engine, batches)
            out["in_order_n"] = sum(len(b) for b in batches)
            # Each patient's readings, newest batch first; patients interleaved batch by batch.
            per_patient: dict[int, list[Any]] = {}
            for r in scrambled:
                per_patient.setdefault(r.patient_id, []).append(r)
            chunks = [[rs[i:i + late_batch] for i in range(0, len(rs), late_batch)][::-1]
                      for rs in per_patient.values()]
            late = [c for group in zip(*chunks, strict=False) for c in group]
            per = max(1, batch // late_batch)
            merged = [list(itertools.chain.from_iterable(late[i:i + per])) for i in range(0, len(late), per)]
            out["late_cpu"], out["late_wall"] = _time(engine, merged)
            out["late_n"] = sum(len(b) for b in merged)
            out["late_replayed"] = float(getattr(engine, "late", 0))
            import backend.alerting.engine as module
            assert Path(module.__file__ or "").resolve().is_relative_to(tree.resolve()), module.__file__
        finally:
            pool.close()
        return out
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as a:
            a.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _time(engine: Any, batches: list[list[Any]]) -> tuple[float, float]:
    cpu = wall = 0.0
    for b in batches:
        w, c0 = time.perf_counter(), time.thread_time()
        engine.on_stored(b)
        cpu += time.thread_time() - c0
        wall += time.perf_counter() - w
    return cpu, wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=200)
    ap.add_argument("--readings", type=int, default=6000)
    ap.add_argument("--batch", type=int, default=60)
    ap.add_argument("--late-batch", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--before", type=Path, help="another source tree, measured in the same run")
    ap.add_argument("--after", type=Path, default=ROOT, help="the tree to measure (default: this one)")
    ap.add_argument("--tree", type=Path, default=ROOT, help=argparse.SUPPRESS)
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.json:
        print(json.dumps(measure(a.tree, a.patients, a.readings, a.batch, a.late_batch)))
        return
    trees = {"after": a.after, **({"before": a.before} if a.before else {})}
    best: dict[str, dict[str, float]] = {}
    for i in range(a.repeat):
        for label, tree in (trees.items() if i % 2 == 0 else reversed(list(trees.items()))):
            res = subprocess.run(
                [sys.executable, __file__, "--json", "--tree", str(tree), "--patients", str(a.patients),
                 "--readings", str(a.readings), "--batch", str(a.batch), "--late-batch", str(a.late_batch)],
                check=True, capture_output=True, text=True, cwd=tree)
            r = json.loads(res.stdout.strip().splitlines()[-1])
            ms = {"in_order": 1000 * r["in_order_cpu"] / r["in_order_n"], "late": 1000 * r["late_cpu"] / r["late_n"],
                  "in_order_wall": 1000 * r["in_order_wall"] / r["in_order_n"],
                  "late_wall": 1000 * r["late_wall"] / r["late_n"], "replayed": r["late_replayed"]}
            print(f"pass {i + 1} {label}: in order {ms['in_order']:.3f} ms CPU ({ms['in_order_wall']:.3f} wall)"
                  f" per reading; late {ms['late']:.3f} ms CPU ({ms['late_wall']:.3f} wall), {ms['replayed']:.0f}"
                  " late readings replayed", flush=True)
            prev = best.get(label)
            best[label] = ms if prev is None else {k: min(v, prev[k]) for k, v in ms.items()}
    cmd = " ".join(["python", "bench/evaluation_order.py", *sys.argv[1:]])
    print(f"command: {cmd}; best of {a.repeat} passes per tree, {a.readings} readings over {a.patients} patients")
    before = f"in_order_cpu_ms_per_reading_before={best['before']['in_order']:.3f} " if "before" in best else ""
    late_before = f"late_cpu_ms_per_reading_before={best['before']['late']:.3f} " if "before" in best else ""
    print(f"RESULT {before}after={best['after']['in_order']:.3f} {late_before}"
          f"late_cpu_ms_per_reading={best['after']['late']:.3f}")


if __name__ == "__main__":
    main()
