from __future__ import annotations

import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from edge_agent.recorder import to_measurements
from edge_agent.simulate import (
    capture_of,
    demo_cohort,
    measurements_of,
    readings_between,
    running_simulation,
    spot_checks_between,
)
from vitals.wire import Device, parse_envelope

LIVE = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
ROOT = Path(__file__).parents[2]


def _by(scenario: str):
    return next(p for p in demo_cohort(8) if p.scenario == scenario)


def test_demo_cohort_is_deterministic_and_covers_every_scenario() -> None:
    a, b = demo_cohort(12), demo_cohort(12)
    assert a == b and demo_cohort(12, seed=8) != a
    assert [p.agent_id for p in a[:3]] == ["demo-agent-001", "demo-agent-002", "demo-agent-003"]
    assert {"copd_exacerbation", "hf_weight_gain", "hypertensive_episode", "wrong_clock",
            "adherence_gap", "stable"} <= {p.scenario for p in a}
    assert {p.programme for p in a} == {"copd", "heart_failure", "hypertension"}
    addresses = [d.address for p in a for d in p.devices]
    assert len(addresses) == len(set(addresses))


def test_copd_exacerbation_drifts_spo2_down_and_pulse_up() -> None:
    p = _by("copd_exacerbation")
    before = [r for r in readings_between(p, LIVE - timedelta(days=14), LIVE, live_start=LIVE) if r.role == "oximeter"]
    after = [r for r in readings_between(p, LIVE + timedelta(days=2.5), LIVE + timedelta(days=4), live_start=LIVE)
             if r.role == "oximeter"]
    assert len(before) >= 20 and len(after) >= 2
    assert statistics.mean(r.values["spo2"] for r in after) < statistics.mean(r.values["spo2"] for r in before) - 4
    assert statistics.mean(r.values["pulse"] for r in after) > statistics.mean(r.values["pulse"] for r in before) + 12


def test_heart_failure_gains_more_than_2_kg_in_3_days() -> None:
    p = _by("hf_weight_gain")
    ws = [r for r in readings_between(p, LIVE - timedelta(days=1), LIVE + timedelta(days=3), live_start=LIVE)
          if r.role == "scale"]
    start = statistics.mean(r.values["weight"] for r in ws if r.at < LIVE)
    end = statistics.mean(r.values["weight"] for r in ws if r.at > LIVE + timedelta(days=2.5))
    assert end - start > 2.0


def test_hypertensive_episode_and_adherence_gap() -> None:
    p = _by("hypertensive_episode")
    ep = [r.values["systolic"] for r in readings_between(p, LIVE + timedelta(hours=8), LIVE + timedelta(days=2),
                                                         live_start=LIVE)]
    assert ep and statistics.mean(ep) > 170
    g = _by("adherence_gap")
    assert not list(readings_between(g, LIVE + timedelta(hours=2), LIVE + timedelta(days=3, hours=2), live_start=LIVE))
    assert list(readings_between(g, LIVE - timedelta(days=3), LIVE, live_start=LIVE))


def test_windows_cut_anywhere_give_the_same_readings() -> None:
    p = _by("stable")
    whole = list(readings_between(p, LIVE - timedelta(days=3), LIVE, live_start=LIVE))
    parts = [r for k in range(72) for r in readings_between(p, LIVE - timedelta(days=3) + timedelta(hours=k),
                                                            LIVE - timedelta(days=3) + timedelta(hours=k + 1),
                                                            live_start=LIVE)]
    assert whole == parts


def test_wrong_clock_device_is_flagged_by_the_agent_logic() -> None:
    p = _by("wrong_clock")
    bp_dev = p.device("bp")
    r = next(r for r in readings_between(p, LIVE, LIVE + timedelta(days=2), live_start=LIVE) if r.role == "bp")
    ms = to_measurements(capture_of(bp_dev, r), device=Device(address=bp_dev.address, model=bp_dev.model),
                         zone=ZoneInfo("Europe/Copenhagen"))
    assert all(not m.device_clock_trusted and "device_clock_implausible" in m.quality for m in ms)
    assert ms[0].measured_at == r.at


def test_run_simulation_publishes_valid_envelopes_through_the_real_uplink(
    tmp_path: Path, mqtt_url: str, broker, topics, collect
) -> None:
    col = collect(broker, topics.wildcard("measurements"))
    with running_simulation(broker_url=mqtt_url, topics=topics, citizens=3, seed=11, speed=3600.0,
                            history_days=2, spool_dir=tmp_path) as cohort:
        assert cohort == demo_cohort(3, seed=11)
        assert col.wait_for(lambda: {e["agent_id"] for e in col.payloads()} == {p.agent_id for p in cohort}, 20)
    assert not any(t.name == "simulation" for t in threading.enumerate())
    for topic, payload, _ in col.messages:
        env = parse_envelope(payload, topic=topic, topics=topics)
        addresses = {d.address for p in cohort if p.agent_id == env.agent_id for d in p.devices}
        assert {m.device.address for m in env.measurements} <= addresses
    assert len(col.measurement_ids()) >= 3 * 2 * 2  # at least two readings a day each over two days


