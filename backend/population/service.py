"""Population figures for the patients a clinician may read.

Every patient in scope is scored, and every score uses the same inputs: adherence is computed for
all of them in one set-based query (:data:`ADHERENCE_SQL`), never for a subset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg

from backend.accounts.model import User
from backend.accounts.scope import scope_clause
from backend.alerting.metrics import alert_burden
from backend.alerting.models import TeamBurden
from backend.alerting.views.worklist import teams_in_scope

DAYS = 28


@dataclass(frozen=True, slots=True)
class OpenAlerts:
    red: int
    yellow: int
    blue: int
    technical: int


@dataclass(frozen=True, slots=True)
class Adherence:
    planned: int
    """Planned measurements whose grace window has passed (passive intervals and pauses excluded)."""
    taken: int
    """Of those, the ones met by a reading of their kind inside the window."""

    @property
    def share(self) -> float | None:
        return self.taken / self.planned if self.planned else None


NO_PLAN = Adherence(0, 0)


@dataclass(frozen=True, slots=True)
class Deviation:
    """How far the citizen's newest value lies from their own usual value."""

    kind: str
    component: str
    value: float
    """The newest value (stored baseline) or the newest day's mean (own history)."""
    usual: float
    """The baseline mean, or the median of the earlier days' means."""
    scale: float
    """The baseline SD, or the robust spread of the earlier days (1.4826 x MAD, at least a floor)."""
    z: float
    """Signed: (value - usual) / scale."""
    days: int
    """Days behind the usual value."""
    source: str
    """"baseline" (the rules' stored baseline) or "own_history" (the last days' readings)."""


@dataclass(frozen=True, slots=True)
class RiskPart:
    """One term of the risk score, for the explanation beside it."""

    what: str
    """red, yellow, blue, technical, deviation, missed."""
    count: float
    points: float


@dataclass(frozen=True, slots=True)
class PatientRisk:
    patient_id: int
    name: str
    ref: str
    programme: str
    municipality: str
    department: str | None
    open: OpenAlerts
    deviation_z: float | None
    """The largest |z| of a latest value against the patient's stored baseline."""
    deviation_kind: str | None
    adherence: float | None
    planned: int
    taken: int
    risk: float
    deviation: Deviation | None = None
    deviation_missing: str | None = None
    """Why there is no deviation: "no_readings" or "few_days" (fewer than MIN_DAYS earlier days)."""
    has_plan: bool = False
    """A monitoring plan exists (adherence None then means nothing was due yet)."""
    parts: tuple[RiskPart, ...] = ()


@dataclass(frozen=True, slots=True)
class PopulationView:
    days: int
    since: datetime
    patients: list[PatientRisk]
    """Every patient in scope, highest risk first."""
    burden: list[TeamBurden]


POINTS = {"red": 100.0, "yellow": 30.0, "blue": 10.0, "technical": 3.0, "deviation": 5.0, "missed": 20.0}
"""Points per open alert by severity, per unit of |z| (capped at :data:`Z_CAP`), and for missing every
planned measurement (scaled by the share missed)."""
Z_CAP = 6.0


def risk_parts(open_alerts: OpenAlerts, *, deviation_z: float | None, adherence: float | None) -> tuple[RiskPart, ...]:
    """Pure: the terms of the risk score that are not zero."""
    parts = [RiskPart(sev, n, POINTS[sev] * n) for sev, n in (
        ("red", open_alerts.red), ("yellow", open_alerts.yellow), ("blue", open_alerts.blue),
        ("technical", open_alerts.technical)) if n]
    if deviation_z:
        z = min(abs(deviation_z), Z_CAP)
        parts.append(RiskPart("deviation", round(z, 2), round(POINTS["deviation"] * z, 1)))
    if adherence is not None and adherence < 1:
        parts.append(RiskPart("missed", round(1 - adherence, 3), round(POINTS["missed"] * (1 - adherence), 1)))
    return tuple(parts)


def risk_score(open_alerts: OpenAlerts, *, deviation_z: float | None, adherence: float | None) -> float:
    """Pure. Open red dominates, then yellow, blue, technical, the deviation from the citizen's usual
    value (|z| capped at 6), then missed measurements (none planned counts as none missed)."""
    score = (
        100 * open_alerts.red
        + 30 * open_alerts.yellow
        + 10 * open_alerts.blue
        + 3 * open_alerts.technical
        + 5 * min(abs(deviation_z or 0.0), Z_CAP)
        + (20 * (1 - adherence) if adherence is not None else 0.0)
    )
    return round(score, 1)


