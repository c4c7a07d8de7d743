"""Each citizen's readings are evaluated in measurement order, whatever order they arrive in.

Two citizens get the same readings: one evaluated in measurement order, the other stored and
evaluated in several batches, newest first (two ingest workers draining a backlog, the
catch-up job finding readings after newer ones). Their alerts and alert transitions must be the
same: the issue's "every citizen's alerts equal to an in-order replay of the same readings".
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from alert_rules.loader import default_dir
from backend.alerting import FixedClock
from backend.alerting.config import load_config
from backend.alerting.engine import AlertEngine
from backend.readings import StoredReading
from tests.backend.alerting._order import alert_rows, assert_as_in_order, breaches, copd_spo2_dip

# The engine, the writer and the order machinery on the previous packaged rules (alert_rules/
# previous): their absolute yellow/red SpO2 bands, baseline and trend rules; the shipped defaults
# have no yellow SpO2 band any more (issue 11).
PREVIOUS = default_dir() / "previous"

CPH = ZoneInfo("Europe/Copenhagen")
T0 = datetime(2026, 11, 24, 11, 0, tzinfo=CPH)
Series = Sequence[tuple[datetime, float]]


def _alerts(db: Any, pid: int, index: dict[uuid.UUID, int]) -> list[tuple[Any, ...]]:
    rows = db.execute(
        "SELECT rule_id, state, severity, last_value, breach_count, in_range_count, last_reading_id, reading_ids"
        " FROM alerts WHERE patient_id = %s ORDER BY rule_id, id", (pid,)).fetchall()
    return [(*r[:6], index.get(r[6]), [index.get(i) for i in r[7]]) for r in rows]


def _transitions(db: Any, pid: int) -> list[tuple[Any, ...]]:
    return db.execute(
        "SELECT a.rule_id, t.action, t.severity, t.value, t.from_state, t.to_state FROM alert_transitions t"
        " JOIN alerts a ON a.id = t.alert_id WHERE a.patient_id = %s ORDER BY a.rule_id, t.id", (pid,)).fetchall()


def _evaluate_both(seed: Any, pool: Any, db: Any, programme: str, kind: str, series: Series,
                   batch: int, arrival: Sequence[Sequence[int]] | None = None,
                   ) -> tuple[AlertEngine, tuple[Any, ...], tuple[Any, ...]]:
    """The series evaluated for one citizen in measurement order (one reading at a time) and
    for another in batches of ``batch``, newest batch first (or in the batches of ``arrival``,
    places in the series); both citizens' alerts and transitions, readings named by their place
    in the series."""
    clock = FixedClock(T0 + timedelta(hours=2))
    engine = AlertEngine(pool=pool, config=load_config(PREVIOUS), clock=clock)
    component = {"spo2": "spo2", "weight": "weight"}[kind]
    outcome = []
    for order in ("in order", "newest first"):
        pid = seed.patient(programme, "Aarhus")
        index: dict[uuid.UUID, int] = {}
        if order == "in order":
            for n, (at, v) in enumerate(series):
                r = seed.reading(pid, kind, at, **{component: v})
                index[r.id] = n
                engine.on_stored([r])
                clock.set(clock.now() + timedelta(seconds=1))
        else:
            batches = [list(enumerate(series))[i:i + batch] for i in range(0, len(series), batch)][::-1]
            if arrival is not None:
                batches = [[(n, series[n]) for n in b] for b in arrival]
            for b in batches:
                readings: list[StoredReading] = []
                for n, (at, v) in b:
                    r = seed.reading(pid, kind, at, **{component: v})
                    index[r.id] = n
                    readings.append(r)
                engine.on_stored(readings)
                clock.set(clock.now() + timedelta(seconds=1))
        assert db.execute("SELECT count(*), count(DISTINCT measurement_id) FROM reading_evaluations"
                          " WHERE patient_id = %s", (pid,)).fetchone() == (len(series), len(series))
        outcome.append((_alerts(db, pid, index), _transitions(db, pid)))
    assert engine.failed == 0
    return engine, outcome[0], outcome[1]


def test_the_red_reading_first_then_199_older_in_range_ones_alerts_as_in_measurement_order(
    seed: Any, pool: Any, db: Any,
) -> None:
    # The case: 199 readings at 96 %, the newest at 80 %; the batch with the 80 % reading
    # is evaluated first, then the older ones, late.
    series = [(T0 + timedelta(seconds=i), 96.0 if i < 199 else 80.0) for i in range(200)]
    engine, in_order, scrambled = _evaluate_both(seed, pool, db, "copd", "spo2", series, batch=40)
    assert engine.late == 160 and engine.late_in_arrival_order == 0
    assert scrambled == in_order
    alerts, transitions = scrambled
    assert ("copd.spo2.absolute", "open", "red", 80.0, 1, 0, 199, [199]) in alerts
    # The fall from 96 % shows only with the older readings as history: the replay found it.
    assert ("copd.spo2.trend", "opened", "yellow", 80.0, None, "open") in transitions
    assert not [t for t in transitions if t[1] == "resolved"]


def test_a_late_worse_reading_worsens_the_open_alert_once(seed: Any, pool: Any, db: Any) -> None:
    series = [(T0, 88.0), (T0 + timedelta(minutes=1), 85.0), (T0 + timedelta(minutes=2), 87.0),
              (T0 + timedelta(minutes=3), 88.0)]
    engine, in_order, scrambled = _evaluate_both(seed, pool, db, "copd", "spo2", series, batch=2)
    assert engine.late == 2
    assert scrambled[0] == in_order[0]
    # The same transitions; the alert opened on 87 % (the first batch evaluated), and the
    # worsening names the red reading, as in measurement order.
    assert [t[1:4] for t in scrambled[1]] == [("opened", "yellow", 87.0), ("worsened", "red", 85.0)]
    assert [t[1:4] for t in in_order[1]] == [("opened", "yellow", 88.0), ("worsened", "red", 85.0)]
    assert scrambled[0] == [("copd.spo2.absolute", "open", "red", 88.0, 4, 0, 3, [0, 1, 2, 3])]


def test_a_weight_trend_is_not_resolved_and_reopened_by_readings_that_arrive_late(
    seed: Any, pool: Any, db: Any,
) -> None:
    # The case: a trend alert opened by an 11:59:03 reading was resolved by an 11:58:19
    # reading that arrived late, and opened again 2 s later.
    day = T0.replace(hour=0, minute=0)
    series = [(day - timedelta(days=2) + timedelta(hours=8), 80.0), (day + timedelta(hours=8), 80.3),
              (day.replace(hour=11, minute=58, second=19), 80.4), (day.replace(hour=11, minute=58, second=40), 80.2),
              (day.replace(hour=11, minute=59, second=3), 82.6), (day.replace(hour=11, minute=59, second=5), 82.7)]
    engine, in_order, scrambled = _evaluate_both(seed, pool, db, "heart_failure", "weight", series, batch=2)
    assert engine.late == 4
    assert scrambled == in_order
    assert [t[:3] for t in scrambled[1]] == [("heart_failure.weight.trend", "opened", "yellow")]


@pytest.mark.parametrize("batch", [1, 3, 7])
def test_any_batching_of_a_mixed_series_ends_with_the_in_order_alerts(
    seed: Any, pool: Any, db: Any, batch: int,
) -> None:
    # Yellow, then red, then back in range long enough to resolve, then yellow again. Whatever
    # the batch size, the citizen's unresolved alerts end as in measurement order, and the red
    # episode, over before its readings arrived, is stored once, resolved (history, not notified).
    values = [95.0, 94.0, 88.0, 87.0, 84.0, 86.0, 93.0, 94.0, 95.0, 96.0, 88.0, 87.0]
    series = [(T0 + timedelta(minutes=10 * i), v) for i, v in enumerate(values)]
    engine, in_order, scrambled = _evaluate_both(seed, pool, db, "copd", "spo2", series, batch=batch)
    assert engine.late > 0
    # Final alert state as in measurement order (the last run: yellow, open, 88 then 87).
    assert [a for a in scrambled[0] if a[1] != "resolved"] == [a for a in in_order[0] if a[1] != "resolved"]
    assert ("copd.spo2.absolute", "open", "yellow", 87.0, 2, 0, 11, [10, 11]) in scrambled[0]
    episodes = [a for a in scrambled[0] if a[0] == "copd.spo2.absolute" and a[1] == "resolved"]
    assert len(episodes) == 1 and set(episodes[0][7]) <= {2, 3, 4, 5}, episodes
    opened = [t for t in scrambled[1] if t[0] == "copd.spo2.absolute" and t[1] == "opened"]
    assert len(opened) == 2, scrambled[1]  # the episode and the open alert: never opened twice


def test_late_breaches_of_a_run_already_resolved_extend_that_alert(seed: Any, pool: Any, db: Any) -> None:
    # Five readings at 88 % open a yellow alert; two newer ones at 95 % resolve it; then the
    # five readings between them arrive, at 87.5 % (a killed ingest worker's envelope, sent
    # again): in measurement order the run went on to the tenth breach and resolved after it.
    values = [88.0] * 5 + [87.5] * 5 + [95.0, 95.0]
    series = [(T0 + timedelta(minutes=15 * i), v) for i, v in enumerate(values)]
    engine, in_order, scrambled = _evaluate_both(seed, pool, db, "copd", "spo2", series, batch=1,
                                                 arrival=[range(5), range(10, 12), range(5, 10)])
    assert engine.late == 5
    assert scrambled[0] == in_order[0] == [("copd.spo2.absolute", "resolved", "yellow", 87.5, 10, 2, 9,
                                            list(range(10)))]
    # The same transitions; the resolution was recorded before the late readings came, with the
    # value then known.
    assert [t[:3] for t in scrambled[1]] == [t[:3] for t in in_order[1]] == [
        ("copd.spo2.absolute", "opened", "yellow"), ("copd.spo2.absolute", "resolved", "yellow")]


@pytest.mark.parametrize("batch", [5, 17, 40])
def test_a_copd_dip_and_recovery_evaluated_newest_batch_first_records_what_measurement_order_records(
    seed: Any, pool: Any, db: Any, batch: int,
) -> None:
    """A COPD SpO2 series (stable, a dip through yellow into red, recovery, a second yellow dip;
    30 hours) evaluated in measurement order, and in batches newest first (two ingest workers
    draining a backlog, the rules claiming the newest readings first). Both yellow/red episodes
    and their trend alerts are over long before the last reading, so every one of them is an
    episode that opens and resolves within a late span: each must be stored, resolved, with the
    in-order breach counts and values. Compared as ``tests/backend/alerting/_order.py`` says
    (alert rows exactly; transitions already written are a log and stay as written)."""
    values = copd_spo2_dip(random.Random(20261130))
    series = [(T0 - timedelta(minutes=15 * (len(values) - i)), v) for i, v in enumerate(values)]
    clock = FixedClock(T0 + timedelta(hours=2))
    engine = AlertEngine(pool=pool, config=load_config(PREVIOUS), clock=clock)
    got = []
    for order in ("in order", "newest first"):
        pid = seed.patient("copd", "Aarhus")
        index: dict[uuid.UUID, int] = {}
        size = 1 if order == "in order" else batch
        batches = [list(enumerate(series))[i:i + size] for i in range(0, len(series), size)]
        for b in batches if order == "in order" else reversed(batches):
            readings = []
            for n, (at, v) in b:
                r = seed.reading(pid, "spo2", at, spo2=v)
                index[r.id] = n
                readings.append(r)
            engine.on_stored(readings)
            clock.set(clock.now() + timedelta(seconds=1))
        got.append((alert_rows(db, pid, index), breaches(db, pid, index)))
    assert engine.failed == 0 and engine.late > 0 and engine.late_in_arrival_order == 0
    (in_order, fired), (scrambled, _) = got
    assert_as_in_order(scrambled, in_order, fired)
    # Both episodes of the absolute limit, as in measurement order: red (the dip), then yellow.
    absolute = [r[2:8] for r in scrambled if r[0] == "copd.spo2.absolute"]
    assert [(state, severity) for _, state, severity, *_ in absolute] == [("resolved", "red"), ("resolved", "yellow")]
    assert not [t for r in scrambled for t in r[8] if t[0] == "opened" and t[3] is not None]  # nothing reopened
