"""Population figures: alert burden per team and time to kvittering (follow effects, not activity)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg

from backend.alerting.models import TeamBurden


def _quantile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(sorted(values), n=100, method="inclusive")[int(q * 100) - 1]


def alert_burden(conn: psycopg.Connection[Any], *, team_keys: Sequence[str] | None = None, since: datetime,
                 now: datetime | None = None) -> list[TeamBurden]:
    """Per team that owned alerts opened since ``since``: alerts per patient-week, minutes to
    kvittering (median, p90), and the share that escalated. Alerts count for the team that first
    owned them."""
    end = now or datetime.now(UTC)
    weeks = max((end - since).total_seconds() / (7 * 86400), 1e-9)
    rows = conn.execute(
        "WITH first AS (SELECT DISTINCT ON (t.alert_id) t.alert_id, t.team_key FROM alert_transitions t"
        "   JOIN alerts a ON a.id = t.alert_id WHERE a.opened_at >= %s AND a.opened_at <= %s"
        "   ORDER BY t.alert_id, t.id)"
        " SELECT f.team_key, coalesce(tm.name, f.team_key), a.patient_id, a.opened_at, a.acknowledged_at,"
        "   EXISTS (SELECT 1 FROM alert_transitions e WHERE e.alert_id = a.id AND e.action = 'escalated')"
        " FROM first f JOIN alerts a ON a.id = f.alert_id LEFT JOIN teams tm ON tm.key = f.team_key"
        " WHERE (%s::text[] IS NULL OR f.team_key = ANY(%s))",
        (since, end, list(team_keys) if team_keys is not None else None, list(team_keys) if team_keys else None),
    ).fetchall()
    by_team: dict[str, list[tuple[Any, ...]]] = {}
    for r in rows:
        by_team.setdefault(r[0], []).append(r)
    out = []
    for key, rs in sorted(by_team.items()):
        patients = {r[2] for r in rs}
        acks = [(r[4] - r[3]).total_seconds() / 60 for r in rs if r[4] is not None]
        escalated = sum(1 for r in rs if r[5])
        pw = len(patients) * weeks
        out.append(TeamBurden(
            team_key=key, team_name=rs[0][1], alerts=len(rs), patients=len(patients), patient_weeks=round(pw, 3),
            alerts_per_patient_week=round(len(rs) / pw, 3), acknowledged=len(acks),
            ack_median_minutes=statistics.median(acks) if acks else None, ack_p90_minutes=_quantile(acks, 0.9),
            escalated=escalated, share_escalated=round(escalated / len(rs), 3),
        ))
    return out
