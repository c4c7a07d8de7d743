"""Demo data for alerting: the region's teams and each demo citizen's monitoring plan."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from backend.alerting.config import AlertingConfig
from backend.registry.demo import seed_teams
from vitals.wire import Topics

log = logging.getLogger(__name__)


def seed_alerting(conn: Any, *, config: AlertingConfig, topics: Topics, now: datetime | None = None) -> list[str]:
    """Create the teams routing.yaml names (when missing) and give every active patient without a
    monitoring plan their programme's default plan. Idempotent; returns what it did."""
    from backend.alerting.plans import set_monitoring_plan

    cfg = config
    done = [f"team {key}" for key in seed_teams(conn)]
    at = now or datetime.now(UTC)
    rows = conn.execute(
        "SELECT p.id, p.programme FROM patients p LEFT JOIN monitoring_plans mp ON mp.patient_id = p.id"
        " WHERE p.active AND mp.patient_id IS NULL").fetchall()
    for pid, programme in rows:
        plan = [{"kind": d.kind.value, "times": [t.strftime("%H:%M") for t in d.times], "weekdays": list(d.weekdays),
                 "grace_minutes": d.grace_minutes} for d in cfg.ruleset.default_plan(programme)]
        if plan:
            set_monitoring_plan(conn, patient_id=pid, plan=plan, by="demo", topics=topics, config=cfg, now=at)
            done.append(f"plan for patient {pid}")
    log.info("alerting demo data: %d teams, %d plans", sum(1 for d in done if d.startswith("team")),
             sum(1 for d in done if d.startswith("plan")))
    return done
