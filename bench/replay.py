"""``nearcare rules replay`` speed: 100,000 readings of 200 citizens through the production path.

Generates the labelled cohort (``alert_rules.cohort``, 200 citizens, enough days for the
readings asked for), writes it as JSON Lines, then times in the same run:

- ``bare evaluator``: the pure evaluator alone over the same readings, each with the history
  window the engine would hand it (the floor: no validation, no state machine);
- ``parse``: reading and validating the JSON Lines (``alert_rules.stream.parse_readings``);
- ``replay``: :func:`alert_rules.stream.replay_stream` (history windows, evaluator, transitions,
  inhibition, baselines) with the packaged rules and routing;
- ``command``: the whole ``nearcare rules replay FILE --format jsonl`` as a subprocess (with the
  scheduler's clock: missed-measurement alerts from the programme's plan).

    .venv/bin/python bench/replay.py [--readings 100000] [--citizens 200] [--seed 1] [--rules DIR]

Wall and CPU seconds both (the machine is shared: CPU time says what the replay costs, wall
time what a user waits). Last line: ``RESULT replay_s=… replay_cpu_s=… parse_s=…
bare_evaluator_s=… command_s=… command_cpu_s=… readings=… citizens=…``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alert_rules.cohort import generate
from alert_rules.drive import rules_for_kind, window
from alert_rules.evaluate import Context, Observation, evaluate, history_kinds
from alert_rules.loader import ROUTING_FILE, default_dir, load_model, load_ruleset
from alert_rules.routing import RoutingConfig
from alert_rules.stream import StreamReading, parse_readings, replay_stream


def bare_evaluator(readings: list[StreamReading], rules_dir: Path | None) -> tuple[float, float]:
    rs = load_ruleset(rules_dir)
    t0 = time.perf_counter()
    c0 = time.process_time()
    state: dict[str, tuple[list, list, str]] = {}
    by_kind: dict[tuple[str, str], tuple[list, float]] = {}
    kinds = {p: history_kinds(rs.rules_for(p)) for p in ("copd", "heart_failure", "hypertension")}
    for r in readings:
        programme = r.programme or "copd"
        st = state.setdefault(r.patient, ([], [], programme))
        rules_all = rs.rules_for(programme)
        key = (programme, r.kind.value)
        hit = by_kind.get(key)
        if hit is None:
            hit = by_kind[key] = rules_for_kind(rules_all, r.kind)
        rules, hours = hit
        obs = Observation(r.kind, r.values, r.at, quality=r.quality)
        evaluate(rules, Context(programme=programme, history=window(st[0], st[1], r.at, hours)), obs)
        if r.kind in kinds[programme]:
            st[0].append(r.at)
            st[1].append(obs)
    return time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--readings", type=int, default=100_000)
    ap.add_argument("--citizens", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rules", type=Path, default=None, help="rules directory (default: packaged)")
    a = ap.parse_args()
    days = 180
    cohort = generate(seed=a.seed, citizens=a.citizens, days=days)
    while len(cohort.readings) < a.readings:
        days = int(days * a.readings / max(1, len(cohort.readings))) + 5
        cohort = generate(seed=a.seed, citizens=a.citizens, days=days)
    rows = cohort.readings[: a.readings]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "readings.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        t0 = time.perf_counter()
        with path.open(encoding="utf-8") as fh:
            parsed = parse_readings(fh, source=str(path))
        parse_s = time.perf_counter() - t0
        citizens = len({r.patient for r in parsed})
        bare_s, bare_cpu = bare_evaluator(parsed, a.rules)
        rs = load_ruleset(a.rules)
        routing = load_model(default_dir() / ROUTING_FILE, RoutingConfig)
        t0 = time.perf_counter()
        c0 = time.process_time()
        transitions = replay_stream(parsed, rs, routing=routing)
        replay_s = time.perf_counter() - t0
        replay_cpu = time.process_time() - c0
        cmd = [sys.executable, "-m", "nearcare_cli", "rules", "replay", str(path), "--format", "jsonl",
               "--out", str(Path(tmp) / "alerts.jsonl")]
        if a.rules is not None:
            cmd += ["--rules", str(a.rules)]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        command_s = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        command_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(f"command: {sys.executable} {' '.join(sys.argv)}")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in __import__('os').getloadavg())} (2 cores)")
    print(f"cohort: seed {a.seed}, {citizens} citizens x {days} days, {len(parsed)} readings")
    print(f"bare evaluator (floor)       {bare_s:6.2f} s  {1e6 * bare_s / len(parsed):6.1f} us/reading"
          f"  (CPU {bare_cpu:.2f} s)")
    print(f"parse + validate JSON Lines  {parse_s:6.2f} s  {1e6 * parse_s / len(parsed):6.1f} us/reading")
    print(f"replay (production path)     {replay_s:6.2f} s  {1e6 * replay_s / len(parsed):6.1f} us/reading, "
          f"{len(transitions)} transitions  (CPU {replay_cpu:.2f} s)")
    print(f"nearcare rules replay (whole command, new process) {command_s:6.2f} s  (CPU {command_cpu:.2f} s)")
    print(f"RESULT replay_s={replay_s:.2f} replay_cpu_s={replay_cpu:.2f} parse_s={parse_s:.2f} "
          f"bare_evaluator_s={bare_s:.2f} command_s={command_s:.2f} command_cpu_s={command_cpu:.2f} "
          f"readings={len(parsed)} citizens={citizens}")


if __name__ == "__main__":
    main()
