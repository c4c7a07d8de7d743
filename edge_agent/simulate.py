"""Simulated citizens: realistic readings with noise, missed measurements and deterioration.

Two halves:

- **Pure generator.** :func:`demo_cohort` builds frozen :class:`CitizenProfile` values;
  :func:`readings_between` yields the :class:`SimReading` values a citizen produces in a time
  window. Deterministic per (profile, day, slot), so a window gives the same readings however
  the time is cut.
  :func:`spot_checks_between` adds continuous spot checks every ``every_s`` simulated seconds
  (a load mode). Every reading carries a ``key`` (its care-plan day and slot, or its spot-check
  number) and :func:`measurement_id` derives each measurement's id from it: the same simulated
  measurement always has the same id, however often it is generated.
- **Runner.** :func:`run_simulation` turns each reading into real characteristic bytes,
  decodes them with :mod:`edge_agent.gatt`, builds the measurements as the agent's recorder
  does (:func:`~edge_agent.recorder.to_measurements`) and spools them in the same
  :class:`~edge_agent.spool.Spool` drained by the same :class:`~edge_agent.uplink.Uplink` as a
  real agent, one spool and one MQTT client per simulated agent, all driven from one thread.
  Its progress (the simulated timeline's start and how far it got) is kept beside each spool, so
  a restart, also after a SIGKILL, continues where it stopped; anything generated twice around
  a kill carries the same id, which the spool and the store absorb.

Scenarios: ``stable``; ``copd_exacerbation`` (SpO2 drifts down and pulse up over 3 days);
``hf_weight_gain`` (+2.8 kg over 2.5 days); ``hypertensive_episode`` (BP rises to ~185/110 for
two days); ``wrong_clock`` (the BP cuff's clock was reset to 2000-01-01 and nobody set it);
``adherence_gap`` (measures irregularly and stops for three days). Deterioration starts
``onset_hours`` simulated hours after the live part begins: at speed 600 that is seconds.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import random
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from edge_agent.devices import encode
from edge_agent.devices.recipes import Capture
from edge_agent.errors import SpoolFullError
from edge_agent.gatt import decode, readings_from
from edge_agent.gatt.nonin import NONIN_CONTINUOUS_UUID
from edge_agent.recorder import to_measurements
from edge_agent.spool import Spool
from edge_agent.uplink import Uplink
from vitals.broker import parse_broker_url
from vitals.kinds import MeasurementKind
from vitals.wire import Device, Measurement, Topics

log = logging.getLogger(__name__)

Programme = Literal["copd", "heart_failure", "hypertension"]
Scenario = Literal["stable", "copd_exacerbation", "hf_weight_gain", "hypertensive_episode", "wrong_clock",
                   "adherence_gap"]
DeviceRole = Literal["oximeter", "scale", "bp"]

ZONE = ZoneInfo("Europe/Copenhagen")
DETERIORATIONS: tuple[Scenario, ...] = ("copd_exacerbation", "hf_weight_gain", "hypertensive_episode")


@dataclass(frozen=True, slots=True)
class SimDevice:
    role: DeviceRole
    address: str
    model: str
    manufacturer: str
    characteristic: str
    """The characteristic it sends readings on (2A35, 2A9D or the Nonin continuous UUID)."""
    kinds: tuple[MeasurementKind, ...]
    user_index: int | None = None
    """The citizen's user slot on a shared scale or cuff, as the device reports it."""


@dataclass(frozen=True, slots=True)
class Baseline:
    spo2: float
    pulse: float
    weight: float
    systolic: float
    diastolic: float


@dataclass(frozen=True, slots=True)
class CitizenProfile:
    agent_id: str
    name: str
    programme: Programme
    municipality: str
    scenario: Scenario
    devices: tuple[SimDevice, ...]
    baseline: Baseline
    seed: int
    adherence: float = 0.93
    """Probability that a planned measurement is taken."""
    onset_hours: float = 1.0
    """Simulated hours after the live start when the scenario's deterioration begins."""

    def device(self, role: DeviceRole) -> SimDevice | None:
        return next((d for d in self.devices if d.role == role), None)


@dataclass(frozen=True, slots=True)
class SimReading:
    at: datetime
    """True time of the measurement (UTC)."""
    role: DeviceRole
    values: dict[str, float]
    device_time: datetime | None
    """What the device's clock says (naive local time), or None for a device without a clock."""
    key: str = ""
    """Which measurement this is for the citizen: ``plan:<day>:<slot>`` or ``spot:<n>``. The
    measurement ids derive from it (:func:`measurement_id`)."""


