"""The ceiling of alerting on the labelled cohort: oracle detectors that know each citizen's truth.

The cohort (:mod:`alert_rules.cohort`) records each citizen's hidden stable parameters
(``truth.json``, :attr:`alert_rules.cohort.Cohort.truth`). A detector that knows them (an oracle)
bounds what a rule of the same shape can do on the same readings: the rule has to estimate the
level and SD that the oracle is given. It is not a bound on every rule: each citizen's level also
wanders slowly (AR(1), not in the truth), which a detector of change over a few days cancels and a
level detector does not, and the scorer counts openings, so two rules that open at different times
get two chances where one alert that is already open gets none (the bench prints why each missed
event was missed). Two oracles, swept over the mean of the last N measured days (N 1, 2, 3) and
the threshold T (1.5 to 4 by 0.25); an alert opens when the mean reaches T and closes after 3
readings below it:

- ``copd composite``: per local day (Europe/Copenhagen, as the score counts days), with flagged
  readings left out, z = (pulse - pulse_mu) / pulse_sd + (spo2_mu - spo2) / spo2_sd (Hurst 2010's
  composite in the citizen's own SDs, with the true mu and SD);
- ``hf weight``: z = (weight - true dry weight that day) / weight_sd, the dry weight being
  weight_mu plus the recorded dry-weight shifts; a holiday gain is NOT in it: it is real weight
  that no rule can know apart from fluid.

A second, stronger oracle is told each measured day's level (``truth.json`` ``level``: the
wander, the dry-weight resets and a holiday's real gain included), so that only the deterioration
and the day's measurement noise are left to it; its combined ceiling is printed after the first's.

Their openings are written as the replay's alert JSON Lines and scored by
:mod:`alert_rules.score` itself (issue 11: caught = a clinical alert opens in [event-7d,
event-1d]; false alert-days per patient-month), per programme and for both together (the combined
best picks one (N, T) per programme to maximise all caught with all false alert-days <= 0.3 per
patient-month). The shipped rules are replayed in process on the same cohorts
(:func:`alert_rules.stream.replay_stream` with the cohort's patients, routing and the
scheduler's clock, as ``nearcare rules replay --patients`` does) for comparison.

    .venv/bin/python bench/alert_ceiling.py [--seeds 1 2 3] [--citizens 200] [--days 180]
    .venv/bin/python bench/alert_ceiling.py --cohort DIR [DIR ...]   # from `nearcare rules cohort`

``--out DIR`` writes the chosen oracles' alert JSON Lines per cohort (for ``nearcare rules score``).
Figures are pooled over the cohorts (caught summed, false alert-days over all patient-months).
Last line: ``RESULT copd_ceiling_pct=… hf_ceiling_pct=… combined_ceiling_pct=… …``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alert_rules.cohort import generate
from alert_rules.score import PATIENT_MONTH_DAYS, parse_alerts, parse_events, score

ZONE = ZoneInfo("Europe/Copenhagen")
NS = (1, 2, 3)
TS = tuple(1.5 + 0.25 * i for i in range(11))  # 1.5 .. 4.0
CLOSE_AFTER = 3
TARGET_FAD = 0.3
PROGRAMMES = ("copd", "heart_failure")
MISS_KINDS = ("caught", "unmeasured", "already open", "late", "silent")
DETECTOR = {"copd": "copd composite", "heart_failure": "hf weight"}
RULE = {"copd": "oracle.copd.composite", "heart_failure": "oracle.hf.weight"}


@dataclass(frozen=True, slots=True)
class CohortData:
    """One cohort as ``nearcare rules cohort`` writes it (the truth included)."""
    name: str
    readings: list[dict[str, Any]]
    events: list[dict[str, Any]]
    patients: dict[str, dict[str, Any]]
    truth: dict[str, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class DayZ:
    """A measured local day of one citizen: the first reading's time and the day's mean z."""
    at: datetime
    z: float


@dataclass(frozen=True, slots=True)
class Tally:
    """What :func:`alert_rules.score.score` says, kept as counts so cohorts and programmes add up."""
    events: int
    caught: int
    false_days: int
    citizen_days: int

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.events + other.events, self.caught + other.caught,
                     self.false_days + other.false_days, self.citizen_days + other.citizen_days)

    @property
    def caught_pct(self) -> float:
        return 100.0 * self.caught / self.events if self.events else 0.0

    @property
    def fad(self) -> float:
        return self.false_days / (self.citizen_days / PATIENT_MONTH_DAYS) if self.citizen_days else 0.0


ZERO = Tally(0, 0, 0, 0)


# --- the oracle detectors (pure) ---------------------------------------------------------------

def _days(points: Iterable[tuple[datetime, float]]) -> list[DayZ]:
    """Per local calendar day: the first reading's time and the mean z of the day's readings."""
    by_day: dict[date, list[tuple[datetime, float]]] = {}
    for at, z in points:
        by_day.setdefault(at.astimezone(ZONE).date(), []).append((at, z))
    return [DayZ(min(p[0] for p in pts), sum(p[1] for p in pts) / len(pts))
            for _, pts in sorted(by_day.items())]


def copd_series(readings: Iterable[Mapping[str, Any]], truth: Mapping[str, Any], daily: bool = False) -> list[DayZ]:
    """The composite z per measured day with the citizen's true mu and SD (``daily``: against the
    day's true level, the slow wander included); flagged readings left out (a pulse and an SpO2
    pair by their common time)."""
    spo2: dict[str, float] = {}
    pulse: dict[str, float] = {}
    for r in readings:
        if r["quality"]:
            continue
        if r["kind"] == "spo2":
            spo2[r["at"]] = r["values"]["spo2"]
        elif r["kind"] == "pulse":
            pulse[r["at"]] = r["values"]["pulse"]
    def level(at: datetime) -> tuple[float, float]:
        if not daily:
            return truth["spo2_mu"], truth["pulse_mu"]
        s_level, p_level = truth["level"][at.astimezone(ZONE).date().isoformat()]
        return s_level, p_level

    points = []
    for at_text, s in spo2.items():
        if at_text not in pulse:
            continue
        at = datetime.fromisoformat(at_text)
        s_mu, p_mu = level(at)
        points.append((at, (pulse[at_text] - p_mu) / truth["pulse_sd"] + (s_mu - s) / truth["spo2_sd"]))
    return _days(points)


def dry_weight(truth: Mapping[str, Any], day: date) -> float:
    """The true dry weight on a day: weight_mu plus the shifts in force (never the holiday gain)."""
    return float(truth["weight_mu"]) + sum(s["kg"] for s in truth["dry_weight_shifts"]
                                           if date.fromisoformat(s["from"]) <= day)


def hf_series(readings: Iterable[Mapping[str, Any]], truth: Mapping[str, Any], daily: bool = False) -> list[DayZ]:
    """Weight z per measured day against the true dry weight that day, in the true weight SD
    (``daily``: against the day's true level: the wander and a holiday's real gain included)."""
    points = []
    for r in readings:
        if r["kind"] != "weight" or r["quality"]:
            continue
        at = datetime.fromisoformat(r["at"])
        day = at.astimezone(ZONE).date()
        base = truth["level"][day.isoformat()] if daily else dry_weight(truth, day)
        z = (r["values"]["weight"] - base) / truth["weight_sd"]
        points.append((at, z))
    return _days(points)


def detect(patient: str, rule: str, series: Sequence[DayZ], n: int, t: float,
           close_after: int = CLOSE_AFTER) -> list[dict[str, Any]]:
    """Alert transitions as ``nearcare rules replay --format jsonl`` writes them: opened when the mean
    of the last ``n`` measured days reaches ``t``, resolved after ``close_after`` days below it."""
    out: list[dict[str, Any]] = []
    is_open = False
    below = 0
    for i, d in enumerate(series):
        window = series[max(0, i - n + 1): i + 1]
        m = sum(x.z for x in window) / len(window)
        if not is_open and m >= t:
            is_open, below = True, 0
            out.append({"patient": patient, "rule": rule, "severity": "yellow", "event": "opened",
                        "at": d.at.isoformat(), "value": round(m, 3)})
        elif is_open:
            below = below + 1 if m < t else 0
            if below >= close_after:
                is_open = False
                out.append({"patient": patient, "rule": rule, "severity": "yellow", "event": "resolved",
                            "at": d.at.isoformat(), "value": round(m, 3)})
    return out


def series_by_citizen(c: CohortData, daily: bool = False) -> dict[str, dict[str, list[DayZ]]]:
    """Programme -> citizen -> the oracle's daily z (``daily``: the oracle told the daily level)."""
    mine: dict[str, list[dict[str, Any]]] = {}
    for r in c.readings:
        mine.setdefault(r["patient"], []).append(r)
    out: dict[str, dict[str, list[DayZ]]] = {p: {} for p in PROGRAMMES}
    for ref, info in c.patients.items():
        p = info["programme"]
        truth = c.truth[ref]
        rows = mine.get(ref, [])
        out[p][ref] = copd_series(rows, truth, daily) if p == "copd" else hf_series(rows, truth, daily)
    return out


