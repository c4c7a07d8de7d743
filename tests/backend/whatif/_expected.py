"""The figures the what-if must show, computed here straight from the replay (alert_rules.stream)
over the stored readings, independently of backend.whatif."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg

from alert_rules.loader import ROUTING_FILE, default_dir, load_model, load_ruleset
from alert_rules.routing import RoutingConfig
from alert_rules.stream import Citizen, StreamReading, replay_stream
from vitals.kinds import MeasurementKind


def expected(conn: psycopg.Connection, *, patient_id: int, now: datetime,
             overrides: dict[str, dict[str, float]]) -> dict[str, int]:
    row = conn.execute("SELECT programme, municipality FROM patients WHERE id = %s", (patient_id,)).fetchone()
    assert row is not None
    programme, municipality = row
    rows = conn.execute(
        "SELECT kind, components, measured_at, quality FROM measurements WHERE patient_id = %s"
        " AND measured_at >= %s AND measured_at <= %s ORDER BY measured_at, id",
        (patient_id, now - timedelta(days=90), now)).fetchall()
    readings = [StreamReading("x", programme, MeasurementKind(k), {c: float(v) for c, v in comps.items()}, at,
                              tuple(q or ()), n) for n, (k, comps, at, q) in enumerate(rows, start=1)]
    out = replay_stream(readings, load_ruleset(), routing=load_model(default_dir() / ROUTING_FILE, RoutingConfig),
                        patients={"x": Citizen.model_validate({"programme": programme, "municipality": municipality,
                                                               "overrides": overrides})})
    cph = ZoneInfo("Europe/Copenhagen")
    opened = [t for t in out if t.event == "opened" and t.severity in ("red", "yellow")]
    return {"alerts": len(opened), "alert_days": len({t.at.astimezone(cph).date() for t in opened}),
            "red": sum(1 for t in out if t.severity == "red" and t.event in ("opened", "worsened"))}