# -- the cohort ----------------------------------------------------------------------------------

_FIRST = ("Karen", "Jens", "Inge", "Poul", "Birthe", "Henning", "Kirsten", "Erik", "Hanne", "Ole", "Lis", "Bent",
          "Grethe", "Svend", "Else", "Niels")
_LAST = ("Jensen", "Nielsen", "Hansen", "Pedersen", "Andersen", "Christensen", "Larsen", "Sørensen", "Rasmussen",
         "Mortensen")
_MUNICIPALITIES = ("Aarhus", "Randers", "Silkeborg")
# One of each deterioration first, so even a small demo shows every alert kind.
_PLAN: tuple[tuple[Programme, Scenario], ...] = (
    ("copd", "copd_exacerbation"),
    ("heart_failure", "hf_weight_gain"),
    ("hypertension", "hypertensive_episode"),
    ("heart_failure", "wrong_clock"),
    ("copd", "adherence_gap"),
    ("copd", "stable"),
    ("hypertension", "stable"),
    ("heart_failure", "stable"),
)
_ROLES: dict[Programme, tuple[DeviceRole, ...]] = {
    "copd": ("oximeter", "bp"),
    "heart_failure": ("scale", "bp", "oximeter"),
    "hypertension": ("bp",),
}


def _sim_device(role: DeviceRole, i: int) -> SimDevice:
    address = f"C0:4E:30:{i >> 8:02X}:{i & 0xFF:02X}:{('oximeter', 'scale', 'bp').index(role) + 1:02X}"
    if role == "oximeter":
        return SimDevice(role, address, "Nonin 3230", "Nonin Medical", NONIN_CONTINUOUS_UUID,
                         (MeasurementKind.SPO2, MeasurementKind.PULSE))
    if role == "scale":
        return SimDevice(role, address, "A&D UC-352BLE", "A&D Medical", "2A9D", (MeasurementKind.WEIGHT,), 1)
    return SimDevice(role, address, "A&D UA-651BLE", "A&D Medical", "2A35",
                     (MeasurementKind.BLOOD_PRESSURE, MeasurementKind.PULSE), 1)


def demo_cohort(n: int, seed: int = 7) -> list[CitizenProfile]:
    """``n`` simulated citizens, deterministic for ``seed``; agent ids ``demo-agent-001``…"""
    rng = random.Random(seed)
    cohort = []
    for i in range(1, n + 1):
        programme, scenario = _PLAN[(i - 1) % len(_PLAN)]
        copd = programme == "copd"
        hypertensive = programme == "hypertension"
        baseline = Baseline(
            spo2=rng.uniform(91, 95) if copd else rng.uniform(95, 98),
            pulse=rng.uniform(68, 84),
            weight=rng.uniform(58, 98),
            systolic=rng.uniform(138, 150) if hypertensive else rng.uniform(118, 134),
            diastolic=rng.uniform(84, 92) if hypertensive else rng.uniform(70, 82),
        )
        cohort.append(CitizenProfile(
            agent_id=f"demo-agent-{i:03d}",
            name=f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",
            programme=programme,
            municipality=_MUNICIPALITIES[(i - 1) % len(_MUNICIPALITIES)],
            scenario=scenario,
            devices=tuple(_sim_device(role, i) for role in _ROLES[programme]),
            baseline=baseline,
            seed=rng.randrange(1 << 30),
            adherence=0.6 if scenario == "adherence_gap" else 0.93,
        ))
    return cohort


# -- physiology ----------------------------------------------------------------------------------

# (role, local time of day) the citizen is asked to measure at.
_SCHEDULE: dict[Programme, tuple[tuple[DeviceRole, dtime], ...]] = {
    "copd": (("oximeter", dtime(8, 30)), ("oximeter", dtime(19, 0)), ("bp", dtime(8, 35))),
    "heart_failure": (("scale", dtime(7, 30)), ("bp", dtime(7, 40)), ("oximeter", dtime(7, 45)),
                      ("scale", dtime(19, 30))),
    "hypertension": (("bp", dtime(7, 45)), ("bp", dtime(7, 48)), ("bp", dtime(21, 0)), ("bp", dtime(21, 3))),
}


