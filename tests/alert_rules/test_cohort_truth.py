"""The cohort's hidden truth (truth.json) and the ceiling bench's oracle detectors
(bench/alert_ceiling.py): the readings stay what they were, the truth describes them, and the
oracles run through the issue-11 scorer."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from typer.testing import CliRunner

from alert_rules.cli import app
from alert_rules.cohort import START, generate
from bench.alert_ceiling import (
    MISS_KINDS,
    ZONE,
    DayZ,
    detect,
    dry_weight,
    from_seed,
    misses,
    oracle_alerts,
    programme_citizens,
    series_by_citizen,
    sweep,
)

# sha256 of the files `nearcare rules cohort --seed 1 --citizens 200 --days 180` wrote before the
# truth was recorded (computed from the code at 3e56f67): recording it must not move a single draw
SEED1_READINGS = "c41b6591998d3d225aaa6bf3e87716f7c56aeda02be9a8a9f13adb5365a99fd6"
SEED1_EVENTS = "151109e401a4b6ddb7b3534c83400e922c77ed609a355572227ffc6d2e74f99e"
SEED1_PATIENTS = "08e53387ad46780a4219ddf6f0ba15174764b32d317a36c6e84f50610401e725"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_readings_events_and_patients_are_unchanged_by_the_truth() -> None:
    c = generate(seed=1, citizens=200, days=180)
    assert _sha("".join(json.dumps(r) + "\n" for r in c.readings)) == SEED1_READINGS
    assert _sha("".join(json.dumps(e) + "\n" for e in c.events)) == SEED1_EVENTS
    assert _sha(json.dumps(c.patients, indent=1) + "\n") == SEED1_PATIENTS


def test_truth_names_every_citizen_and_every_event() -> None:
    days = 120
    c = generate(seed=7, citizens=60, days=days)
    assert set(c.truth) == set(c.patients)
    events: dict[str, list[str]] = {}
    for e in c.events:
        if "event" in e:
            events.setdefault(e["patient"], []).append(e["day"])
    copd = {"spo2_mu", "spo2_sd", "pulse_mu", "pulse_sd", "hypercapnic", "events", "level"}
    hf = {"weight_mu", "weight_sd", "dry_weight_shifts", "holiday", "sys_mu", "sys_sd", "pulse_mu", "pulse_sd",
          "events", "level"}
    measured: dict[str, set[str]] = {}
    for r in c.readings:
        if r["kind"] in ("spo2", "weight"):
            measured.setdefault(r["patient"], set()).add(
                datetime.fromisoformat(r["at"]).astimezone(ZoneInfo("Europe/Copenhagen")).date().isoformat())
    holidays = 0
    for ref, t in c.truth.items():
        programme = c.patients[ref]["programme"]
        assert t["programme"] == programme
        assert set(t) - {"programme"} == (copd if programme == "copd" else hf)
        assert [e["day"] for e in t["events"]] == events.get(ref, [])
        # the daily level without deterioration, on exactly the measured days, near the stable value
        assert set(t["level"]) == measured.get(ref, set())
        if programme == "copd":
            assert all(abs(s - t["spo2_mu"]) < 3 and abs(p - t["pulse_mu"]) < 15 for s, p in t["level"].values())
        else:
            assert all(abs(w - t["weight_mu"]) < 5 for w in t["level"].values())
        if programme == "copd":
            assert all(e["pulse_rise_sd"] > 0 and e["spo2_fall_sd"] > 0 and 4 <= e["prodrome_days"] <= 9
                       for e in t["events"])
            assert (88.3 <= t["spo2_mu"] <= 89.8) if t["hypercapnic"] else (90.5 <= t["spo2_mu"] <= 97.0)
        else:
            assert all(e["gain_kg"] > 0 and 7 <= e["prodrome_days"] <= 10 for e in t["events"])
            # a shift 6 days after each event that leaves room for it in the monitored days
            last = (START + timedelta(days=days - 1)).isoformat()
            assert [s["from"] for s in t["dry_weight_shifts"]] == [
                d for d in ((date.fromisoformat(e["day"]) + timedelta(days=6)).isoformat() for e in t["events"])
                if d <= last]
            holidays += t["holiday"] is not None
    assert holidays > 0


def test_the_truth_describes_the_readings() -> None:
    """With the recorded mu and SD, the oracle's z sits near 0 far from any event and well above
    it on the days before one: the truth is the truth of these readings."""
    c = from_seed(2, 80, 150)
    series = series_by_citizen(c)
    events: dict[str, list[date]] = {}
    for e in c.events:
        if "event" in e:
            events.setdefault(e["patient"], []).append(date.fromisoformat(e["day"]))
    for p, per in series.items():
        quiet, before = [], []
        for ref, s in per.items():
            for d in s:
                day = d.at.astimezone(ZONE).date()
                gaps = [(day - e).days for e in events.get(ref, [])]
                if all(not -35 <= g <= 25 for g in gaps):
                    quiet.append(d.z)
                if any(-2 <= g <= 0 for g in gaps):
                    before.append(d.z)
        assert len(quiet) > 500 and len(before) > 10, p
        assert abs(sum(quiet) / len(quiet)) < 0.3, p
        assert sum(before) / len(before) > 2.0, p


def test_dry_weight_adds_the_shifts_in_force_and_never_the_holiday() -> None:
    t = {"weight_mu": 80.0, "dry_weight_shifts": [{"from": "2026-02-01", "kg": -0.5},
                                                  {"from": "2026-03-01", "kg": -0.5}],
         "holiday": {"start": "2026-01-10", "length_days": 7, "kg": 2.0}}
    assert dry_weight(t, date(2026, 1, 12)) == 80.0
    assert dry_weight(t, date(2026, 2, 1)) == 79.5
    assert dry_weight(t, date(2026, 3, 2)) == 79.0


def _series(*zs: float) -> list[DayZ]:
    start = datetime(2026, 1, 5, 7, 30, tzinfo=UTC)
    return [DayZ(start + timedelta(days=i), z) for i, z in enumerate(zs)]


def test_detect_opens_on_the_mean_of_the_last_n_days_and_closes_after_three_below() -> None:
    s = _series(0, 2, 4, 3.5, 1, 1, 1, 1, 5)
    # N=1, T=3: opens on day 2 (4), 3.5 keeps it open, three days below close it on day 6, day 8 opens again
    got = [(a["event"], a["at"][:10]) for a in detect("P1", "r", s, 1, 3.0)]
    assert got == [("opened", "2026-01-07"), ("resolved", "2026-01-11"), ("opened", "2026-01-13")]
    # N=2, T=3: mean(2, 4) = 3 opens on day 2; mean(4, 3.5) stays; (3.5+1)/2, 1, 1 are below: closed on day 6
    got = [(a["event"], a["at"][:10]) for a in detect("P1", "r", s, 2, 3.0)]
    assert got == [("opened", "2026-01-07"), ("resolved", "2026-01-11"), ("opened", "2026-01-13")]
    assert detect("P1", "r", s, 3, 3.0)[0]["at"][:10] == "2026-01-08"  # mean(2, 4, 3.5) = 3.17
    assert detect("P1", "r", s, 1, 5.5) == []
    line = detect("P1", "r", s, 1, 3.0)[0]
    assert set(line) == {"patient", "rule", "severity", "event", "at", "value"} and line["severity"] == "yellow"


def test_ceiling_smoke_on_a_small_cohort() -> None:
    c = from_seed(3, 20, 60)
    got = sweep(c, ns=(1, 2), ts=(1.5, 3.0))
    assert set(got) == {(p, n, t) for p in ("copd", "heart_failure") for n in (1, 2) for t in (1.5, 3.0)}
    who = programme_citizens(c)
    for (p, _, _), v in got.items():
        assert v.events == sum(1 for e in c.events if "event" in e and e["patient"] in who[p])
        assert 0 <= v.caught <= v.events and v.false_days >= 0 and v.fad >= 0
        assert v.citizen_days == 60 * len(who[p])
    assert sum(v.caught for v in got.values()) > 0  # the oracle with the truth catches something
    series = series_by_citizen(c)
    for p in ("copd", "heart_failure"):
        why = misses(oracle_alerts(series[p], p, 1, 1.5), c, series[p])
        assert set(why) == set(MISS_KINDS)
        assert why["caught"] == got[(p, 1, 1.5)].caught and sum(why.values()) == got[(p, 1, 1.5)].events


def test_cli_cohort_writes_truth_json(tmp_path: Path) -> None:
    out = tmp_path / "c"
    r = CliRunner().invoke(app, ["cohort", "--seed", "4", "--citizens", "10", "--days", "40", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "truth.json").read_text()) == generate(seed=4, citizens=10, days=40).truth
    assert {p.name for p in out.iterdir()} == {"readings.jsonl", "events.jsonl", "patients.json", "truth.json"}
