"""A labelled synthetic cohort of COPD and heart-failure citizens, for scoring alert rules.

``nearcare rules cohort --seed N --citizens 200 --days 180 --out DIR`` writes ``readings.jsonl``
(the replay's input), ``events.jsonl`` (the deteriorations and each citizen's monitored days: the
scorer's input), ``patients.json`` (programme, municipality, passive intervals and home-agent
outages per citizen, for ``--patients``: the replay's missed-measurement and agent-offline alerts)
and ``truth.json`` (:attr:`Cohort.truth`: each citizen's hidden stable parameters and the size of
each deterioration). Pure and seeded: the same seed gives the same files, byte for byte; the truth
is recorded beside the draws, never drawn, so the readings are what they were before it existed.

**Rules must never read ``truth.json``.** It is the answer sheet: it exists only for the ceiling
bench (``bench/alert_ceiling.py``), whose oracle detectors know each citizen's true level and SD
and so bound what a rule that has to estimate them from the same readings can reach with the same
detector; the daily ``level`` (the wander, dry-weight resets and holiday weight included) gives a
stronger oracle that is left only the deterioration and the day's measurement noise.

Every number below is a published figure or an assumption named as one. Sources:

- **Hurst 2010** (Hurst JR et al., *Domiciliary pulse-oximetry at exacerbation of COPD:
  prospective pilot study*, BMC Pulm Med 10:52): in stable COPD the day-to-day SD is about
  5/min for heart rate and 1 % for SpO2; changes were detectable just before exacerbation onset
  and greatest 2-3 days after symptom onset; a composite of SpO2 fall and HR rise, each in the
  patient's own SDs, separated exacerbation from symptom variation (change >= 1 SD averaged:
  71 % sensitive). So the prodrome below is expressed in the citizen's own SDs.
- **Al Rajeh/Hurst 2020** (Al Rajeh AM et al., JMIR mHealth 8(11):e17597): baseline from 14 stable
  days; a composite HR/SpO2 score changed from 7 days before treatment initiation; heart rate
  changed more than SpO2 (so the HR rise is drawn larger, in SD units, than the SpO2 fall).
- **Chaudhry 2007** (Chaudhry SI et al., *Patterns of weight change preceding hospitalization for
  heart failure*, Circulation 116:1549): weight rises gradually from about 30 days before
  admission and diverges from controls in the final week, by > 2-5 lb (0.9-2.3 kg), > 5-10 lb
  (2.3-4.5 kg) or > 10 lb; increases begin at least a week before admission.
- **Hurst 2010 NEJM** (Hurst JR et al., *Susceptibility to exacerbation in COPD*, NEJM 363:1128,
  ECLIPSE): moderate-severe exacerbation rates of about 0.85-2.0 per year by GOLD stage.
- **BTS / NEWS2 scale 2** (CLINICAL.md): a target of 88-92 % for citizens at risk of hypercapnia:
  the habitually hypercapnic citizens sit at 88-90 % when stable.
- **SIG GATT status bits** (CLINICAL.md; ``edge_agent/gatt``): oximeters flag ``low_perfusion``,
  ``erratic_signal`` (motion) and ``sensor_displaced``; BP monitors flag ``body_movement``,
  ``cuff_loose`` and ``improper_position``. Device flags are imperfect: a few glitches are not
  flagged at all (assumption: 0.5 % of oximetry readings; 1 % of weighings, clothes or a bag
  held, 1-2.5 kg).
- **Holiday weight** (Yanovski JA et al., NEJM 2000;342:861: mean holiday-season gain 0.37 kg,
  larger in some; Helander EE et al., NEJM 2016;375:1200: gains around holidays, lost slowly):
  some citizens come back from a holiday (during which they did not measure) up to 2 kg heavier
  and lose it over 2-3 weeks. That is real weight, not fluid: an honest false-alert source.
- **Adherence** (assumption, in line with telemonitoring adherence reports of 50-95 %): most
  citizens measure on 88-98 % of days; a fifth are poor adherers (55-80 %); some miss whole weeks.

Assumptions that are the cohort's own (no source; chosen to keep the cohort scoreable): events
happen from day 21 on (enrolment run-in), at least 30 days apart; the day of a deterioration is
the day treatment starts; 40 % of events are followed by 3-8 days without readings (admission);
heart-failure decompensations at 0.6-1.6 a year per citizen, the fast part of their prodrome
7-10 days (Chaudhry: at least a week); the prodrome's shape is linear
(the abstracts give none); during a decompensation the pulse rises by up to 8/min and the
systolic falls by up to 6 mmHg (small, so weight carries the signal); after an admission the
dry weight settles 0.5 kg lower; each citizen's own level wanders slowly (AR(1), phi 0.9-0.95).
Exacerbation rates are drawn from 0.8-2.2 a year, about ECLIPSE's range (Hurst 2010 NEJM).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

ZONE = ZoneInfo("Europe/Copenhagen")
START = date(2026, 1, 5)
MUNICIPALITIES = ("Aarhus", "Aalborg", "Odense", "Randers", "Silkeborg")

# COPD (per citizen; Hurst 2010: SD ~1 % SpO2 and ~5/min HR when stable)
SPO2_SD = (0.7, 1.3)
PULSE_SD = (3.5, 6.5)
HYPERCAPNIC_SHARE = 0.15
COPD_RATE_PER_YEAR = (0.8, 2.2)
# prodrome at treatment start, in the citizen's own SDs (Hurst 2010 composite >= 1 SD; Al Rajeh
# 2020: HR > SpO2); median and spread of a log-normal draw
PULSE_RISE_SD = (2.0, 0.35)
SPO2_FALL_SD = (1.5, 0.35)
PRODROME_DAYS = (4, 9)          # Al Rajeh 2020: changes from 7 days before treatment
RECOVERY_DAYS = (7, 16)

# Heart failure (Chaudhry 2007)
WEIGHT_SD = (0.3, 0.7)          # kg, day-to-day (assumption within home-scale reports)
HF_RATE_PER_YEAR = (0.6, 1.6)
WEEK_GAIN_KG = (2.0, 0.45)      # log-normal median 2.0 kg: Chaudhry's 0.9-4.5 kg final-week bands
CREEP_KG = (0.2, 0.8)           # gradual gain over the 30 days before (Chaudhry)
SYS_SD = (6.0, 11.0)

ARTEFACT_OXI = 0.05             # share of oximetry readings with a device flag
ARTEFACT_BP = 0.04
UNFLAGGED_GLITCH = 0.005
NO_EVENT_SHARE = 0.12
POOR_ADHERENCE_SHARE = 0.2
HOLIDAY_SHARE = 0.35
ADMISSION_REGISTERED = 0.9      # assumption: the nurse marks most admissions as passive
HOLIDAY_REGISTERED = 0.6        # assumption
AGENT_OUTAGE_SHARE = 0.08       # assumption


@dataclass
class Citizen:
    ref: str
    programme: str
    municipality: str
    traits: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Cohort:
    readings: list[dict[str, Any]]
    events: list[dict[str, Any]]
    patients: dict[str, dict[str, Any]]
    truth: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Citizen -> the hidden truth (``truth.json``): for the ceiling bench only, never for a rule.

    COPD: ``spo2_mu``, ``spo2_sd``, ``pulse_mu``, ``pulse_sd``, ``hypercapnic`` and per event
    ``day``, ``pulse_rise_sd``, ``spo2_fall_sd`` (at the peak, in the citizen's own SDs),
    ``prodrome_days``, ``recovery_days``. Heart failure: ``weight_mu``, ``weight_sd``,
    ``dry_weight_shifts`` (``from`` a day on, ``kg`` added to the dry weight), ``holiday``
    (``start``, ``length_days``, ``kg``; or None), ``sys_mu``, ``sys_sd``, ``pulse_mu``, ``pulse_sd``
    and per event ``day``, ``gain_kg`` (the final days), ``creep_kg`` (the 30 days before),
    ``prodrome_days``, ``recovery_days``. Days are local calendar dates (ISO). ``level``: per measured
    day, the citizen's level without any deterioration (COPD ``[spo2, pulse]``: the stable value
    plus the slow AR(1) wander; heart failure: weight_mu plus the wander, the dry-weight shifts and
    a holiday's real gain), so an oracle can also be told everything but the deterioration and the
    day's measurement noise."""