# --- scoring with alert_rules.score --------------------------------------------------------------

def score_lines(alert_lines: Iterable[Mapping[str, Any]], c: CohortData, citizens: set[str]) -> Tally:
    """Score alert JSON lines for some of the cohort's citizens with the issue-11 scorer."""
    alerts = parse_alerts(json.dumps(a) for a in alert_lines if a["patient"] in citizens)
    events, monitored = parse_events(json.dumps(e) for e in c.events if e["patient"] in citizens)
    s = score(alerts, events, monitored)
    return Tally(s.events, s.caught, s.false_alert_days, s.citizen_days)


def misses(alert_lines: Iterable[Mapping[str, Any]], c: CohortData,
           series: Mapping[str, Sequence[DayZ]]) -> dict[str, int]:
    """Why the events of the citizens in ``series`` that were not caught were missed (a diagnostic
    beside the score, not a score): ``unmeasured`` (no usable reading in the catch window: no
    detector can open there), ``already open`` (the alert opened before the window and was still
    open when it began: the scorer counts openings only), ``late`` (it opened on the event's day
    or in the 5 days after), ``silent`` (nothing opened from 7 days before to 5 days after)."""
    citizens = set(series)
    opened: dict[str, list[date]] = {}
    spans: dict[str, list[tuple[date, date | None]]] = {}
    for a in alert_lines:
        if a["patient"] not in citizens:
            continue
        day = datetime.fromisoformat(a["at"]).astimezone(ZONE).date()
        if a["event"] == "opened":
            opened.setdefault(a["patient"], []).append(day)
            spans.setdefault(a["patient"], []).append((day, None))
        elif a["event"] == "resolved" and spans.get(a["patient"]):
            start, _ = spans[a["patient"]][-1]
            spans[a["patient"]][-1] = (start, day)
    out = dict.fromkeys(MISS_KINDS, 0)
    for e in c.events:
        if "event" not in e or e["patient"] not in citizens:
            continue
        ref, day = e["patient"], date.fromisoformat(e["day"])
        first, last = day - timedelta(days=7), day - timedelta(days=1)
        mine = opened.get(ref, [])
        if any(first <= d <= last for d in mine):
            out["caught"] += 1
        elif not any(first <= x.at.astimezone(ZONE).date() <= last for x in series[ref]):
            out["unmeasured"] += 1
        elif any(a < first and (b is None or b >= first) for a, b in spans.get(ref, [])):
            out["already open"] += 1
        elif any(day <= d <= day + timedelta(days=5) for d in mine):
            out["late"] += 1
        else:
            out["silent"] += 1
    return out


