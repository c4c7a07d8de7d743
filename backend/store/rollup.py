"""The daily rollup on plain PostgreSQL (TimescaleDB keeps it as a continuous aggregate).

Days are local (Europe/Copenhagen): a nurse's "Tuesday" is the citizen's Tuesday.
"""

from __future__ import annotations

from datetime import datetime

import psycopg

from backend.store.capabilities import detect

_REFRESH = """
INSERT INTO measurement_daily (patient_id, kind, component, day, n, mean, min, max)
SELECT m.patient_id, m.kind, c.key, (m.measured_at AT TIME ZONE %(tz)s)::date AS day,
       count(*), avg(c.value::text::double precision), min(c.value::text::double precision),
       max(c.value::text::double precision)
FROM measurements m, jsonb_each(m.components) AS c
WHERE m.measured_at >= %(since)s AND jsonb_typeof(c.value) = 'number'
  AND (m.kind <> 'blood_pressure' OR c.key IN ('systolic', 'diastolic'))
GROUP BY m.patient_id, m.kind, c.key, day
ON CONFLICT (patient_id, kind, component, day)
DO UPDATE SET n = EXCLUDED.n, mean = EXCLUDED.mean, min = EXCLUDED.min, max = EXCLUDED.max
"""


def refresh(conn: psycopg.Connection, *, since: datetime, tz: str = "Europe/Copenhagen") -> None:
    """Recompute the local days from ``since`` (rounded down to its local midnight) onward."""
    if detect(conn).timescale:
        conn.execute(
            "CALL refresh_continuous_aggregate('measurement_daily_cagg', %s, NULL)", (since,)
        )
        return
    start = conn.execute(
        "SELECT (date_trunc('day', %s::timestamptz AT TIME ZONE %s)) AT TIME ZONE %s",
        (since, tz, tz),
    ).fetchone()
    conn.execute(_REFRESH, {"tz": tz, "since": start[0] if start else since})