def _ramp(at: datetime, onset: datetime, days: float) -> float:
    return min(1.0, max(0.0, (at - onset).total_seconds() / (days * 86400)))


def _values(p: CitizenProfile, role: DeviceRole, at: datetime, onset: datetime, rng: random.Random) -> dict[str, float]:
    b = p.baseline
    # A small circadian swing plus day-to-day noise.
    hour = at.astimezone(ZONE).hour + at.astimezone(ZONE).minute / 60
    circadian = math.sin((hour - 8) / 24 * 2 * math.pi)
    d_spo2 = d_pulse = d_weight = d_sys = d_dia = 0.0
    if p.scenario == "copd_exacerbation":
        r = _ramp(at, onset, 3.0)
        d_spo2, d_pulse = -6.5 * r, 24.0 * r
    elif p.scenario == "hf_weight_gain":
        r = _ramp(at, onset, 2.5)
        d_weight, d_pulse = 2.8 * r, 8.0 * r
    elif p.scenario == "hypertensive_episode":
        rise = _ramp(at, onset, 0.25)
        fall = _ramp(at, onset + timedelta(days=2), 0.5)
        r = rise * (1 - fall)
        d_sys, d_dia, d_pulse = 42.0 * r, 22.0 * r, 6.0 * r
    if role == "oximeter":
        spo2 = min(100, round(b.spo2 + d_spo2 + rng.gauss(0, 0.8)))
        pulse = round(b.pulse + d_pulse + 3 * circadian + rng.gauss(0, 3))
        return {"spo2": float(spo2), "pulse": float(pulse)}
    if role == "scale":
        return {"weight": round((b.weight + d_weight + rng.gauss(0, 0.15)) / 0.05) * 0.05}
    systolic = round(b.systolic + d_sys + 4 * circadian + rng.gauss(0, 5))
    diastolic = round(b.diastolic + d_dia + 2 * circadian + rng.gauss(0, 3.5))
    return {
        "systolic": float(systolic),
        "diastolic": float(diastolic),
        "mean_arterial": float(round(diastolic + (systolic - diastolic) / 3)),
        "pulse": float(round(b.pulse + d_pulse + rng.gauss(0, 4))),
    }


_WRONG_CLOCK_EPOCH = datetime(2000, 1, 1)


def _device_time(p: CitizenProfile, role: DeviceRole, at: datetime, live_start: datetime) -> datetime | None:
    if role == "oximeter":
        return None  # the Nonin 3230 sends no timestamp
    if p.scenario == "wrong_clock" and role == "bp":
        return (_WRONG_CLOCK_EPOCH + (at - live_start + timedelta(days=30))).replace(microsecond=0)
    return at.astimezone(ZONE).replace(tzinfo=None, microsecond=0)


def readings_between(
    p: CitizenProfile, start: datetime, end: datetime, *, live_start: datetime
) -> Iterator[SimReading]:
    """The readings ``p`` takes in ``[start, end)`` (aware UTC datetimes), in time order."""
    onset = live_start + timedelta(hours=p.onset_hours)
    gap = (live_start + timedelta(hours=2), live_start + timedelta(days=3, hours=2))
    out: list[SimReading] = []
    day = start.astimezone(ZONE).date() - timedelta(days=1)
    last = end.astimezone(ZONE).date()
    while day <= last:
        for slot, (role, tod) in enumerate(_SCHEDULE[p.programme]):
            rng = random.Random(f"{p.seed}:{day.toordinal()}:{slot}")
            planned = datetime.combine(day, tod, ZONE)
            at = (planned + timedelta(minutes=rng.gauss(0, 20))).astimezone(UTC)
            taken = rng.random() < p.adherence
            if not taken or not start <= at < end:
                continue
            if p.scenario == "adherence_gap" and gap[0] <= at < gap[1]:
                continue
            out.append(SimReading(at, role, _values(p, role, at, onset, rng), _device_time(p, role, at, live_start),
                                  f"plan:{day.toordinal()}:{slot}"))
        day += timedelta(days=1)
    out.sort(key=lambda r: r.at)
    yield from out