_PATIENTS = """
SELECT p.id, p.name, p.external_ref, p.programme, p.municipality, p.department,
       coalesce(al.red, 0), coalesce(al.yellow, 0), coalesce(al.blue, 0), coalesce(al.technical, 0),
       dev.z, dev.kind, dev.component, dev.v, dev.mean, dev.sd, dev.n_days,
       EXISTS (SELECT 1 FROM monitoring_plans mp WHERE mp.patient_id = p.id) AS has_plan
FROM patients p
LEFT JOIN LATERAL (
    SELECT count(*) FILTER (WHERE severity = 'red') AS red,
           count(*) FILTER (WHERE severity = 'yellow') AS yellow,
           count(*) FILTER (WHERE severity = 'blue') AS blue,
           count(*) FILTER (WHERE severity = 'technical') AS technical
    FROM alerts a WHERE a.patient_id = p.id AND a.state <> 'resolved') al ON true
LEFT JOIN LATERAL (
    -- The latest value of each measured kind against the stored baseline (mean, SD): largest |z|.
    SELECT (lm.v - b.mean) / nullif(b.sd, 0) AS z, b.kind, b.component, lm.v, b.mean, b.sd, b.n_days
    FROM patient_baselines b
    CROSS JOIN LATERAL (
        SELECT (m.components->>b.component)::float8 AS v FROM measurements m
        WHERE m.patient_id = p.id AND m.kind = b.kind AND m.measured_at >= %(since)s
        ORDER BY m.measured_at DESC LIMIT 1) lm
    WHERE b.patient_id = p.id ORDER BY abs((lm.v - b.mean) / nullif(b.sd, 0)) DESC NULLS LAST LIMIT 1) dev ON true
WHERE p.active AND {scope}
"""

ADHERENCE_SQL = """
-- The slots of alert_rules.plans.planned_slots, for many patients at once: each plan item's local
-- times on its weekdays, in the plan's time zone, from max(since, plan start) until now, minus
-- pauses and passive intervals; a slot counts once its grace window has passed, and is met by a
-- reading of its kind within ± grace of it (alert_rules.plans.slot_met), found through the
-- (patient_id, kind, measured_at) index. Local times follow PostgreSQL's AT TIME ZONE: a time
-- skipped by the spring switch is taken in standard time (as zoneinfo does), a time repeated in
-- autumn as its second, standard-time occurrence (zoneinfo takes the first); the grace is elapsed
-- time (planned_slots adds it on the wall clock, which differs only for a window that spans a
-- switch).
WITH item AS (
    SELECT mp.patient_id, mp.timezone AS tz, mp.paused_until,
           greatest(mp.starts_at, %(since)s) AS plan_start,
           i.item->>'kind' AS kind,
           make_interval(mins => coalesce((i.item->>'grace_minutes')::int, 120)) AS grace,
           coalesce(i.item->'weekdays', '[0, 1, 2, 3, 4, 5, 6]'::jsonb) AS weekdays,
           t.hhmm
    FROM monitoring_plans mp
    JOIN patients p ON p.id = mp.patient_id
    CROSS JOIN LATERAL jsonb_array_elements(mp.measurements) AS i(item)
    CROSS JOIN LATERAL jsonb_array_elements_text(i.item->'times') AS t(hhmm)
    WHERE p.active AND mp.patient_id = ANY(%(pids)s)
), local_slot AS MATERIALIZED (
    -- Each (time zone, local time, day) once: the zone conversion is the costly part of a slot.
    SELECT z.tz, z.hhmm, to_jsonb(extract(isodow FROM d.day)::int - 1) AS weekday,
           (d.day::date + z.hhmm::time) AT TIME ZONE z.tz AS due
    FROM (SELECT DISTINCT tz, hhmm FROM item) z
    CROSS JOIN LATERAL generate_series(((%(since)s AT TIME ZONE z.tz)::date - 1)::timestamp,
                                       (%(now)s AT TIME ZONE z.tz)::date::timestamp, interval '1 day') AS d(day)
), slot AS (
    SELECT it.patient_id, it.kind, it.grace, ls.due
    FROM item it JOIN local_slot ls ON ls.tz = it.tz AND ls.hhmm = it.hhmm
    WHERE it.weekdays @> ls.weekday AND ls.due >= it.plan_start AND ls.due + it.grace < %(now)s
      AND (it.paused_until IS NULL OR ls.due >= it.paused_until)
)
SELECT s.patient_id, count(*)::int AS planned,
       count(*) FILTER (WHERE EXISTS (
           SELECT 1 FROM measurements m
           WHERE m.patient_id = s.patient_id AND m.kind = s.kind
             AND m.measured_at >= s.due - s.grace AND m.measured_at <= s.due + s.grace))::int AS taken
FROM slot s
WHERE NOT EXISTS (SELECT 1 FROM passive_intervals pi
                  WHERE pi.patient_id = s.patient_id AND pi.starts_at <= s.due
                    AND (pi.ends_at IS NULL OR s.due < pi.ends_at))
GROUP BY s.patient_id
"""