def _lognormal(rng: random.Random, median: float, sigma: float) -> float:
    return median * math.exp(rng.gauss(0, sigma))


def _event_days(rng: random.Random, days: int, rate_per_year: float) -> list[int]:
    out: list[int] = []
    d = 21 + int(rng.expovariate(rate_per_year / 365.0))
    while d < days:
        out.append(d)
        d += 30 + int(rng.expovariate(rate_per_year / 365.0))
    return out


def _ramp(day: int, events: list[int], prodromes: list[int], recoveries: list[int],
          peak_lead: int = 2) -> list[float]:
    """Per event: 0 before the prodrome, rising linearly to 1 ``peak_lead`` days before treatment
    (Hurst 2010: greatest 2-3 days after symptom onset; Al Rajeh 2020: symptoms from 5 days
    before treatment), 1 until treatment, back to 0 over recovery. The abstracts give no shape:
    linear is the assumption."""
    out = []
    for e, p, r in zip(events, prodromes, recoveries, strict=True):
        top = e - min(peak_lead, p - 1)
        if e - p <= day < top:
            out.append((day - (e - p)) / (top - (e - p)))
        elif top <= day <= e:
            out.append(1.0)
        elif e < day <= e + r:
            out.append(1.0 - (day - e) / r)
        else:
            out.append(0.0)
    return out


