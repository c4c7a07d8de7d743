"""Reads of clinical data shared by the web pages and the JSON API: the scoped patient list,
trends (raw or daily), readings with their detail, and rejected readings.

Callers open the patient through :func:`backend.accounts.access.open_patient` first (scope
check + audit); these functions only read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg

from backend.accounts.model import User
from backend.accounts.scope import scope_clause
from vitals.kinds import MeasurementKind, spec

RANGES: dict[str, int] = {"7d": 7, "30d": 30, "1y": 365}
# Up to this many days a trend plots every reading; longer ranges plot daily mean/min/max.
RAW_MAX_DAYS = 7
TREND_KINDS = (MeasurementKind.SPO2, MeasurementKind.PULSE, MeasurementKind.WEIGHT, MeasurementKind.BLOOD_PRESSURE)


@dataclass(frozen=True, slots=True)
class PatientSummary:
    id: int
    external_ref: str
    name: str
    programme: str
    municipality: str
    department: str | None
    last_measured_at: datetime | None


def list_patients(
    conn: psycopg.Connection, *, user: User, limit: int = 500, offset: int = 0, search: str | None = None
) -> list[PatientSummary]:
    where, params = scope_clause(user, "p")
    if search:
        where += " AND (p.name ILIKE %(q)s OR p.external_ref ILIKE %(q)s)"
        params["q"] = "%" + search.replace("%", r"\%").replace("_", r"\_") + "%"
    params.update(limit=max(1, min(limit, 5000)), offset=max(0, offset))
    rows = conn.execute(
        f"""SELECT p.id, p.external_ref, p.name, p.programme, p.municipality, p.department,
                   (SELECT max(m.measured_at) FROM measurements m WHERE m.patient_id = p.id)
            FROM patients p WHERE p.active AND {where}
            ORDER BY p.name, p.id LIMIT %(limit)s OFFSET %(offset)s""",
        params,
    ).fetchall()
    return [PatientSummary(*r) for r in rows]


@dataclass(frozen=True, slots=True)
class Series:
    component: str
    label: str
    unit: str
    t: list[float] = field(default_factory=list)
    """Seconds since the epoch (uPlot's x axis)."""
    value: list[float | None] = field(default_factory=list)
    low: list[float | None] = field(default_factory=list)
    high: list[float | None] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Trend:
    kind: str
    label: str
    range: str
    resolution: str  # "raw" or "daily"
    start: datetime
    end: datetime
    series: tuple[Series, ...]


def _components(kind: MeasurementKind) -> tuple[str, ...]:
    if kind is MeasurementKind.BLOOD_PRESSURE:
        return ("systolic", "diastolic")
    return (spec(kind).primary.name,)


def trend(
    conn: psycopg.Connection,
    *,
    patient_id: int,
    kind: MeasurementKind | str,
    range_key: str = "7d",
    now: datetime | None = None,
    tz: str = "Europe/Copenhagen",
    lang: str = "da",
) -> Trend:
    kind = MeasurementKind(kind)
    days = RANGES[range_key]
    end = now or datetime.now(UTC)
    start = end - timedelta(days=days)
    ks = spec(kind)
    comps = _components(kind)
    labels = {c.name: (c.label_da if lang == "da" else c.label_en) for c in ks.components}
    label = ks.label_da if lang == "da" else ks.label_en
    if days <= RAW_MAX_DAYS:
        rows = conn.execute(
            """SELECT extract(epoch FROM measured_at)::float8, components FROM measurements
               WHERE patient_id = %s AND kind = %s AND measured_at >= %s AND measured_at <= %s
               ORDER BY measured_at""",
            (patient_id, kind.value, start, end),
        ).fetchall()
        out = []
        for c in comps:
            s = Series(c, labels[c], ks.component(c).display_unit)
            for t, components in rows:
                v = components.get(c)
                s.t.append(t)
                s.value.append(float(v) if isinstance(v, int | float) else None)
            out.append(s)
        return Trend(kind.value, label, range_key, "raw", start, end, tuple(out))
    return Trend(
        kind.value,
        label,
        range_key,
        "daily",
        start,
        end,
        tuple(
            _daily(
                conn,
                patient_id=patient_id,
                kind=kind,
                component=c,
                label=labels[c],
                unit=ks.component(c).display_unit,
                start=start,
                end=end,
                tz=tz,
            )
            for c in comps
        ),
    )


_DAILY = """
WITH rolled AS (
    SELECT day, n, mean, min, max FROM measurement_daily
    WHERE patient_id = %(pid)s AND kind = %(kind)s AND component = %(comp)s
      AND day >= %(first)s AND day <= %(last)s
), tail AS (
    -- Days the rollup has not reached yet (it runs on a schedule): computed from the readings.
    SELECT (m.measured_at AT TIME ZONE %(tz)s)::date AS day, count(*)::int AS n,
           avg((m.components->>%(comp)s)::float8) AS mean, min((m.components->>%(comp)s)::float8) AS min,
           max((m.components->>%(comp)s)::float8) AS max
    FROM measurements m
    WHERE m.patient_id = %(pid)s AND m.kind = %(kind)s AND m.measured_at <= %(end)s
      AND m.measured_at >= greatest(%(start)s,
            ((coalesce((SELECT max(day) FROM rolled), %(first)s - 1) + 1)::timestamp AT TIME ZONE %(tz)s))
      AND jsonb_typeof(m.components->%(comp)s) = 'number'
    GROUP BY 1
)
SELECT day, mean, min, max FROM rolled
UNION ALL
SELECT day, mean, min, max FROM tail WHERE day > coalesce((SELECT max(day) FROM rolled), %(first)s - 1)
ORDER BY day
"""


def _daily(
    conn: psycopg.Connection,
    *,
    patient_id: int,
    kind: MeasurementKind,
    component: str,
    label: str,
    unit: str,
    start: datetime,
    end: datetime,
    tz: str,
) -> Series:
    first: date = start.date()
    last: date = end.date()
    rows = conn.execute(
        _DAILY,
        {
            "pid": patient_id,
            "kind": kind.value,
            "comp": component,
            "first": first,
            "last": last,
            "tz": tz,
            "start": start,
            "end": end,
        },
    ).fetchall()
    s = Series(component, label, unit)
    for day, mean, lo, hi in rows:
        # Plot a day at its local noon, so a bar never straddles two days.
        s.t.append(datetime(day.year, day.month, day.day, 12, tzinfo=UTC).timestamp())
        s.value.append(mean)
        s.low.append(lo)
        s.high.append(hi)
    return s


@dataclass(frozen=True, slots=True)
class Reading:
    id: UUID
    kind: str
    components: dict[str, Any]
    unit: str
    measured_at: datetime
    agent_received_at: datetime
    stored_at: datetime
    device_clock_trusted: bool
    quality: list[str]
    flags: list[str]
    agent_id: str
    device_id: int | None
    device_model: str | None
    device_address: str | None
    user_index: int | None


_READING_COLS = """m.id, m.kind, m.components, m.unit, m.measured_at, m.agent_received_at, m.stored_at,
       m.device_clock_trusted, m.quality, m.flags, m.agent_id, m.device_id, d.model, d.address, m.user_index"""


def readings(
    conn: psycopg.Connection,
    *,
    patient_id: int,
    since: datetime | None = None,
    kind: str | None = None,
    limit: int = 200,
) -> list[Reading]:
    rows = conn.execute(
        f"""SELECT {_READING_COLS} FROM measurements m LEFT JOIN devices d ON d.id = m.device_id
            WHERE m.patient_id = %(pid)s AND (%(since)s::timestamptz IS NULL OR m.measured_at >= %(since)s)
              AND (%(kind)s::text IS NULL OR m.kind = %(kind)s)
            ORDER BY m.measured_at DESC LIMIT %(limit)s""",
        {"pid": patient_id, "since": since, "kind": kind, "limit": max(1, min(limit, 5000))},
    ).fetchall()
    return [Reading(*r) for r in rows]


@dataclass(frozen=True, slots=True)
class ReadingDetail:
    reading: Reading
    raw_hex: str | None
    raw_characteristic: str | None
    device_manufacturer: str | None
    device_serial: str | None
    device_firmware: str | None

    @property
    def clock_offset_s(self) -> float:
        """Receipt time minus device time: how far the device clock (or the delay) was off."""
        return (self.reading.agent_received_at - self.reading.measured_at).total_seconds()


def reading_detail(conn: psycopg.Connection, *, patient_id: int, reading_id: UUID) -> ReadingDetail | None:
    row = conn.execute(
        f"""SELECT {_READING_COLS}, encode(m.raw, 'hex'), m.raw_characteristic, d.manufacturer, d.serial,
                   d.firmware
            FROM measurements m LEFT JOIN devices d ON d.id = m.device_id
            WHERE m.patient_id = %s AND m.id = %s""",
        (patient_id, reading_id),
    ).fetchone()
    if row is None:
        return None
    return ReadingDetail(Reading(*row[:15]), *row[15:])


@dataclass(frozen=True, slots=True)
class Rejected:
    id: UUID
    measured_at: datetime | None
    kind: str
    components: dict[str, Any]
    unit: str | None
    reason: str
    agent_id: str
    device_address: str | None
    stored_at: datetime
    reviewed_by: str | None


def rejected(conn: psycopg.Connection, *, patient_id: int, limit: int = 100) -> list[Rejected]:
    rows = conn.execute(
        """SELECT id, measured_at, kind, components, unit, reason, agent_id, device_address, stored_at, reviewed_by
           FROM rejected_readings WHERE patient_id = %s ORDER BY stored_at DESC LIMIT %s""",
        (patient_id, max(1, min(limit, 1000))),
    ).fetchall()
    return [Rejected(*r) for r in rows]