def test_live_simulation_never_stamps_a_reading_in_the_future(
    tmp_path: Path, mqtt_url: str, broker, topics, collect
) -> None:
    col = collect(broker, topics.wildcard("measurements"))
    # Six hours of lead at 36,000x reach the present in under a second; after that the
    # simulation must keep pace with the wall clock instead of running ahead of it. A spot check
    # every simulated half hour puts readings in the live part whatever the time of day (the care
    # plan's schedule alone leaves six-hour windows empty).
    with running_simulation(broker_url=mqtt_url, topics=topics, citizens=2, seed=5, speed=36_000.0,
                            history_days=1, spool_dir=tmp_path, lead_hours=6.0, spot_check_every_s=1800.0):
        time.sleep(4)
    assert col.wait_for(lambda: len(col.measurement_ids()) > 0, 10)
    latest = max(
        m.measured_at
        for topic, payload, _ in col.messages
        for m in parse_envelope(payload, topic=topic, topics=topics).measurements
    )
    assert latest <= datetime.now(UTC) + timedelta(seconds=1)
    assert latest >= datetime.now(UTC) - timedelta(minutes=31), "the live part did not reach the present"


def test_spot_checks_are_the_same_however_the_window_is_cut_and_have_their_own_ids() -> None:
    p = _by("hf_weight_gain")
    whole = list(spot_checks_between(p, LIVE, LIVE + timedelta(minutes=1), every_s=0.5, live_start=LIVE))
    parts = [r for k in range(60) for r in spot_checks_between(p, LIVE + timedelta(seconds=k),
                                                               LIVE + timedelta(seconds=k + 1), every_s=0.5,
                                                               live_start=LIVE)]
    assert whole == parts and len(whole) == 120
    assert {r.role for r in whole} == {"scale", "bp", "oximeter"}
    ids = [m.id for r in whole for m in measurements_of(p, r)]
    assert len(ids) == len(set(ids)) > 120
    assert ids == [m.id for r in whole for m in measurements_of(p, r)], "generated again: the same ids"
    other = next(c for c in demo_cohort(8) if c.programme == "heart_failure" and c.scenario == "stable")
    assert not set(ids) & {m.id for r in whole for m in measurements_of(other, r)}


def test_a_measurement_id_is_a_uuid7_at_the_reading_time() -> None:
    p = _by("copd_exacerbation")
    r = next(iter(readings_between(p, LIVE - timedelta(days=1), LIVE, live_start=LIVE)))
    m = measurements_of(p, r)[0]
    assert m.id.version == 7 and m.id.variant == uuid.RFC_4122
    assert int.from_bytes(m.id.bytes[:6], "big") == int(r.at.timestamp() * 1000)


def _simulate(spool_dir: Path, mqtt_url: str, root: str, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "nearcare_cli", "agent", "simulate", "--citizens", "2", "--seed", "5",
         "--spool-dir", str(spool_dir), "--mqtt-url", mqtt_url, "--topic-root", root, "--screen-port", "-1",
         *extra],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def test_simulate_killed_and_restarted_continues_and_never_mints_a_second_id(
    tmp_path: Path, mqtt_url: str, broker, topics, collect
) -> None:
    col = collect(broker, topics.wildcard("measurements"))
    # Two days of replay at 7,200x take about 24 s: the kill lands in the middle of it.
    args = ("--history-days", "1", "--lead-hours", "48", "--speed", "7200")
    first = _simulate(tmp_path, mqtt_url, topics.root, *args)
    try:
        assert col.wait_for(lambda: len(col.measurement_ids()) >= 20, 60), "the simulator published nothing"
        time.sleep(2)
    finally:
        first.kill()
        first.wait(30)
    before = len(col.measurement_ids())
    second = _simulate(tmp_path, mqtt_url, topics.root, *args)
    try:
        assert col.wait_for(lambda: len(set(col.measurement_ids())) >= before + 10, 60), "no progress after restart"
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)
    by_reading: dict[tuple[str, str, str], set[uuid.UUID]] = {}
    for topic, payload, _ in col.messages:
        env = parse_envelope(payload, topic=topic, topics=topics)
        for m in env.measurements:
            by_reading.setdefault((env.agent_id, m.kind.value, m.measured_at.isoformat()), set()).add(m.id)
    twice = {k: v for k, v in by_reading.items() if len(v) > 1}
    assert twice == {}, f"{len(twice)} readings were sent under two ids"
    # It went on from where it stopped: the second run's readings are not all a replay.
    assert len(by_reading) > before


def test_continuous_spot_checks_go_on_at_the_wall_clock(tmp_path: Path, mqtt_url: str, broker, topics, collect) -> None:
    col = collect(broker, topics.wildcard("measurements"))
    minted: list[uuid.UUID] = []
    with running_simulation(broker_url=mqtt_url, topics=topics, citizens=2, seed=3, speed=1.0, history_days=0,
                            spool_dir=tmp_path, lead_hours=0.0, spot_check_every_s=0.25,
                            on_recorded=lambda agent, ms: minted.extend(m.id for m in ms)):
        time.sleep(3)
        started = datetime.now(UTC)
        assert col.wait_for(lambda: len(set(col.measurement_ids())) >= 30, 20)
        time.sleep(2)
    # Two citizens, four spot checks a second each, one or two measurements per spot check.
    ids = set(col.measurement_ids())
    assert ids <= set(minted)
    times = [m.measured_at for topic, payload, _ in col.messages
             for m in parse_envelope(payload, topic=topic, topics=topics).measurements]
    assert max(times) <= datetime.now(UTC)
    assert any(t >= started for t in times), "the spot checks stopped"