def _local(day: int, hour: int = 0) -> str:
    return datetime.combine(START + timedelta(days=day), datetime.min.time(), ZONE).replace(hour=hour).isoformat()


def _clock_facts(rng: random.Random, days: int, admissions: list[tuple[int, int]],
                 holiday: tuple[int, int, float] | None) -> dict[str, Any]:
    """What the nurse registers and what the home agent reports, for the replay's clock
    (missed-measurement and agent-offline alerts): admissions registered as passive from noon of
    the event's day (ADMISSION_REGISTERED of them), holidays registered by HOLIDAY_REGISTERED of
    the citizens who take one (the rest raise blue alerts, as an unannounced week away does);
    AGENT_OUTAGE_SHARE of the citizens have one home-agent outage of 20-96 hours (router, power;
    assumption) during which readings are buffered, not lost."""
    passive = [{"starts_at": _local(a - 1, 12), "ends_at": _local(b)} for a, b in admissions
               if rng.random() < ADMISSION_REGISTERED]
    if holiday is not None and rng.random() < HOLIDAY_REGISTERED:
        passive.append({"starts_at": _local(holiday[0]), "ends_at": _local(holiday[0] + holiday[1])})
    offline = []
    if rng.random() < AGENT_OUTAGE_SHARE:
        start = datetime.fromisoformat(_local(rng.randint(10, days - 10), rng.randint(0, 23)))
        offline.append({"starts_at": start.isoformat(),
                        "ends_at": (start + timedelta(hours=rng.uniform(20, 96))).replace(microsecond=0).isoformat()})
    return {"passive": passive, "offline": offline}


def _measure_days(rng: random.Random, days: int, adherence: float, gaps: list[tuple[int, int]]) -> list[bool]:
    out = [rng.random() < adherence for _ in range(days)]
    for a, b in gaps:
        for d in range(max(a, 0), min(b, days)):
            out[d] = False
    return out


def _at(rng: random.Random, day: int, hour: float) -> datetime:
    local = datetime.combine(START + timedelta(days=day), datetime.min.time(), ZONE)
    minutes = hour * 60 + rng.gauss(0, 35)
    return (local + timedelta(minutes=max(5 * 60, min(11 * 60, minutes)))).astimezone(UTC).replace(microsecond=0)