MIN_DAYS = 5
"""Earlier days with readings needed before the own-history deviation says anything."""

OWN_HISTORY_SQL = """
-- For citizens without a stored baseline: the newest day's mean of each measured value against
-- the median of the earlier days' means in the period, in units of the citizen's own robust spread
-- (1.4826 x the median absolute deviation, never below a floor per measurement, so a very steady
-- citizen does not read as far off on noise). The largest |z| per citizen. One pass over the
-- readings; the day series are small per citizen, the joins between them are by hash.
WITH comp(kind, component, floor) AS (VALUES
        ('spo2', 'spo2', 1.0), ('pulse', 'pulse', 3.0), ('weight', 'weight', 0.5),
        ('blood_pressure', 'systolic', 5.0), ('blood_pressure', 'diastolic', 4.0),
        ('temperature', 'temperature', 0.2), ('respiration_rate', 'respiration_rate', 1.0)),
daily AS MATERIALIZED (
    SELECT m.patient_id, c.kind, c.component, c.floor, (m.measured_at AT TIME ZONE %(tz)s)::date AS day,
           avg((m.components ->> c.component)::float8) AS v
    FROM measurements m JOIN comp c ON c.kind = m.kind
    WHERE m.patient_id = ANY(%(pids)s) AND m.measured_at >= %(since)s AND m.components ? c.component
    GROUP BY 1, 2, 3, 4, 5
), marked AS MATERIALIZED (
    SELECT d.*, d.day = max(d.day) OVER (PARTITION BY d.patient_id, d.kind, d.component) AS is_newest FROM daily d
), usual AS MATERIALIZED (
    SELECT patient_id, kind, component, floor, count(*) FILTER (WHERE NOT is_newest) AS days,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY v) FILTER (WHERE NOT is_newest) AS median,
           max(v) FILTER (WHERE is_newest) AS newest
    FROM marked GROUP BY 1, 2, 3, 4
), scored AS (
    SELECT u.patient_id, u.kind, u.component, u.newest, u.median, u.days,
           greatest(1.4826 * percentile_cont(0.5) WITHIN GROUP (ORDER BY abs(m.v - u.median)), u.floor) AS scale
    FROM usual u JOIN marked m USING (patient_id, kind, component)
    WHERE u.days >= %(min_days)s AND NOT m.is_newest
    GROUP BY u.patient_id, u.kind, u.component, u.newest, u.median, u.days, u.floor
)
SELECT DISTINCT ON (patient_id) patient_id, kind, component, newest, median, scale, days,
       (newest - median) / scale AS z
FROM scored ORDER BY patient_id, abs((newest - median) / scale) DESC
"""


def own_history_deviation(
    conn: psycopg.Connection, *, patient_ids: Sequence[int], since: datetime, tz: str = "Europe/Copenhagen"
) -> dict[int, Deviation]:
    """The own-history deviation (:data:`OWN_HISTORY_SQL`) for all of ``patient_ids`` in one query;
    a citizen with fewer than :data:`MIN_DAYS` earlier days is absent."""
    if not patient_ids:
        return {}
    with conn.transaction():
        # The day series' row counts are unknown to the planner (estimated far too low): without
        # this it joins them in nested loops, quadratic in the citizens (46 s for 1,000; 0.6 s
        # with it). Set for this query only: a caller's transaction goes on with its own settings.
        before = conn.execute("SELECT current_setting('enable_nestloop'), current_setting('work_mem'),"
                              " current_setting('jit')").fetchone()
        conn.execute("SELECT set_config('enable_nestloop', 'off', true), set_config('work_mem', '64MB', true),"
                     " set_config('jit', 'off', true)")
        rows = conn.execute(OWN_HISTORY_SQL, {"pids": list(patient_ids), "since": since, "tz": tz,
                                              "min_days": MIN_DAYS}).fetchall()
        if before is not None:
            conn.execute("SELECT set_config('enable_nestloop', %s, true), set_config('work_mem', %s, true),"
                         " set_config('jit', %s, true)", before)
    return {int(r[0]): Deviation(kind=r[1], component=r[2], value=float(r[3]), usual=float(r[4]),
                                 scale=float(r[5]), z=float(r[7]), days=int(r[6]), source="own_history")
            for r in rows}