def spot_checks_between(
    p: CitizenProfile, start: datetime, end: datetime, *, every_s: float, live_start: datetime
) -> Iterator[SimReading]:
    """Spot checks every ``every_s`` seconds in ``[start, end)``, on the citizen's devices in turn.

    The load mode: on top of the care plan's schedule, a citizen who measures all the time.
    Spot check ``n`` is taken at ``n * every_s`` seconds after the Unix epoch, so a window gives
    the same spot checks however the time is cut, and each has its own key.
    """
    if every_s <= 0:
        raise ValueError(f"spot checks need a positive interval, not {every_s}")
    onset = live_start + timedelta(hours=p.onset_hours)
    n = math.ceil(start.timestamp() / every_s)
    while True:
        at = datetime.fromtimestamp(n * every_s, UTC)
        if at >= end:
            return
        if at >= start:  # float rounding at the window's edge: the earlier window had it
            role = p.devices[n % len(p.devices)].role
            rng = random.Random(f"{p.seed}:spot:{n}")
            yield SimReading(at, role, _values(p, role, at, onset, rng), _device_time(p, role, at, live_start),
                             f"spot:{n}")
        n += 1


def measurement_id(p: CitizenProfile, reading: SimReading, index: int, kind: str) -> uuid.UUID:
    """The id of the ``index``-th measurement (of ``kind``) in ``reading``: a UUIDv7 whose time is
    the reading's and whose other bits are a hash of (citizen, seed, reading key, index, kind).

    A real agent mints a random id at the moment of reading, once. The simulator may generate
    the same reading again (after a restart, also after a SIGKILL between the spool append and
    saving its progress): it must then be the same measurement, with the same id.
    """
    key = reading.key or f"{reading.at.isoformat()}:{reading.role}"
    digest = hashlib.sha256(f"{p.agent_id}:{p.seed}:{key}:{index}:{kind}".encode()).digest()
    ms = int(reading.at.timestamp() * 1000) & ((1 << 48) - 1)
    rand = int.from_bytes(digest[:10], "big")
    value = ms << 80 | 0x7 << 76 | ((rand >> 62) & 0xFFF) << 64 | 0b10 << 62 | (rand & ((1 << 62) - 1))
    return uuid.UUID(int=value)


def characteristic_bytes(device: SimDevice, reading: SimReading) -> bytes:
    v = reading.values
    if device.role == "oximeter":
        return encode.nonin_frame(int(v["spo2"]), int(v["pulse"]))
    if device.role == "scale":
        return encode.weight(v["weight"], at=reading.device_time, user=device.user_index)
    return encode.blood_pressure(v["systolic"], v["diastolic"], v["mean_arterial"], at=reading.device_time,
                                 pulse=v["pulse"], user=device.user_index)


def capture_of(device: SimDevice, reading: SimReading) -> Capture:
    data = characteristic_bytes(device, reading)
    return Capture(device.characteristic, data, reading.at, readings_from(decode(device.characteristic, data)))


def measurements_of(p: CitizenProfile, reading: SimReading) -> list[Measurement]:
    """What the agent records for ``reading``: real characteristic bytes, decoded by
    :mod:`edge_agent.gatt`, turned into measurements by the recorder's own logic, with the
    reading's deterministic ids (:func:`measurement_id`)."""
    device = p.device(reading.role)
    if device is None:
        raise ValueError(f"{p.agent_id} has no {reading.role}")
    identity = Device(address=device.address, model=device.model, manufacturer=device.manufacturer,
                      firmware="sim-1.0")
    ms = to_measurements(capture_of(device, reading), device=identity, zone=ZONE)
    return [m.model_copy(update={"id": measurement_id(p, reading, i, m.kind.value)}) for i, m in enumerate(ms)]


# -- the runner ----------------------------------------------------------------------------------

RecordedHook = Callable[[str, Sequence[Measurement]], None]
"""Called with (agent id, measurements) just before they are appended to the spool."""