def generate(*, seed: int, citizens: int = 200, days: int = 180, copd_share: float = 0.55) -> Cohort:
    rng = random.Random(seed)
    # the scheduler's facts (passive intervals, agent outages) from their own stream, so that the
    # readings stay what they were before these facts existed
    clock_rng = random.Random(f"{seed}-clock")
    readings: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    patients: dict[str, dict[str, Any]] = {}
    truth: dict[str, dict[str, Any]] = {}
    for i in range(citizens):
        ref = f"P{i + 1:04d}"
        programme = "copd" if rng.random() < copd_share else "heart_failure"
        municipality = rng.choice(MUNICIPALITIES)
        patients[ref] = {"programme": programme, "municipality": municipality}
        no_events = rng.random() < NO_EVENT_SHARE
        poor = rng.random() < POOR_ADHERENCE_SHARE
        adherence = rng.uniform(0.55, 0.8) if poor else rng.uniform(0.88, 0.98)
        rate = rng.uniform(*(COPD_RATE_PER_YEAR if programme == "copd" else HF_RATE_PER_YEAR))
        ev = [] if no_events else _event_days(rng, days, rate)
        prodromes = [rng.randint(*PRODROME_DAYS) for _ in ev]
        recoveries = [rng.randint(*RECOVERY_DAYS) for _ in ev]
        gaps = [(e + 1, e + 1 + rng.randint(3, 8)) for e in ev if rng.random() < 0.4]
        admissions = list(gaps)
        holiday: tuple[int, int, float] | None = None
        if rng.random() < HOLIDAY_SHARE:
            h = rng.randint(14, days - 20)
            length = rng.randint(5, 14)
            holiday = (h, length, rng.uniform(0.3, 2.0))
            gaps.append((h, h + length))
        if rng.random() < 0.1:  # a week or two away without the equipment
            a = rng.randint(10, days - 15)
            gaps.append((a, a + rng.randint(7, 14)))
        measured = _measure_days(rng, days, adherence, gaps)
        patients[ref].update(_clock_facts(clock_rng, days, admissions, holiday))
        for e in ev:
            kind = "copd_exacerbation" if programme == "copd" else "hf_decompensation"
            events.append({"patient": ref, "event": kind, "day": (START + timedelta(days=e)).isoformat()})
        events.append({"patient": ref, "monitored_from": START.isoformat(),
                       "monitored_to": (START + timedelta(days=days - 1)).isoformat()})
        truth[ref] = {"programme": programme}
        if programme == "copd":
            readings += _copd(rng, ref, days, measured, ev, prodromes, recoveries, truth[ref])
        else:
            readings += _heart_failure(rng, ref, days, measured, ev, prodromes, recoveries, holiday, truth[ref])
    readings.sort(key=lambda r: (r["at"], r["patient"], r["kind"]))
    return Cohort(readings, events, patients, truth)


def _iso(day: int) -> str:
    return (START + timedelta(days=day)).isoformat()


