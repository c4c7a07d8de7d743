"""``alert_rules.drive.window``: the history a reading's evaluation sees, in the engine and the replay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alert_rules.drive import window
from alert_rules.evaluate import Observation
from alert_rules.loader import load_ruleset
from alert_rules.stream import StreamReading, replay_stream
from vitals.kinds import MeasurementKind as K

T = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def test_window_holds_readings_taken_at_the_same_instant_but_not_the_reading_itself() -> None:
    old = Observation(K.SPO2, {"spo2": 93}, T - timedelta(hours=30), id="old")
    day = Observation(K.SPO2, {"spo2": 92}, T - timedelta(hours=20), id="day")
    pulse = Observation(K.PULSE, {"pulse": 80}, T, id="pulse")
    spo2 = Observation(K.SPO2, {"spo2": 91}, T, id="spo2")
    later = Observation(K.PULSE, {"pulse": 99}, T + timedelta(minutes=1), id="later")
    obs = [old, day, pulse, spo2, later]
    times = [o.measured_at for o in obs]
    assert list(window(times, obs, T, 24, reading="spo2")) == [day, pulse]
    assert list(window(times, obs, T, 24, reading="pulse")) == [day, spo2]
    assert list(window(times, obs, T, 48, reading="spo2")) == [old, day, pulse]
    assert list(window(times, obs, T - timedelta(hours=1), 24, reading="x")) == [day]


def test_replay_pairs_the_oximeters_pulse_and_spo2_of_one_measurement() -> None:
    """A COPD citizen, stable for four weeks, then one morning pulse up and SpO2 down together,
    pulse and SpO2 sharing their instant as one oximeter measurement. Yesterday's values were
    calm: the composite personal rule sees today's pair (it opens that morning, whichever of the
    two readings comes first in the file)."""
    rs = load_ruleset()
    readings = []
    line = 0
    for d in range(40, 0, -1):
        at = T - timedelta(days=d, minutes=(d * 7) % 50)
        line += 1
        readings.append(StreamReading("P1", "copd", K.PULSE, {"pulse": 78.0 + (d % 5)}, at, (), line))
        line += 1
        readings.append(StreamReading("P1", "copd", K.SPO2, {"spo2": 93.0 + (d % 3) - 1}, at, (), line))
    for kind, values in ((K.SPO2, {"spo2": 87.0}), (K.PULSE, {"pulse": 104.0})):
        line += 1
        readings.append(StreamReading("P1", "copd", kind, values, T, (), line))
    opened = [t for t in replay_stream(readings, rs) if t.event == "opened"]
    assert [(t.rule, t.at) for t in opened] == [("copd.oximetry.personal", T)]