def programme_citizens(c: CohortData) -> dict[str, set[str]]:
    return {p: {ref for ref, info in c.patients.items() if info["programme"] == p} for p in PROGRAMMES}


def oracle_alerts(series: Mapping[str, Sequence[DayZ]], programme: str, n: int, t: float) -> list[dict[str, Any]]:
    return [a for ref, s in series.items() for a in detect(ref, RULE[programme], s, n, t)]


def sweep(c: CohortData, ns: Sequence[int] = NS, ts: Sequence[float] = TS,
          daily: bool = False) -> dict[tuple[str, int, float], Tally]:
    """(programme, N, T) -> the oracle's score on one cohort."""
    series = series_by_citizen(c, daily)
    who = programme_citizens(c)
    return {(p, n, t): score_lines(oracle_alerts(series[p], p, n, t), c, who[p])
            for p in PROGRAMMES for n in ns for t in ts}


def best_single(pooled: Mapping[tuple[str, int, float], Tally], programme: str,
                limit: float = TARGET_FAD) -> tuple[int, float, Tally] | None:
    """The most caught with false alert-days <= limit (fewer false days on a tie)."""
    ok = [(k[1], k[2], v) for k, v in pooled.items() if k[0] == programme and v.fad <= limit]
    return max(ok, key=lambda x: (x[2].caught, -x[2].false_days), default=None)