def adherence(
    conn: psycopg.Connection, *, patient_ids: Sequence[int], since: datetime, now: datetime | None = None
) -> dict[int, Adherence]:
    """Planned and taken measurements since ``since`` per patient, for all of ``patient_ids`` in
    one query. A patient with no plan, or nothing due yet, is absent (see :data:`NO_PLAN`)."""
    now = now or datetime.now(UTC)
    with conn.transaction():
        # The set-returning functions' default estimates (1000 days, 100 items) make the plan look
        # vast: JIT would compile for longer than the query runs.
        conn.execute("SET LOCAL jit = off")
        rows = conn.execute(ADHERENCE_SQL, {"pids": list(patient_ids), "since": since, "now": now}).fetchall()
    return {int(r[0]): Adherence(planned=int(r[1]), taken=int(r[2])) for r in rows}


def _with_readings(conn: psycopg.Connection, *, patient_ids: Sequence[int], since: datetime) -> set[int]:
    if not patient_ids:
        return set()
    rows = conn.execute(
        "SELECT DISTINCT patient_id FROM measurements WHERE patient_id = ANY(%s) AND measured_at >= %s",
        (list(patient_ids), since),
    ).fetchall()
    return {int(r[0]) for r in rows}


def population(
    conn: psycopg.Connection, *, user: User, days: int = DAYS, now: datetime | None = None,
    tz: str = "Europe/Copenhagen",
) -> PopulationView:
    """Every patient in the user's scope ranked by risk, and the alert burden of the user's teams,
    over the last ``days``."""
    now = now or datetime.now(UTC)
    since = now - timedelta(days=days)
    where, params = scope_clause(user, "p")
    params.update(since=since)
    rows = conn.execute(_PATIENTS.format(scope=where), params).fetchall()
    adh = adherence(conn, patient_ids=[r[0] for r in rows], since=since, now=now)
    own = own_history_deviation(conn, patient_ids=[r[0] for r in rows if r[10] is None], since=since, tz=tz)
    with_readings = _with_readings(conn, patient_ids=[r[0] for r in rows if r[10] is None and r[0] not in own],
                                   since=since)
    patients = []
    for r in rows:
        a = adh.get(r[0], NO_PLAN)
        open_alerts = OpenAlerts(red=r[6], yellow=r[7], blue=r[8], technical=r[9])
        dev: Deviation | None
        if r[10] is not None:
            dev = Deviation(kind=r[11], component=r[12], value=float(r[13]), usual=float(r[14]), scale=float(r[15]),
                            z=float(r[10]), days=int(r[16]), source="baseline")
        else:
            dev = own.get(r[0])
        missing = None if dev is not None else ("few_days" if r[0] in with_readings else "no_readings")
        z = abs(dev.z) if dev is not None else None
        share = a.share
        patients.append(
            PatientRisk(
                patient_id=r[0],
                name=r[1],
                ref=r[2],
                programme=r[3],
                municipality=r[4],
                department=r[5],
                open=open_alerts,
                deviation_z=round(z, 2) if z is not None else None,
                deviation_kind=dev.kind if dev is not None else None,
                adherence=round(share, 3) if share is not None else None,
                planned=a.planned,
                taken=a.taken,
                risk=risk_score(open_alerts, deviation_z=z, adherence=share),
                deviation=dev,
                deviation_missing=missing,
                has_plan=bool(r[17]),
                parts=risk_parts(open_alerts, deviation_z=z, adherence=share),
            )
        )
    patients.sort(key=lambda x: -x.risk)
    team_keys = [k for k, _ in teams_in_scope(conn, user=user)]
    burden = alert_burden(conn, team_keys=team_keys or None, since=since, now=now)
    return PopulationView(days=days, since=since, patients=patients, burden=burden)