class _SimAgent:
    def __init__(self, profile: CitizenProfile, *, broker_url: str, topics: Topics, spool_dir: Path,
                 uplink_options: Mapping[str, Any], spot_every_s: float | None,
                 on_recorded: RecordedHook | None) -> None:
        self.profile = profile
        self.spool = Spool(spool_dir / f"{profile.agent_id}.sqlite")
        options: dict[str, Any] = {"batch_size": 100, "status_interval_s": 60, **uplink_options}
        self.uplink = Uplink(agent_id=profile.agent_id, broker=parse_broker_url(broker_url), topics=topics,
                             spool=self.spool, **options)
        self.uplink_started = False
        self.marker = spool_dir / f"{profile.agent_id}.simulated-until"
        self.spot_every_s = spot_every_s
        self.on_recorded = on_recorded
        self.live_start = datetime.now(UTC)
        self.cursor = self.live_start
        """Everything the citizen measured before this is in the spool."""
        self.resumed_at = self.live_start
        self.full = False

    # -- progress, kept beside the spool -------------------------------------------------------

    def load_progress(self) -> tuple[datetime | None, datetime | None]:
        """(the simulated timeline's live start, how far the last run got), as far as known."""
        try:
            text = self.marker.read_text().strip()
        except OSError:
            return None, None
        try:
            state = json.loads(text)
            return _instant(state.get("live_start")), _instant(state.get("until"))
        except (ValueError, AttributeError):
            pass
        try:  # an older simulator wrote only the time it got to
            return None, _instant(text)
        except ValueError:
            log.warning("simulation %s: ignoring unreadable progress file %s", self.profile.agent_id, self.marker)
            return None, None

    def save_progress(self) -> None:
        tmp = self.marker.with_name(self.marker.name + ".tmp")
        tmp.write_text(json.dumps({"live_start": self.live_start.isoformat(), "until": self.cursor.isoformat()}))
        tmp.replace(self.marker)

    # -- readings -----------------------------------------------------------------------------

    def readings(self, start: datetime, end: datetime) -> list[SimReading]:
        out = list(readings_between(self.profile, start, end, live_start=self.live_start))
        if self.spot_every_s and end > self.live_start:
            # Continuous spot checks belong to the live part, not to the backfilled history.
            out += spot_checks_between(self.profile, max(start, self.live_start), end, every_s=self.spot_every_s,
                                       live_start=self.live_start)
            out.sort(key=lambda r: r.at)
        return out

    def take(self, readings: list[SimReading], until: datetime) -> int:
        """Spool ``readings`` (in time order), then move the cursor to ``until``. A full spool
        refuses loudly and the cursor stops at the refused reading: the simulated citizen tries
        it again on the next turn, with the same ids. Returns how many measurements were spooled."""
        n = 0
        for r in readings:
            ms = measurements_of(self.profile, r)
            if self.on_recorded is not None:
                self.on_recorded(self.profile.agent_id, ms)
            try:
                self.spool.append_many(ms)
            except SpoolFullError as exc:
                if not self.full:
                    log.error("simulation %s: %s; the simulated citizen waits for the spool to drain",
                              self.profile.agent_id, exc)
                self.full = True
                self.cursor = max(self.cursor, r.at)
                return n
            n += len(ms)
        self.full = False
        self.cursor = max(self.cursor, until)
        return n

    def start_uplink(self) -> None:
        if not self.uplink_started:
            self.uplink_started = True
            self.uplink.start()