def _copd(rng: random.Random, ref: str, days: int, measured: list[bool], ev: list[int], prodromes: list[int],
          recoveries: list[int], truth: dict[str, Any]) -> list[dict[str, Any]]:
    hypercapnic = rng.random() < HYPERCAPNIC_SHARE
    spo2_mu = rng.uniform(88.3, 89.8) if hypercapnic else min(97.0, max(90.5, rng.gauss(93.5, 1.6)))
    spo2_sd = rng.uniform(*SPO2_SD) * (0.8 if hypercapnic else 1.0)
    pulse_mu = min(105.0, max(58.0, rng.gauss(82, 9)))
    pulse_sd = rng.uniform(*PULSE_SD)
    rise = [_lognormal(rng, *PULSE_RISE_SD) for _ in ev]
    fall = [_lognormal(rng, *SPO2_FALL_SD) for _ in ev]
    # recorded, not drawn: the draws above and below stay in their order
    truth.update({
        "spo2_mu": spo2_mu, "spo2_sd": spo2_sd, "pulse_mu": pulse_mu, "pulse_sd": pulse_sd,
        "hypercapnic": hypercapnic,
        "events": [{"day": _iso(e), "pulse_rise_sd": r, "spo2_fall_sd": f, "prodrome_days": p, "recovery_days": q}
                   for e, r, f, p, q in zip(ev, rise, fall, prodromes, recoveries, strict=True)]})
    levels: dict[str, Any] = truth.setdefault("level", {})
    drift_s = drift_p = 0.0
    out = []
    for d in range(days):
        # slow wandering of the citizen's own level (AR(1), phi 0.9): not a deterioration
        drift_s = 0.9 * drift_s + rng.gauss(0, 0.15)
        drift_p = 0.9 * drift_p + rng.gauss(0, 0.8)
        if not measured[d]:
            continue
        levels[_iso(d)] = [spo2_mu + drift_s, pulse_mu + drift_p]
        w = _ramp(d, ev, prodromes, recoveries)
        shift_p = sum(x * r * pulse_sd for x, r in zip(w, rise, strict=True))
        shift_s = sum(x * f * spo2_sd for x, f in zip(w, fall, strict=True))
        spo2 = spo2_mu + drift_s - shift_s + rng.gauss(0, spo2_sd)
        pulse = pulse_mu + drift_p + shift_p + rng.gauss(0, pulse_sd)
        quality: list[str] = []
        u = rng.random()
        if u < ARTEFACT_OXI * 0.6:
            quality = ["low_perfusion"]
            spo2 -= rng.uniform(2, 9)
            pulse += rng.gauss(0, 8)
        elif u < ARTEFACT_OXI * 0.9:
            quality = ["erratic_signal"]  # motion
            pulse += rng.uniform(8, 30)
            spo2 -= rng.uniform(0, 4)
        elif u < ARTEFACT_OXI:
            quality = ["sensor_displaced"]
            spo2 -= rng.uniform(3, 12)
        elif u < ARTEFACT_OXI + UNFLAGGED_GLITCH:
            spo2 -= rng.uniform(3, 7)
            pulse += rng.uniform(5, 20)
        at = _at(rng, d, 8.5)
        s = float(min(100, max(70, round(spo2))))
        p = float(min(180, max(35, round(pulse))))
        out.append({"patient": ref, "programme": "copd", "kind": "spo2", "values": {"spo2": s},
                    "at": at.isoformat(), "quality": quality})
        out.append({"patient": ref, "programme": "copd", "kind": "pulse", "values": {"pulse": p},
                    "at": at.isoformat(), "quality": quality})
    return out


