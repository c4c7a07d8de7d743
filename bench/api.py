"""Benchmark: the clinician API on a large population.

Seeds a dedicated database (dropped and re-created) with server-side ``generate_series``
INSERTs: patients in 10 municipalities, one agent each, raw readings (SpO2, pulse, weight,
blood pressure, once a day each) for ``--raw-days``, daily aggregates for a whole year
(``--daily-days``; the raw window through the real ``backend.store.rollup.refresh``, older days
generated directly), and open/acknowledged alerts for a share of the patients. Then it runs the
real app under uvicorn and times, over HTTP with bearer tokens (auth, scope, audit commit and
all), a nurse's worklist and one patient's one-year trend.

    .venv/bin/python bench/api.py [--patients 10000] [--raw-days 120] [--daily-days 365]

Last line: ``RESULT patients=… readings=… worklist_p95_ms=… trend_1y_p95_ms=…``.
Goals: worklist p95 <= 100 ms, one-patient one-year trend p95 <= 50 ms.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
import psycopg.conninfo

ADMIN_URL = os.environ.get("NEARCARE_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
DB_NAME = "nearcare_bench_api"
MUNICIPALITIES = 10
PASSWORD = "bench-password-1"


def _url(dbname: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(ADMIN_URL)
    params["dbname"] = dbname
    return psycopg.conninfo.make_conninfo(**params)


def step(label: str, t0: float) -> float:
    t = time.monotonic()
    print(f"  {label:<58} {t - t0:7.1f} s", flush=True)
    return t


def seed(url: str, *, patients: int, raw_days: int, daily_days: int) -> int:
    from backend.accounts.store import create_user
    from backend.store import migrate
    from backend.store.rollup import refresh

    t = time.monotonic()
    migrate(url)
    t = step("migrations", t)
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("SET synchronous_commit = off")
        for i in range(MUNICIPALITIES):
            c.execute(
                "INSERT INTO teams (key, name, sector, municipality) VALUES (%s, %s, 'municipal', %s)",
                (f"bench-kommune-{i}", f"Benchkommune {i} sygepleje", f"Benchkommune{i}"),
            )
        c.execute(
            "INSERT INTO teams (key, name, sector, department) VALUES ('bench-lunge', 'Lungeteam', 'hospital',"
            " 'Bench Lunge')"
        )
        c.execute(
            """INSERT INTO patients (external_ref, name, programme, municipality, department)
               SELECT 'bench-' || g, 'Borger ' || g, (ARRAY['copd','heart_failure','hypertension'])[1 + g %% 3],
                      'Benchkommune' || (g %% %s), CASE WHEN g %% 5 = 0 THEN 'Bench Lunge' END
               FROM generate_series(1, %s) g""",
            (MUNICIPALITIES, patients),
        )
        c.execute("INSERT INTO agents (id, patient_id) SELECT 'bench-agent-' || id, id FROM patients")
        t = step(f"{patients} patients, agents, teams", t)
        # In time order, as ingest writes them (the BRIN index on measured_at relies on it).
        # Bulk load without the measurement indexes, then build them once (much faster than
        # maintaining a random-uuid unique index row by row). Bench-only.
        c.execute("ALTER TABLE measurements DROP CONSTRAINT measurements_id_measured_at_key")
        c.execute("DROP INDEX measurements_time_brin")
        c.execute("DROP INDEX measurements_patient_kind_time")
        c.execute(
            """INSERT INTO measurements (id, measured_at, patient_id, agent_id, kind, value, components, unit,
                                         device_clock_trusted, agent_received_at, stored_at)
               SELECT gen_random_uuid(), ts, p.id, 'bench-agent-' || p.id, k.kind, v.primary_value, v.comps, k.unit,
                      true, ts + interval '20 seconds', ts + interval '21 seconds'
               FROM patients p
               CROSS JOIN generate_series(0, %s - 1) d
               CROSS JOIN (VALUES ('spo2', '%%', 0), ('pulse', '/min', 1), ('weight', 'kg', 2),
                                  ('blood_pressure', 'mm[Hg]', 3)) AS k(kind, unit, n)
               CROSS JOIN LATERAL (SELECT now() - d * interval '1 day' - (p.id %% 600) * interval '1 minute'
                                          - k.n * interval '30 seconds' AS ts) t
               CROSS JOIN LATERAL (SELECT
                   CASE k.kind WHEN 'spo2' THEN 90 + (p.id + d) %% 8 WHEN 'pulse' THEN 62 + (p.id * 7 + d) %% 30
                        WHEN 'weight' THEN 60 + p.id %% 50 + ((d %% 7) - 3) * 0.2 ELSE 120 + (p.id + 3 * d) %% 40
                   END::float8 AS primary_value) pv
               CROSS JOIN LATERAL (SELECT pv.primary_value,
                   CASE k.kind WHEN 'blood_pressure' THEN jsonb_build_object('systolic', pv.primary_value,
                            'diastolic', 70 + (p.id + d) %% 25, 'mean_arterial', 90)
                        ELSE jsonb_build_object(k.kind, pv.primary_value) END AS comps) v
               ORDER BY ts""",
            (raw_days,),
        )
        t = step(f"raw readings ({raw_days} days x 4 kinds), no indexes", t)
        c.execute("ALTER TABLE measurements ADD CONSTRAINT measurements_id_measured_at_key UNIQUE (id, measured_at)")
        c.execute("CREATE INDEX measurements_time_brin ON measurements USING brin (measured_at)")
        c.execute("CREATE INDEX measurements_patient_kind_time ON measurements (patient_id, kind, measured_at DESC)")
        t = step("measurement indexes rebuilt", t)
        readings = c.execute("SELECT count(*) FROM measurements").fetchone()[0]  # type: ignore[index]
        since = datetime.now(UTC) - timedelta(days=raw_days)
        refresh(c, since=since)
        t = step("daily rollup of the raw window (backend.store.rollup.refresh)", t)
        c.execute(
            """INSERT INTO measurement_daily (patient_id, kind, component, day, n, mean, min, max)
               SELECT p.id, k.kind, k.comp, d.day, 1, k.base + (p.id + d.i) %% 6, k.base + (p.id + d.i) %% 6 - 2,
                      k.base + (p.id + d.i) %% 6 + 2
               FROM patients p
               CROSS JOIN (SELECT i, (now() AT TIME ZONE 'Europe/Copenhagen')::date - i AS day
                           FROM generate_series(%s + 1, %s) i) d
               CROSS JOIN (VALUES ('spo2', 'spo2', 90), ('pulse', 'pulse', 70), ('weight', 'weight', 80),
                                  ('blood_pressure', 'systolic', 130), ('blood_pressure', 'diastolic', 82))
                          AS k(kind, comp, base)
               ON CONFLICT DO NOTHING""",
            (raw_days, daily_days),
        )
        t = step(f"older daily aggregates up to {daily_days} days", t)
        # Open alerts for ~8 % of the patients (1-3 each), acknowledged ones for ~2 %.
        c.execute(
            """INSERT INTO alerts (patient_id, rule_id, rule_kind, measurement, severity, state, title, opened_at,
                                   updated_at, last_value, team_key, owner_since, escalation_due_at,
                                   acknowledged_by, acknowledged_at, ack_note)
               SELECT p.id, r.rule_id, r.kind, r.meas, r.sev,
                      CASE WHEN p.id % 50 = 7 THEN 'acknowledged' ELSE 'open' END,
                      r.title, now() - (p.id % 4000) * interval '1 minute', now(), r.val,
                      'bench-kommune-' || ((regexp_replace(p.municipality, '\\D', '', 'g'))::int),
                      now() - (p.id % 4000) * interval '1 minute', now() + interval '30 minutes',
                      CASE WHEN p.id % 50 = 7 THEN 'bench' END, CASE WHEN p.id % 50 = 7 THEN now() END,
                      CASE WHEN p.id % 50 = 7 THEN 'ok' END
               FROM patients p
               CROSS JOIN (VALUES ('copd.spo2.absolute', 'absolute', 'spo2', 'red', 'Lav iltmætning', 84.0, 0),
                                  ('copd.pulse.absolute', 'absolute', 'pulse', 'yellow', 'Puls', 115.0, 1),
                                  ('plan.missing', 'missing', 'weight', 'blue', 'Manglende måling', NULL, 2))
                          AS r(rule_id, kind, meas, sev, title, val, n)
               WHERE (p.id % 100 < 10) AND r.n <= p.id % 3"""
        )
        t = step("alerts", t)
        c.execute("VACUUM ANALYZE")
        step("vacuum analyze", t)
        for i in range(MUNICIPALITIES):
            team = c.execute("SELECT id FROM teams WHERE key = %s", (f"bench-kommune-{i}",)).fetchone()
            create_user(
                c, username=f"nurse{i}", display_name=f"Nurse {i}", role="nurse", password=PASSWORD, team_id=team[0]
            )  # type: ignore[index]
    return int(readings)


def _p95(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=100, method="inclusive")[94]


def measure(url: str, *, iterations: int) -> dict[str, float]:
    import subprocess

    import httpx

    from backend.embedded import free_port

    port = free_port()
    # The app in its own process (as deployed), so this client does not share its GIL.
    env = {**os.environ, "NEARCARE_DATABASE_URL": url, "NEARCARE_SECRET_KEY": secrets.token_urlsafe(32),
           "NEARCARE_DEMO": "false",
           "NEARCARE_POOL_MIN_SIZE": "2", "NEARCARE_POOL_MAX_SIZE": "4"}
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "backend.app:create_api_app", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning"],
        env=env, cwd=str(Path(__file__).resolve().parent.parent))
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            raise RuntimeError("the app did not start")
        time.sleep(0.2)
    base = f"http://127.0.0.1:{port}"
    out: dict[str, float] = {}
    try:
        with httpx.Client(base_url=base, timeout=30) as client, psycopg.connect(url) as conn:
            tokens = [
                client.post("/api/v1/auth/token", json={"username": f"nurse{i}", "password": PASSWORD}).json()[
                    "access_token"
                ]
                for i in range(MUNICIPALITIES)
            ]
            by_mun = {
                i: [
                    r[0]
                    for r in conn.execute(
                        "SELECT id FROM patients WHERE municipality = %s", (f"Benchkommune{i}",)
                    ).fetchall()
                ]
                for i in range(MUNICIPALITIES)
            }
            rng = random.Random(1)
            wl_rows = []

            def timed(path: str, token: str, **params: str) -> float:
                t0 = time.perf_counter()
                r = client.get(path, params=params, headers={"Authorization": f"Bearer {token}"})
                dt = (time.perf_counter() - t0) * 1000
                if r.status_code != 200:
                    raise RuntimeError(f"{path}: {r.status_code} {r.text[:200]}")
                if path.endswith("/worklist"):
                    wl_rows.append(len(r.json()["rows"]))
                return dt

            for _ in range(5):  # warm the pool and caches
                timed("/api/v1/worklist", tokens[0])
            # Baseline in the same run: an authenticated endpoint that reads no clinical data. On a
            # shared 2-core machine it shows how much of every figure is waiting for the CPU.
            baseline = [timed("/api/v1/me", tokens[i % MUNICIPALITIES]) for i in range(iterations)]
            worklist = [timed("/api/v1/worklist", tokens[i % MUNICIPALITIES]) for i in range(iterations)]
            trend = []
            trend_points = []
            for _ in range(iterations):
                i = rng.randrange(MUNICIPALITIES)
                pid = rng.choice(by_mun[i])
                t0 = time.perf_counter()
                r = client.get(
                    f"/api/v1/patients/{pid}/trend",
                    params={"kind": "blood_pressure", "range": "1y"},
                    headers={"Authorization": f"Bearer {tokens[i]}"},
                )
                trend.append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 200, r.text
                trend_points.append(len(r.json()["series"][0]["t"]))
            week = []
            for _ in range(iterations // 2):
                i = rng.randrange(MUNICIPALITIES)
                pid = rng.choice(by_mun[i])
                week.append(timed(f"/api/v1/patients/{pid}/trend", tokens[i], kind="spo2", range="7d"))
            out = {
                "worklist_p50_ms": statistics.median(worklist),
                "worklist_p95_ms": _p95(worklist),
                "worklist_rows": statistics.mean(wl_rows),
                "trend_1y_p50_ms": statistics.median(trend),
                "trend_1y_p95_ms": _p95(trend),
                "trend_1y_points": statistics.mean(trend_points),
                "trend_7d_p95_ms": _p95(week),
                "baseline_p50_ms": statistics.median(baseline), "baseline_p95_ms": _p95(baseline),
            }
    finally:
        server.terminate()
        server.wait(30)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--patients", type=int, default=10_000)
    ap.add_argument("--raw-days", type=int, default=120)
    ap.add_argument("--daily-days", type=int, default=365)
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--keep", action="store_true", help="keep the bench database afterwards")
    ap.add_argument("--reuse", action="store_true", help="measure a database kept by an earlier --keep run")
    args = ap.parse_args()
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    if not args.reuse:
        print(f"seeding {DB_NAME}: {args.patients} patients, raw {args.raw_days} days, daily {args.daily_days} days")
    url = _url(DB_NAME)
    if not args.reuse:
        with psycopg.connect(ADMIN_URL, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
            c.execute(f'CREATE DATABASE "{DB_NAME}"')
    try:
        t0 = time.monotonic()
        if args.reuse:
            with psycopg.connect(url) as c:
                readings = c.execute("SELECT count(*) FROM measurements").fetchone()[0]  # type: ignore[index]
                args.patients = c.execute("SELECT count(*) FROM patients").fetchone()[0]  # type: ignore[index]
            print(f"reusing {DB_NAME}: {args.patients} patients, {readings} readings")
        else:
            readings = seed(url, patients=args.patients, raw_days=args.raw_days, daily_days=args.daily_days)
            print(f"seeded {readings} readings in {time.monotonic() - t0:.0f} s")
        with psycopg.connect(url) as c:
            daily = c.execute("SELECT count(*) FROM measurement_daily").fetchone()[0]  # type: ignore[index]
            open_alerts = c.execute("SELECT count(*) FROM alerts WHERE state <> 'resolved'").fetchone()[0]  # type: ignore[index]
        print(f"measurement_daily rows: {daily}; unresolved alerts: {open_alerts}")
        r = measure(url, iterations=args.iterations)
        print(
            f"worklist (a nurse's municipality, ~{r['worklist_rows']:.0f} rows, HTTP incl. auth+audit): "
            f"p50 {r['worklist_p50_ms']:.1f} ms, p95 {r['worklist_p95_ms']:.1f} ms (goal <= 100)"
        )
        print(
            f"trend 1 year, blood pressure, daily ({r['trend_1y_points']:.0f} days): p50 {r['trend_1y_p50_ms']:.1f} ms,"
            f" p95 {r['trend_1y_p95_ms']:.1f} ms (goal <= 50)"
        )
        print(f"trend 7 days, raw SpO2: p95 {r['trend_7d_p95_ms']:.1f} ms")
        print(f"baseline GET /api/v1/me (token lookup only), same run: p50 {r['baseline_p50_ms']:.1f} ms,"
              f" p95 {r['baseline_p95_ms']:.1f} ms")
        print(f"machine load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(
            f"RESULT patients={args.patients} readings={readings} worklist_p95_ms={r['worklist_p95_ms']:.1f} "
            f"trend_1y_p95_ms={r['trend_1y_p95_ms']:.1f}"
        )
    finally:
        if not (args.keep or args.reuse):
            with psycopg.connect(ADMIN_URL, autocommit=True) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')


if __name__ == "__main__":
    main()
