"""One code path: the same readings through the real broker, ingest and rules role, and through
``nearcare rules replay`` (alert_rules.stream), give the same alert transitions.

The readings are a small slice of the labelled cohort (``alert_rules.cohort``): COPD and
heart-failure citizens with device artefacts and deteriorations. Each citizen-moment is published
as the agent would (one envelope), with the rules' clock set to the reading's time, which is the
"now" replay uses."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from alert_rules.cohort import generate
from alert_rules.loader import ROUTING_FILE, default_dir, load_model, load_ruleset
from alert_rules.routing import RoutingConfig
from alert_rules.stream import Citizen, parse_readings, replay_stream
from backend.alerting import FixedClock
from backend.alerting.jobs import recompute_baselines
from backend.embedded import wait_for
from tests.scenarios.conftest import Platform
from vitals.kinds import spec
from vitals.wire import Device, Envelope, Measurement, new_measurement_id

CPH = ZoneInfo("Europe/Copenhagen")
SEED = 11
CITIZENS = 4
DAYS = 48


def _publish(plat: Any, profile: Any, rows: list[dict[str, Any]]) -> None:
    """One envelope of readings taken at the same moment; wait until the rules evaluated them."""
    at = datetime.fromisoformat(rows[0]["at"])
    ms = []
    for r in rows:
        role = "oximeter" if r["kind"] in ("spo2",) or (r["kind"] == "pulse" and profile.programme == "copd") else (
            "scale" if r["kind"] == "weight" else "bp")
        device = profile.device(role)
        ms.append(Measurement(id=new_measurement_id(at.timestamp()), kind=r["kind"], values=r["values"],
                              unit=spec(r["kind"]).unit, measured_at=at, device_clock_trusted=True, received_at=at,
                              device=Device(address=device.address, model=device.model),
                              quality=tuple(r["quality"])))
    plat.clock.set(at)
    env = Envelope(agent_id=profile.agent_id, sent_at=at, measurements=tuple(ms))
    info = plat.client.publish(plat.settings.topics.measurements(profile.agent_id), env.to_json(), qos=1)
    info.wait_for_publish(30)
    ids = [str(m.id) for m in ms]
    with plat.conn() as c:
        sql = "SELECT count(*) FROM reading_evaluations WHERE measurement_id = ANY(%s::uuid[])"
        wait_for(lambda: c.execute(sql, (ids,)).fetchone()[0] == len(ids), what=f"{len(ids)} readings evaluated",
                 timeout=60)


@pytest.mark.parametrize("rules", ["packaged", "previous"])
def test_replay_gives_the_engines_alerts(settings: Any, citizen: Any, rules: str) -> None:
    """Both the packaged rules (the ``personal`` kind: a 31-day history window through the
    engine's history cache) and alert_rules/previous (absolute, baseline and trend rules)."""
    rules_dir = default_dir() if rules == "packaged" else default_dir() / "previous"
    cohort = generate(seed=SEED, citizens=CITIZENS, days=DAYS)
    plat = Platform(settings.model_copy(update={"alert_rules_dir": str(rules_dir)}),
                    FixedClock(datetime.fromisoformat(cohort.readings[0]["at"])))
    try:
        _compare(plat, citizen, cohort, rules_dir)
    finally:
        plat.close()


def _compare(plat: Any, citizen: Any, cohort: Any, rules_dir: Path) -> None:
    profiles: dict[str, Any] = {}
    pids: dict[int, str] = {}
    for ref, info in cohort.patients.items():
        p = citizen("copd_exacerbation" if info["programme"] == "copd" else "hf_weight_gain")
        profiles[ref] = p
        pids[plat.enrol(p)] = ref
    # through the real broker, ingest and rules: readings of one citizen at one moment together
    moments: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in cohort.readings:
        moments[(r["at"], r["patient"])].append(r)
    day = None
    for (at, ref), rows in sorted(moments.items()):
        local = datetime.fromisoformat(at).astimezone(CPH).date()
        if local != day:
            # the nightly baseline job, run where replay recomputes: at the day's first reading
            day = local
            with plat.conn() as c:
                recompute_baselines(c, now=datetime.fromisoformat(at), config=plat.parts.config)
        _publish(plat, profiles[ref], rows)
    with plat.conn() as c:
        stored = c.execute(
            "SELECT a.patient_id, a.rule_id, t.severity, t.action, t.at, t.value FROM alert_transitions t"
            " JOIN alerts a ON a.id = t.alert_id WHERE a.patient_id = ANY(%s)"
            " AND t.action IN ('opened', 'worsened', 'resolved') ORDER BY t.id", (list(pids),)).fetchall()
    engine = sorted((pids[int(pid)], rule, sev, action, at, value) for pid, rule, sev, action, at, value in stored)
    # through replay, with the packaged rules and routing (as the platform loaded them)
    rules = load_ruleset(rules_dir)
    routing = load_model(rules_dir / ROUTING_FILE, RoutingConfig)
    who = {ref: Citizen(programme=info["programme"], municipality=profiles[ref].municipality)
           for ref, info in cohort.patients.items()}
    replayed = sorted((t.patient, t.rule, t.severity, t.event, t.at, t.value) for t in replay_stream(
        parse_readings(json.dumps(r) for r in cohort.readings), rules, patients=who, routing=routing))
    assert any(e[3] == "opened" for e in replayed), "the slice raises no alert: pick another seed"
    assert any(r["quality"] for r in cohort.readings), "the slice has no device artefact"
    if rules_dir.name != "previous":
        assert any(e[1].endswith(".personal") and e[3] == "opened" for e in replayed), replayed
    assert engine == replayed