def best_combined(pooled: Mapping[tuple[str, int, float], Tally], limit: float = TARGET_FAD
                  ) -> tuple[tuple[int, float], tuple[int, float], Tally] | None:
    """One (N, T) per programme maximising all caught with all false alert-days <= limit."""
    copd = [(k[1:], v) for k, v in pooled.items() if k[0] == "copd"]
    hf = [(k[1:], v) for k, v in pooled.items() if k[0] == "heart_failure"]
    best: tuple[tuple[int, float], tuple[int, float], Tally] | None = None
    for kc, vc in copd:
        for kh, vh in hf:
            both = vc + vh
            if both.fad > limit:
                continue
            if best is None or (both.caught, -both.false_days) > (best[2].caught, -best[2].false_days):
                best = (kc, kh, both)
    return best


# --- the shipped rules ---------------------------------------------------------------------------

def shipped(c: CohortData) -> dict[str, Tally]:
    """The packaged rules through the production replay (patients, routing, the scheduler's clock),
    scored per programme and together."""
    from alert_rules.loader import ROUTING_FILE, default_dir, load_model, load_ruleset
    from alert_rules.routing import RoutingConfig
    from alert_rules.stream import Citizen, parse_readings, replay_stream

    rules_dir = default_dir()
    rs = load_ruleset(rules_dir)
    routing = load_model(rules_dir / ROUTING_FILE, RoutingConfig)
    who = {ref: Citizen.model_validate(info) for ref, info in c.patients.items()}
    transitions = replay_stream(parse_readings(json.dumps(r) for r in c.readings), rs, patients=who,
                                routing=routing, clock=True)
    lines = [t.as_json() for t in transitions]
    out = {p: score_lines(lines, c, refs) for p, refs in programme_citizens(c).items()}
    out["both"] = score_lines(lines, c, set(c.patients))
    return out


# --- I/O edges -----------------------------------------------------------------------------------

def from_seed(seed: int, citizens: int, days: int) -> CohortData:
    g = generate(seed=seed, citizens=citizens, days=days)
    return CohortData(f"seed {seed}", g.readings, g.events, g.patients, g.truth)


def from_dir(path: Path) -> CohortData:
    def lines(name: str) -> list[dict[str, Any]]:
        with (path / name).open(encoding="utf-8") as fh:
            return [json.loads(x) for x in fh if x.strip()]

    truth_file = path / "truth.json"
    if not truth_file.exists():
        raise SystemExit(f"{truth_file}: missing (write the cohort again with `nearcare rules cohort`)")
    return CohortData(str(path), lines("readings.jsonl"), lines("events.jsonl"),
                      json.loads((path / "patients.json").read_text(encoding="utf-8")),
                      json.loads(truth_file.read_text(encoding="utf-8")))


def _row(detector: str, n: int | str, t: float | str, v: Tally) -> str:
    tt = f"{t:.2f}" if isinstance(t, float) else t
    return (f"{detector:<16} {n!s:>2} {tt:>5} {v.caught:>4}/{v.events:<4} {v.caught_pct:6.1f} %"
            f" {v.fad:8.3f}")


HEADER = f"{'detector':<16} {'N':>2} {'T':>5} {'caught':>9} {'caught %':>8} {'FAD/pm':>8}"


