"""What-if before a threshold change: what the proposed settings would have raised over a
citizen's (or a programme's) last 90 days of stored readings, beside what the settings in force
raised. Both sides go through the same replay (:func:`alert_rules.stream.replay_stream`): the
evaluator, the alert state machine and the inhibition stage production runs.

Pure core, thin edge: :func:`what_if` reads the readings, the citizens and their overrides, and
hands them to the replay twice; it writes nothing. The second replay runs only the changed rules
when no rule looks at other rules' alerts: each (citizen, rule) alert is its own state machine
and the inhibition stage only mutes, so the other rules raise on both sides what the first
replay raised (a ``baseline`` rule's stable days depend on every rule's alerts: then the whole
rule set runs again).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from alert_rules.errors import ThresholdError
from alert_rules.loader import Ruleset
from alert_rules.model import BaselineRule
from alert_rules.stream import Citizen, StreamReading, Transition, replay_stream
from backend.alerting.config import AlertingConfig
from backend.alerting.errors import InvalidThreshold
from backend.alerting.thresholds import ThresholdCache
from vitals.kinds import MeasurementKind

WINDOW_DAYS = 90
CLINICAL = ("red", "yellow")

Overrides = dict[str, dict[str, float]]


@dataclass(frozen=True, slots=True)
class Outcome:
    alerts: int
    """Clinical (red or yellow) alerts opened."""
    alert_days: int
    """Citizen-days on which a clinical alert opened."""
    red: int
    """Alerts that opened red or worsened to red."""

    def as_json(self) -> dict[str, int]:
        return {"alerts": self.alerts, "alert_days": self.alert_days, "red": self.red}


@dataclass(frozen=True, slots=True)
class WhatIf:
    since: datetime
    until: datetime
    citizens: int
    readings: int
    current: Outcome
    proposed: Outcome

    def as_json(self) -> dict[str, Any]:
        return {"since": self.since.isoformat(), "until": self.until.isoformat(), "days": WINDOW_DAYS,
                "citizens": self.citizens, "readings": self.readings, "current": self.current.as_json(),
                "proposed": self.proposed.as_json()}


def outcome(transitions: Sequence[Transition], *, tz: str = "Europe/Copenhagen") -> Outcome:
    zone = ZoneInfo(tz)
    opened = [t for t in transitions if t.event == "opened" and t.severity in CLINICAL]
    return Outcome(
        alerts=len(opened),
        alert_days=len({(t.patient, t.at.astimezone(zone).date()) for t in opened}),
        red=sum(1 for t in transitions if t.severity == "red" and t.event in ("opened", "worsened")),
    )


def changes_from(items: Sequence[tuple[str, str, float]], config: AlertingConfig) -> Overrides:
    """(rule, field, value) triples as overrides, each checked against its rule."""
    out: Overrides = {}
    for rule_id, field, value in items:
        rule = config.ruleset.by_id.get(rule_id)
        if rule is None:
            raise InvalidThreshold(f"unknown rule {rule_id!r}")
        out.setdefault(rule_id, {})[field] = float(value)
    for rule_id, fields in out.items():
        try:
            config.ruleset.by_id[rule_id].with_thresholds(fields)
        except ThresholdError as exc:
            raise InvalidThreshold(str(exc)) from None
    return out


def what_if(conn: psycopg.Connection[Any], *, config: AlertingConfig, changes: Overrides, now: datetime,
            patient_id: int | None = None, programme: str | None = None) -> WhatIf:
    """Current against proposed settings over the last 90 days. ``patient_id``: the citizen's own
    thresholds change (``changes`` are personal overrides). ``programme``: the programme's
    defaults change (a citizen's own override of the same field still wins)."""
    if (patient_id is None) == (programme is None):
        raise ValueError("give exactly one of patient_id and programme")
    if patient_id is not None:
        rows = conn.execute("SELECT id, programme, municipality, department FROM patients WHERE id = %s",
                            (patient_id,)).fetchall()
    else:
        rows = conn.execute("SELECT id, programme, municipality, department FROM patients WHERE programme = %s"
                            " AND active ORDER BY id", (programme,)).fetchall()
    patients = {int(r[0]): (str(r[1]), str(r[2] or ""), r[3]) for r in rows}
    pids = sorted(patients)
    cache = ThresholdCache(config)
    cache.refresh(conn)
    own_rows = cache.query_overrides(conn, pids).fetchall()
    current = cache.overrides_from_rows({pid: p[0] for pid, p in patients.items()}, own_rows)
    own: dict[int, set[tuple[str, str]]] = {}
    for pid, rid, field, _value in own_rows:
        own.setdefault(int(pid), set()).add((rid, field))
    proposed: dict[int, Overrides] = {}
    for pid in pids:
        merged = {rid: dict(f) for rid, f in current.get(pid, {}).items()}
        for rid, fields in changes.items():
            for field, value in fields.items():
                if patient_id is not None or (rid, field) not in own.get(pid, set()):
                    merged.setdefault(rid, {})[field] = value
        proposed[pid] = merged
    since = now - timedelta(days=WINDOW_DAYS)
    readings: list[StreamReading] = []
    if pids:
        for n, (pid, kind, comps, at, quality) in enumerate(conn.execute(
            "SELECT patient_id, kind, components, measured_at, quality FROM measurements"
            " WHERE patient_id = ANY(%s) AND measured_at >= %s AND measured_at <= %s ORDER BY measured_at, id",
            (pids, since, now),
        ), start=1):
            values = {k: (None if v is None else float(v)) for k, v in (comps or {}).items()}
            readings.append(StreamReading(str(pid), patients[int(pid)][0], MeasurementKind(kind), values, at,
                                          tuple(quality or ()), n))

    def run(overrides: Mapping[int, Overrides], ruleset: Ruleset) -> list[Transition]:
        who = {str(pid): Citizen.model_validate({"programme": p[0], "municipality": p[1], "department": p[2],
                                                 "overrides": overrides.get(pid, {})})
               for pid, p in patients.items()}
        try:
            return replay_stream(readings, ruleset, patients=who, routing=config.routing, source="measurements")
        except ThresholdError as exc:
            raise InvalidThreshold(str(exc)) from None

    before = run(current, config.ruleset)
    if any(isinstance(r, BaselineRule) for r in config.ruleset.by_id.values()):
        after = run(proposed, config.ruleset)
    else:
        after = [t for t in before if t.rule not in changes] + run(proposed, only(config.ruleset, set(changes)))
    return WhatIf(since=since, until=now, citizens=len(pids), readings=len(readings), current=outcome(before),
                  proposed=outcome(after))


def only(ruleset: Ruleset, rule_ids: set[str]) -> Ruleset:
    """The rule set with just these rules (their files' other rules left out)."""
    files = {name: f.model_copy(update={"rules": tuple(r for r in f.rules if r.id in rule_ids)})
             for name, f in ruleset.files.items() if any(r.id in rule_ids for r in f.rules)}
    return Ruleset(files=files, by_id={k: v for k, v in ruleset.by_id.items() if k in rule_ids},
                   rule_file={k: v for k, v in ruleset.rule_file.items() if k in rule_ids})