def _heart_failure(rng: random.Random, ref: str, days: int, measured: list[bool], ev: list[int],
                   prodromes: list[int], recoveries: list[int],
                   holiday: tuple[int, int, float] | None, truth: dict[str, Any]) -> list[dict[str, Any]]:
    weight_mu = min(140.0, max(48.0, rng.gauss(82, 15)))
    weight_sd = rng.uniform(*WEIGHT_SD)
    sys_mu = min(160.0, max(98.0, rng.gauss(124, 14)))
    sys_sd = rng.uniform(*SYS_SD)
    pulse_mu = min(100.0, max(52.0, rng.gauss(72, 9)))
    pulse_sd = rng.uniform(3.0, 6.0)
    gain = [_lognormal(rng, *WEEK_GAIN_KG) for _ in ev]
    creep = [rng.uniform(*CREEP_KG) for _ in ev]
    # Chaudhry: increases begin at least a week before admission and diverge in the final week:
    # the fast part of the prodrome lasts 7-10 days (it lasted 5-10, shorter than the source)
    hf_prodromes = [max(7, min(10, p + 3)) for p in prodromes]
    # recorded, not drawn: the draws above and below stay in their order. The dry-weight shifts
    # are the -0.5 kg after each event below (from the day after diuresis ends); the holiday
    # gain is real weight, not a shift of the dry weight
    truth.update({
        "weight_mu": weight_mu, "weight_sd": weight_sd,
        "dry_weight_shifts": [{"from": _iso(e + 6), "kg": -0.5} for e in ev if e + 6 < days],
        "holiday": None if holiday is None else {"start": _iso(holiday[0]), "length_days": holiday[1],
                                                  "kg": holiday[2]},
        "sys_mu": sys_mu, "sys_sd": sys_sd, "pulse_mu": pulse_mu, "pulse_sd": pulse_sd,
        "events": [{"day": _iso(e), "gain_kg": g, "creep_kg": c, "prodrome_days": p, "recovery_days": q}
                   for e, g, c, p, q in zip(ev, gain, creep, hf_prodromes, recoveries, strict=True)]})
    levels: dict[str, Any] = truth.setdefault("level", {})
    drift_w = drift_s = 0.0
    out = []
    for d in range(days):
        drift_w = 0.95 * drift_w + rng.gauss(0, 0.08)
        drift_s = 0.9 * drift_s + rng.gauss(0, 1.5)
        extra = 0.0
        for e, g, c, p in zip(ev, gain, creep, hf_prodromes, strict=True):
            if e - 30 <= d < e - p:
                extra += c * (d - (e - 30)) / (30 - p)
            elif e - p <= d <= e:
                extra += c + g * (d - (e - p)) / p  # linear over the final days (Chaudhry: no shape given)
            elif e < d <= e + 5:
                extra += (c + g) * (1 - (d - e) / 5)  # diuresis in hospital or at home
        # after an admission the dry weight is often reset a little lower (assumption)
        dry_shift = -0.5 * sum(1 for e in ev if d > e + 5)
        gained = 0.0  # the holiday's real weight: part of the level, not of a deterioration
        if holiday is not None:
            h, length, kg = holiday
            if h <= d < h + length:
                gained = kg * (d - h + 1) / length
                extra += gained
            elif h + length <= d < h + length + 21:
                gained = kg * (1 - (d - h - length) / 21)
                extra += gained
        if not measured[d]:
            continue
        levels[_iso(d)] = weight_mu + drift_w + dry_shift + gained
        w = _ramp(d, ev, hf_prodromes, recoveries, peak_lead=0)
        load = max(w) if w else 0.0
        weight = weight_mu + drift_w + dry_shift + extra + rng.gauss(0, weight_sd)
        systolic = sys_mu + drift_s - 6 * load + rng.gauss(0, sys_sd)
        pulse = pulse_mu + 8 * load + rng.gauss(0, pulse_sd)
        at = _at(rng, d, 8.0)
        wq: list[str] = []
        if rng.random() < UNFLAGGED_GLITCH * 2:
            weight += rng.choice((-1, 1)) * rng.uniform(1.0, 2.5)  # clothes, a bag held: never flagged
        out.append({"patient": ref, "programme": "heart_failure", "kind": "weight",
                    "values": {"weight": round(weight, 1)}, "at": at.isoformat(), "quality": wq})
        bq: list[str] = []
        u = rng.random()
        if u < ARTEFACT_BP:
            bq = [rng.choice(("body_movement", "cuff_loose", "improper_position"))]
            systolic += rng.choice((-1, 1)) * rng.uniform(15, 35)
            pulse += rng.uniform(0, 20)
        bp_at = (at + timedelta(minutes=3)).isoformat()
        sys_v = float(round(min(230, max(70, systolic))))
        dia_v = float(round(min(130, max(40, sys_v * 0.6 + rng.gauss(0, 5)))))
        out.append({"patient": ref, "programme": "heart_failure", "kind": "blood_pressure",
                    "values": {"systolic": sys_v, "diastolic": dia_v}, "at": bp_at, "quality": bq})
        out.append({"patient": ref, "programme": "heart_failure", "kind": "pulse",
                    "values": {"pulse": float(round(min(170, max(35, pulse))))}, "at": bp_at, "quality": bq})
    return out