def _instant(value: object) -> datetime | None:
    if value is None:
        return None
    at = datetime.fromisoformat(str(value))
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def run_simulation(
    cohort: list[CitizenProfile],
    *,
    broker_url: str,
    topics: Topics,
    speed: float,
    stop: threading.Event,
    history_days: int = 14,
    spool_dir: Path,
    screen_port: int | None = None,
    screen_host: str = "127.0.0.1",
    screen_agent: str | None = None,
    lead_hours: float = 72.0,
    spot_check_every_s: float | None = None,
    connect_when_caught_up: bool = False,
    uplink_options: Mapping[str, Any] | None = None,
    on_recorded: RecordedHook | None = None,
) -> None:
    """Backfill ``history_days`` of history, then run live at ``speed``× until ``stop`` is set.

    "Live" starts ``lead_hours`` in the past and runs ``speed``× faster than real time until it
    reaches the present, then keeps pace with the wall clock: a reading is never stamped in
    the future (the backend would rightly flag it), and a demo at 600× shows three days of a
    deterioration unfold in about seven minutes. With ``spot_check_every_s`` every citizen also
    takes a spot check that often (simulated seconds) from the live start on: a continuous load
    that goes on at the wall clock once the replay has caught up.

    Blocks; run it in a thread. Each simulated agent has its own spool file in ``spool_dir`` and
    its own MQTT client (own Last Will and status); ``uplink_options`` are passed on to its
    :class:`~edge_agent.uplink.Uplink`. With ``connect_when_caught_up`` the agents stay offline
    until the replay reaches the present (a tablet that was away while the citizen measured).
    A restart resumes each citizen where the last run stopped, on the same simulated timeline,
    instead of sending anything again under new ids. With ``screen_port``, the home screen of
    ``screen_agent`` (default: the first citizen) is served there.
    """
    from edge_agent.screen.server import ScreenServer, start_screen

    spool_dir.mkdir(parents=True, exist_ok=True)
    agents = [
        _SimAgent(p, broker_url=broker_url, topics=topics, spool_dir=spool_dir, uplink_options=uplink_options or {},
                  spot_every_s=spot_check_every_s, on_recorded=on_recorded)
        for p in cohort
    ]
    screen: ScreenServer | None = None
    if screen_port is not None and agents:
        shown = next((a for a in agents if a.profile.agent_id == screen_agent), None)
        if shown is None:
            if screen_agent is not None:
                log.warning("simulation: no simulated agent %s; showing %s on the home screen", screen_agent,
                            agents[0].profile.agent_id)
            shown = agents[0]
        uplink = shown.uplink
        screen = start_screen(shown.spool, connected=lambda: uplink.connected, zone=ZONE, host=screen_host,
                              port=screen_port)
    fresh_live_start = datetime.now(UTC) - timedelta(hours=lead_hours)
    try:
        backfilled = resumed = 0
        for a in agents:
            live_start, until = a.load_progress()
            resumed += until is not None
            a.live_start = live_start or fresh_live_start
            a.cursor = until or a.live_start - timedelta(days=history_days)
            if a.cursor < a.live_start:
                backfilled += a.take(a.readings(a.cursor, a.live_start), a.live_start)
                a.save_progress()
            a.resumed_at = a.cursor
            if not connect_when_caught_up:
                a.start_uplink()
        log.info("simulation: %d citizens (%d resumed), %d measurements of history, then live at %.0fx%s",
                 len(agents), resumed, backfilled, speed,
                 f" with a spot check every {spot_check_every_s:g} s" if spot_check_every_s else "")
        tick = 1.0 if not spot_check_every_s else min(1.0, max(0.1, spot_check_every_s / speed))
        real_start = time.monotonic()
        while not stop.is_set():
            wall = datetime.now(UTC)
            elapsed = timedelta(seconds=(time.monotonic() - real_start) * speed)
            for a in agents:
                sim_now = min(wall, a.resumed_at + elapsed)
                if sim_now > a.cursor and a.take(a.readings(a.cursor, sim_now), sim_now):
                    a.save_progress()
                if sim_now >= wall:
                    a.start_uplink()
            # Readings are minutes apart in simulated time: waking once a second is plenty
            # (more often only for spot checks less than a second apart).
            stop.wait(tick)
    finally:
        if screen is not None:
            screen.stop()
        for a in agents:
            a.uplink.stop()
        for a in agents:
            with contextlib.suppress(OSError):
                a.save_progress()
            a.spool.close()


@contextlib.contextmanager
def running_simulation(
    *, broker_url: str, topics: Topics, citizens: int, speed: float, seed: int = 7, history_days: int = 14,
    spool_dir: Path | None = None, screen_port: int | None = None, screen_agent: str | None = None,
    lead_hours: float = 72.0, spot_check_every_s: float | None = None,
    uplink_options: Mapping[str, Any] | None = None, on_recorded: RecordedHook | None = None,
) -> Iterator[list[CitizenProfile]]:
    """Run :func:`run_simulation` for ``demo_cohort(citizens, seed)`` in a background thread."""
    cohort = demo_cohort(citizens, seed)
    stop = threading.Event()
    workdir = spool_dir or Path(tempfile.mkdtemp(prefix="nearcare-sim-"))
    thread = threading.Thread(
        target=run_simulation, args=(cohort,), name="simulation", daemon=True,
        kwargs={"broker_url": broker_url, "topics": topics, "speed": speed, "stop": stop,
                "history_days": history_days, "spool_dir": workdir, "screen_port": screen_port,
                "screen_agent": screen_agent, "lead_hours": lead_hours, "spot_check_every_s": spot_check_every_s,
                "uplink_options": uplink_options, "on_recorded": on_recorded},
    )
    thread.start()
    try:
        yield cohort
    finally:
        stop.set()
        thread.join(30)
        if spool_dir is None:
            shutil.rmtree(workdir, ignore_errors=True)
