"""Demo data for alerting: the region's teams and each demo citizen's monitoring plan."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from backend.alerting.config import AlertingConfig, load_config

log = logging.getLogger(__name__)

DEMO_TEAMS = (
    ("aarhus-sygepleje", "Aarhus Kommune sygepleje", "municipal", "Aarhus", None),
    ("randers-akutteam", "Randers Kommune akutteam", "municipal", "Randers", None),
    ("silkeborg-sygepleje", "Silkeborg Kommune sygepleje", "municipal", "Silkeborg", None),
    ("auh-lungeteam", "AUH udgående lungeteam", "hospital", None, "AUH Lungesygdomme"),
    ("auh-hjerteteam", "AUH Hjertesygdomme udgående team", "hospital", None, "AUH Hjertesygdomme"),
    ("auh-akut", "AUH Akutafdelingen", "hospital", None, "AUH Akutafdeling"),
)


def seed_alerting(conn: Any, *, config: AlertingConfig | None = None, now: datetime | None = None) -> list[str]:
    """Create the teams routing.yaml names (when missing) and give every active patient without a
    monitoring plan their programme's default plan. Idempotent; returns what it did."""
    from backend import registry
    from backend.alerting.plans import set_monitoring_plan

    cfg = config or load_config()
    done: list[str] = []
    for key, name, sector, municipality, department in DEMO_TEAMS:
        try:
            registry.get_team_by_key(conn, key=key)
        except registry.RegistryNotFound:
            registry.create_team(conn, key=key, name=name, sector=sector, municipality=municipality,
                                 department=department)
            done.append(f"team {key}")
    at = now or datetime.now(UTC)
    rows = conn.execute(
        "SELECT p.id, p.programme FROM patients p LEFT JOIN monitoring_plans mp ON mp.patient_id = p.id"
        " WHERE p.active AND mp.patient_id IS NULL").fetchall()
    for pid, programme in rows:
        plan = [{"kind": d.kind.value, "times": [t.strftime("%H:%M") for t in d.times], "weekdays": list(d.weekdays),
                 "grace_minutes": d.grace_minutes} for d in cfg.ruleset.default_plan(programme)]
        if plan:
            set_monitoring_plan(conn, patient_id=pid, plan=plan, by="demo", now=at)
            done.append(f"plan for patient {pid}")
    log.info("alerting demo data: %d teams, %d plans", sum(1 for d in done if d.startswith("team")),
             sum(1 for d in done if d.startswith("plan")))
    return done
