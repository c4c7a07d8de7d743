"""Benchmark: the population view (risk score with adherence) for one nurse's municipality.

Seeds a dedicated database (dropped and re-created): ``--patients`` citizens in one municipality,
each with a monitoring plan (SpO2 at 08:00 and 20:00 every day, weight at 07:30 on weekdays),
``--days`` of readings with about one slot in five missed, open alerts for a tenth of them and a
weight baseline for all. Then it times, in the same run:

- the population service as it is: every patient in scope scored, adherence for all of them from
  one set-based query (``backend.population.service.population``);
- the same query's adherence alone (``adherence``);
- the baseline: the earlier way, the plan's per-patient ``backend.alerting.plans.adherence`` in a
  loop, for the first 500 patients only (what the removed cap computed), and for all of them.

    .venv/bin/python bench/population.py [--patients 2000] [--days 35] [--iterations 10]

Last line: ``RESULT patients=… population_p50_ms=… per_patient_500_ms=… per_patient_all_ms=…``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
import psycopg.conninfo

ADMIN_URL = os.environ.get("NEARCARE_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
DB_NAME = "nearcare_bench_population"
MUNICIPALITY = "Benchkommune"
OLD_CAP = 500


def _url(dbname: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(ADMIN_URL)
    params["dbname"] = dbname
    return psycopg.conninfo.make_conninfo(**params)


def seed(url: str, *, patients: int, days: int) -> int:
    from backend.store import migrate

    migrate(url)
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(
            "INSERT INTO teams (key, name, sector, municipality) VALUES ('bench-team', 'Bench sygepleje',"
            " 'municipal', %s)",
            (MUNICIPALITY,),
        )
        c.execute(
            """INSERT INTO patients (external_ref, name, programme, municipality)
               SELECT 'bench-' || g, 'Borger ' || g, 'copd', %s FROM generate_series(1, %s) g""",
            (MUNICIPALITY, patients),
        )
        c.execute("INSERT INTO agents (id, patient_id) SELECT 'bench-agent-' || id, id FROM patients")
        c.execute(
            """INSERT INTO monitoring_plans (patient_id, measurements, updated_by, starts_at)
               SELECT id, '[{"kind": "spo2", "times": ["08:00", "20:00"], "grace_minutes": 120},
                            {"kind": "weight", "times": ["07:30"], "weekdays": [0, 1, 2, 3, 4],
                             "grace_minutes": 90}]', 'bench', now() - %s * interval '1 day'
               FROM patients""",
            (days + 1,),
        )
        # Readings near each slot (UTC 06:10 and 18:05: 07:10/19:05 or 08:10/20:05 local), some days missed.
        c.execute(
            """INSERT INTO measurements (id, measured_at, patient_id, agent_id, kind, value, components, unit,
                                         device_clock_trusted, agent_received_at)
               SELECT gen_random_uuid(), t, p.id, 'bench-agent-' || p.id, k.kind, k.v,
                      jsonb_build_object(k.kind, k.v), k.unit, true, t
               FROM patients p
               CROSS JOIN generate_series(0, %s) d
               CROSS JOIN (VALUES ('spo2', 95.0, '%%', interval '6 hours 10 minutes'),
                                  ('spo2', 94.0, '%%', interval '18 hours 5 minutes'),
                                  ('weight', 80.0, 'kg', interval '5 hours 40 minutes')) AS k(kind, v, unit, at)
               CROSS JOIN LATERAL (SELECT date_trunc('day', now() - d * interval '1 day') + k.at AS t) x
               WHERE (p.id + d) %% 5 <> 0 AND t < now()""",
            (days,),
        )
        c.execute(
            """INSERT INTO alerts (patient_id, rule_id, rule_kind, measurement, severity, state, title, opened_at,
                                   updated_at, last_value, team_key, owner_since)
               SELECT id, 'copd.spo2.absolute', 'absolute', 'spo2', 'red', 'open', 'Lav iltmætning',
                      now() - interval '1 hour', now(), 84, 'bench-team', now() FROM patients WHERE id % 10 = 3"""
        )
        c.execute(
            "INSERT INTO patient_baselines (patient_id, kind, component, mean, sd, n_days)"
            " SELECT id, 'weight', 'weight', 79.5 + id % 3, 0.6, 14 FROM patients"
        )
        c.execute("VACUUM ANALYZE")
        row = c.execute("SELECT count(*) FROM measurements").fetchone()
        assert row is not None
        return int(row[0])


def _ms(fn: Callable[[], object], iterations: int) -> list[float]:
    out = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--patients", type=int, default=2000)
    ap.add_argument("--days", type=int, default=35)
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--keep", action="store_true", help="keep the bench database afterwards")
    args = ap.parse_args()
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    url = _url(DB_NAME)
    with psycopg.connect(ADMIN_URL, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        c.execute(f'CREATE DATABASE "{DB_NAME}"')
    try:
        t0 = time.monotonic()
        readings = seed(url, patients=args.patients, days=args.days)
        print(f"seeded {args.patients} patients, {readings} readings in {time.monotonic() - t0:.0f} s")
        from backend.accounts.model import Role, User
        from backend.alerting.plans import adherence as per_patient
        from backend.population.service import adherence, population

        nurse = User(id=1, username="bench", display_name="Bench", role=Role.NURSE, municipality=MUNICIPALITY)
        since = datetime.now(UTC) - timedelta(days=28)
        with psycopg.connect(url) as conn:
            pids = [r[0] for r in conn.execute("SELECT id FROM patients ORDER BY id").fetchall()]
            view = population(conn, user=nurse)  # warm
            scored = sum(1 for p in view.patients if p.adherence is not None)
            pop = _ms(lambda: population(conn, user=nurse), args.iterations)
            adh = _ms(lambda: adherence(conn, patient_ids=pids, since=since), args.iterations)
            capped = _ms(lambda: [per_patient(conn, patient_id=p, since=since) for p in pids[:OLD_CAP]], 3)
            every = _ms(lambda: [per_patient(conn, patient_id=p, since=since) for p in pids], 1)
        print(
            f"population service, all {len(view.patients)} patients ({scored} with adherence): "
            f"p50 {statistics.median(pop):.0f} ms, max {max(pop):.0f} ms"
        )
        print(f"  of which set-based adherence for all: p50 {statistics.median(adh):.0f} ms")
        print(
            f"baseline, same run: per-patient adherence loop, first {OLD_CAP} (the old cap): "
            f"p50 {statistics.median(capped):.0f} ms; all {len(pids)}: {every[0]:.0f} ms"
        )
        print(f"machine load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(
            f"RESULT patients={args.patients} population_p50_ms={statistics.median(pop):.0f} "
            f"adherence_p50_ms={statistics.median(adh):.0f} per_patient_500_ms={statistics.median(capped):.0f} "
            f"per_patient_all_ms={every[0]:.0f}"
        )
    finally:
        if not args.keep:
            with psycopg.connect(ADMIN_URL, autocommit=True) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')


if __name__ == "__main__":
    main()
