"""The pure rule evaluator's cost per reading, fed the way ``backend/alerting/engine.py`` feeds it.

Builds patients of all three programmes with two days of mixed-kind history, their baselines
and (for some) per-patient threshold overrides, then times ``evaluate`` over a batch of new
readings with the rules pre-filtered per (programme, kind) and the history cut to the rules'
window by bisect, exactly as the engine does. No database, no broker: this is the CPU the
alerting worker spends inside ``alert_rules`` per reading.

    .venv/bin/python bench/evaluator.py [--patients 2000] [--repeat 5] [--profile] [--before FILE]

``--profile`` prints the top of a cProfile of one pass first. ``--before FILE`` also times an
earlier ``alert_rules/evaluate.py`` on the same batch in the same run, e.g. the one before the
compiled rules::

    git show 8bb4a4d~1:alert_rules/evaluate.py > /tmp/evaluate_before.py
    .venv/bin/python bench/evaluator.py --before /tmp/evaluate_before.py

Last line: ``RESULT evaluate_us_per_reading_before=… after=… readings=…`` (best of ``--repeat``
passes each; ``before`` only with ``--before``).
"""

from __future__ import annotations

import argparse
import bisect
import cProfile
import importlib.util
import pstats
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alert_rules.baseline import Baseline
from alert_rules.evaluate import Context, Observation, evaluate, history_hours
from alert_rules.loader import load_ruleset
from alert_rules.model import BatteryLowRule
from vitals.kinds import MeasurementKind

PROGRAMMES = ("copd", "heart_failure", "hypertension")
KINDS: dict[str, list[tuple[MeasurementKind, dict[str, tuple[float, float]]]]] = {
    "copd": [(MeasurementKind.SPO2, {"spo2": (84, 98)}), (MeasurementKind.PULSE, {"pulse": (55, 120)})],
    "heart_failure": [(MeasurementKind.WEIGHT, {"weight": (60, 95)}),
                      (MeasurementKind.BLOOD_PRESSURE, {"systolic": (95, 170), "diastolic": (55, 100),
                                                        "pulse": (50, 110)})],
    "hypertension": [(MeasurementKind.BLOOD_PRESSURE, {"systolic": (110, 190), "diastolic": (60, 115),
                                                       "pulse": (50, 110)})],
}




def _components(rng: random.Random, ranges: dict[str, tuple[float, float]]) -> dict[str, float]:
    return {c: round(rng.uniform(lo, hi), 1) for c, (lo, hi) in ranges.items()}


def build(patients: int, seed: int = 7) -> tuple[list[Any], int]:
    """Work items ``(rules, ctx, obs)`` for one batch of readings, one per patient."""
    rng = random.Random(seed)
    ruleset = load_ruleset()
    now = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    by_kind: dict[tuple[str, MeasurementKind], tuple[list[Any], float]] = {}
    items: list[Any] = []
    for p in range(patients):
        programme = PROGRAMMES[p % 3]
        kinds = KINDS[programme]
        # Two readings of each kind a day for three days, measured before the new reading.
        history: list[Observation] = []
        for h in range(6):
            for kind, ranges in kinds:
                at = now - timedelta(hours=72 - 12 * h, minutes=rng.randint(0, 600))
                history.append(Observation(kind, _components(rng, ranges), at, f"h{p}-{h}-{kind.value}"))
        history.sort(key=lambda o: o.measured_at)
        times = [o.measured_at for o in history]
        baselines = {(kind.value, c): Baseline(mean=(lo + hi) / 2, sd=(hi - lo) / 8, n_days=14)
                     for kind, ranges in kinds for c, (lo, hi) in ranges.items()}
        overrides: dict[str, dict[str, float]] = {}
        if p % 5 == 0:  # a fifth of the patients have a clinician's own limits
            first_abs = next(r for r in ruleset.rules_for(programme) if r.kind == "absolute")
            t = first_abs.default_thresholds()
            field = next(iter(t))
            overrides[first_abs.id] = {field: t[field] - 1 if "low" in field else t[field] + 1}
        kind, ranges = kinds[p % len(kinds)]
        quality = ("low_battery",) if p % 50 == 0 else ()
        obs = Observation(kind, _components(rng, ranges), now, f"new{p}", quality)
        key = (programme, kind)
        if key not in by_kind:
            rules = [r for r in ruleset.rules_for(programme)
                     if kind in r.measurement_kinds or isinstance(r, BatteryLowRule)]
            by_kind[key] = (rules, history_hours(rules))
        rules, hours = by_kind[key]
        cut = bisect.bisect_left(times, obs.measured_at)
        first = bisect.bisect_left(times, obs.measured_at - timedelta(hours=hours), 0, cut)
        ctx = Context(programme=programme, history=history[first:cut], baselines=baselines, overrides=overrides)
        items.append((rules, ctx, obs))
    return items, sum(len(r) for r, _, _ in items)


def run(items: list[Any], fn: Any = evaluate) -> int:
    fired = 0
    for rules, ctx, obs in items:
        for f in fn(rules, ctx, obs):
            fired += f.fired
    return fired


def best_of(repeat: int, items: list[Any], fn: Any) -> tuple[float, int]:
    best = float("inf")
    fired = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        fired = run(items, fn)
        best = min(best, time.perf_counter() - t0)
    return best / len(items) * 1e6, fired


def load_before(path: str) -> Any:
    """An earlier evaluate.py as its own module; it takes this one's Context and Observation
    (the fields are the same), so both see identical input."""
    spec = importlib.util.spec_from_file_location("evaluate_before", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["evaluate_before"] = module  # dataclasses look their module up while decorating
    spec.loader.exec_module(module)
    return module.evaluate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--before", help="an earlier alert_rules/evaluate.py to time on the same batch")
    args = ap.parse_args()
    items, rule_calls = build(args.patients)
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"readings per pass: {len(items)}, rules considered: {rule_calls}")
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        run(items)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    before = ""
    if args.before:
        us_before, fired_before = best_of(args.repeat, items, load_before(args.before))
        print(f"before ({args.before}): {us_before:.1f} us per reading, fired {fired_before} findings")
        before = f"evaluate_us_per_reading_before={us_before:.1f} "
    us, fired = best_of(args.repeat, items, evaluate)
    print(f"after (alert_rules/evaluate.py): {us:.1f} us per reading, fired {fired} findings")
    if args.before and fired != fired_before:
        raise SystemExit("before and after disagree on the number of findings that fired")
    print(f"RESULT {before}after={us:.1f} readings={len(items)}")


if __name__ == "__main__":
    main()