def print_misses(cohorts: Sequence[CohortData], best: Mapping[str, tuple[int, float, Tally] | None]) -> None:
    print("the events not caught, at each programme's ceiling pick (pooled):")
    for p in PROGRAMMES:
        b = best[p]
        if b is None:
            continue
        why = dict.fromkeys(MISS_KINDS, 0)
        for c in cohorts:
            sp = series_by_citizen(c)[p]
            for kind, count in misses(oracle_alerts(sp, p, b[0], b[1]), c, sp).items():
                why[kind] += count
        assert why["caught"] == b[2].caught, (why, b)
        print(f"  {DETECTOR[p]:<16} missed {b[2].events - b[2].caught}: no usable reading in the window "
              f"{why['unmeasured']}, already open before it {why['already open']}, opened late {why['late']}, "
              f"silent {why['silent']}")


def _pool(per: Sequence[Mapping[tuple[str, int, float], Tally]]) -> dict[tuple[str, int, float], Tally]:
    """The cohorts' scores added up per (programme, N, T)."""
    return {k: sum((s[k] for s in per), ZERO) for k in per[0]}


def print_ceiling(title: str, pooled: Mapping[tuple[str, int, float], Tally]
                  ) -> tuple[dict[str, tuple[int, float, Tally] | None],
                             tuple[tuple[int, float], tuple[int, float], Tally] | None]:
    """Print the best (N, T) per programme and the best pair for both within the target; return them."""
    print()
    print(title)
    print(HEADER)
    best = {p: best_single(pooled, p) for p in PROGRAMMES}
    for p in PROGRAMMES:
        b = best[p]
        print(_row(DETECTOR[p], b[0], b[1], b[2]) if b else f"{DETECTOR[p]:<16} none under {TARGET_FAD}")
    combined = best_combined(pooled)
    if combined is not None:
        (nc, tc), (nh, th), both = combined
        print(_row("both", "", "", both) + f"   (copd N={nc} T={tc:.2f}, hf N={nh} T={th:.2f})")
    else:
        print(f"both             none under {TARGET_FAD}")
    return best, combined


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    src.add_argument("--cohort", type=Path, nargs="+", help="cohort directories from `nearcare rules cohort`")
    ap.add_argument("--citizens", type=int, default=200)
    ap.add_argument("--days", type=int, default=180)
    ap.add_argument("--no-shipped", action="store_true", help="skip the shipped rules' replay")
    ap.add_argument("--out", type=Path, default=None, help="write the chosen oracles' alert JSON Lines here")
    a = ap.parse_args()
    t0 = time.perf_counter()
    cohorts: list[CohortData] = ([from_dir(p) for p in a.cohort] if a.cohort
                                 else [from_seed(s, a.citizens, a.days) for s in a.seeds])
    per: list[dict[tuple[str, int, float], Tally]] = []
    per_daily: list[dict[tuple[str, int, float], Tally]] = []
    ship: list[dict[str, Tally]] = []
    for c in cohorts:
        per.append(sweep(c))
        per_daily.append(sweep(c, daily=True))
        if not a.no_shipped:
            ship.append(shipped(c))
    pooled = _pool(per)

    print(f"command: {sys.executable} {' '.join(sys.argv)}")
    print(f"cohorts: {', '.join(c.name for c in cohorts)}; "
          f"{sum(len(c.patients) for c in cohorts)} citizens in all "
          f"({', '.join(f'{p} {sum(len(programme_citizens(c)[p]) for c in cohorts)}' for p in PROGRAMMES)})")
    print(f"oracle: true mu/SD from truth.json; mean of the last N measured days >= T opens, "
          f"{CLOSE_AFTER} readings below close; pooled over the cohorts")
    for p in PROGRAMMES:
        print()
        print(f"{p}:")
        print(HEADER)
        for n in NS:
            for t in TS:
                print(_row(DETECTOR[p], n, t, pooled[(p, n, t)]))
    best, combined = print_ceiling(
        f"ceiling (most caught with false alert-days <= {TARGET_FAD} per patient-month), pooled:", pooled)
    if combined is not None:
        (nc, tc), (nh, th), both = combined
        # the combined pick scored once more as one alert file per cohort, through the scorer
        check = ZERO
        for c in cohorts:
            series = series_by_citizen(c)
            check = check + score_lines(oracle_alerts(series["copd"], "copd", nc, tc)
                                        + oracle_alerts(series["heart_failure"], "heart_failure", nh, th),
                                        c, set(c.patients))
        assert check == both, (check, both)
        print("per cohort at the combined pick:")
        for c, s in zip(cohorts, per, strict=True):
            v = s[("copd", nc, tc)] + s[("heart_failure", nh, th)]
            vc, vh = s[("copd", nc, tc)], s[("heart_failure", nh, th)]
            print(f"  {c.name:<10} both {v.caught}/{v.events} = {v.caught_pct:.1f} % at {v.fad:.3f}; "
                  f"copd {vc.caught_pct:.1f} % at {vc.fad:.3f}; hf {vh.caught_pct:.1f} % at {vh.fad:.3f}")
    print_misses(cohorts, best)

    # the stronger oracle: told each day's level (the wander, dry-weight resets, holiday weight),
    # so only the deterioration and the day's measurement noise are left to it
    _, combined_daily = print_ceiling(
        "ceiling of the oracle told each day's level (only the deterioration and the day's noise unknown), "
        f"false alert-days <= {TARGET_FAD}, pooled:", _pool(per_daily))

    ship_pooled: dict[str, Tally] = {}
    if ship:
        ship_pooled = {k: sum((s[k] for s in ship), ZERO) for k in ship[0]}
        print()
        print("shipped rules (packaged rules, replay with patients, routing and clock), same cohorts:")
        print(HEADER)
        for k in (*PROGRAMMES, "both"):
            print(_row(f"shipped {k if k != 'heart_failure' else 'hf'}", "", "", ship_pooled[k]))

    if a.out is not None and combined is not None:
        (nc, tc), (nh, th), _ = combined
        a.out.mkdir(parents=True, exist_ok=True)
        for i, c in enumerate(cohorts, start=1):
            series = series_by_citizen(c)
            for p, n, t in (("copd", nc, tc), ("heart_failure", nh, th)):
                path = a.out / f"cohort{i}_{p}_N{n}_T{t:.2f}.jsonl"
                path.write_text("".join(json.dumps(x) + "\n" for x in oracle_alerts(series[p], p, n, t)),
                                encoding="utf-8")
        print(f"alert JSON Lines of the combined pick -> {a.out}")

    wall = time.perf_counter() - t0
    print(f"wall {wall:.1f} s; load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (2 cores)")

    def pct(b: tuple[int, float, Tally] | None) -> str:
        return f"{b[2].caught_pct:.1f}" if b else "none"

    result = [f"copd_ceiling_pct={pct(best['copd'])}",
              f"copd_ceiling_fad={best['copd'][2].fad:.3f}" if best["copd"] else "copd_ceiling_fad=none",
              f"hf_ceiling_pct={pct(best['heart_failure'])}",
              f"hf_ceiling_fad={best['heart_failure'][2].fad:.3f}" if best["heart_failure"] else "hf_ceiling_fad=none",
              f"combined_ceiling_pct={combined[2].caught_pct:.1f}" if combined else "combined_ceiling_pct=none",
              f"combined_ceiling_fad={combined[2].fad:.3f}" if combined else "combined_ceiling_fad=none",
              f"known_level_ceiling_pct={combined_daily[2].caught_pct:.1f}" if combined_daily
              else "known_level_ceiling_pct=none",
              f"known_level_ceiling_fad={combined_daily[2].fad:.3f}" if combined_daily
              else "known_level_ceiling_fad=none"]
    if ship_pooled:
        result += [f"shipped_pct={ship_pooled['both'].caught_pct:.1f}", f"shipped_fad={ship_pooled['both'].fad:.3f}"]
    result += [f"cohorts={len(cohorts)}", f"citizens={sum(len(c.patients) for c in cohorts)}", f"wall_s={wall:.1f}"]
    print("RESULT " + " ".join(result))


if __name__ == "__main__":
    main()
