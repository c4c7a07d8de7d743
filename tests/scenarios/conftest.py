"""A running platform for scenario tests: the real broker, the real ingest service, and the
alerting service on a settable clock. Citizens come from the simulator's pure generator."""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest

from backend.embedded import wait_for
from vitals.kinds import MeasurementKind, spec
from vitals.wire import Device, Envelope, Measurement, new_measurement_id


def measurements_of(profile: Any, reading: Any) -> list[Measurement]:
    """A simulator reading as the agent would send it: one measurement per kind."""
    device = profile.device(reading.role)
    v = reading.values
    common = {"measured_at": reading.at, "device_clock_trusted": True, "received_at": reading.at,
              "device": Device(address=device.address, model=device.model)}
    out = []
    if reading.role == "oximeter":
        out.append(Measurement(id=new_measurement_id(reading.at.timestamp()), kind=MeasurementKind.SPO2,
                               values={"spo2": v["spo2"]}, unit="%", **common))
        out.append(Measurement(id=new_measurement_id(reading.at.timestamp()), kind=MeasurementKind.PULSE,
                               values={"pulse": v["pulse"]}, unit="/min", **common))
    elif reading.role == "scale":
        out.append(Measurement(id=new_measurement_id(reading.at.timestamp()), kind=MeasurementKind.WEIGHT,
                               values={"weight": v["weight"]}, unit="kg", **common))
    else:
        bp = {k: v[k] for k in ("systolic", "diastolic", "mean_arterial")}
        out.append(Measurement(id=new_measurement_id(reading.at.timestamp()), kind=MeasurementKind.BLOOD_PRESSURE,
                               values=bp, unit=spec("blood_pressure").unit, **common))
    return out


class Platform:
    def __init__(self, settings: Any, clock: Any, notifier: Any = None) -> None:
        from backend import roles

        self.settings = settings
        self.clock = clock
        # ingest and the rules, as `backend run` composes them (the scheduled jobs run by hand here).
        self.parts = roles.open_parts(settings, roles=(roles.INGEST, roles.RULES), clock=clock, notifier=notifier)
        self.pool = self.parts.pool
        self.runtime = roles.start(self.parts, (roles.INGEST, roles.RULES),
                                   ingest_client_id=f"scn-{secrets.token_hex(4)}")
        ok, checks = roles.wait_ready(self.runtime)
        assert ok, f"ingest and rules not ready: {checks}"
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        b = settings.broker
        self.client.connect(b.host, b.port, keepalive=30)
        self.client.loop_start()
        wait_for(self.client.is_connected, what="publisher connected")

    def conn(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.settings.database_url, autocommit=True)

    def enrol(self, profile: Any, *, department: str | None = None) -> int:
        from backend import registry
        from backend.registry.demo import seed_teams

        with self.conn() as c:
            seed_teams(c)
            p = registry.create_patient(c, external_ref=f"ref-{profile.agent_id}", name=profile.name,
                                        programme=profile.programme, municipality=profile.municipality,
                                        department=department)
            registry.enrol_agent(c, agent_id=profile.agent_id, patient_id=p.id)
            for d in profile.devices:
                registry.register_device(c, agent_id=profile.agent_id, address=d.address, model=d.model)
        self.ingest_refresh()
        return int(p.id)

    def ingest_refresh(self) -> None:
        # ingest caches the registry; give it a moment to see a new agent (it reloads on version change)
        time.sleep(0.05)

    def send(self, profile: Any, readings: Sequence[Any], *, at: datetime | None = None) -> list[str]:
        """Publish readings as one envelope through the broker; wait until alerting has evaluated them."""
        ms = [m for r in readings for m in measurements_of(profile, r)]
        if at is not None:
            self.clock.set(at)
        env = Envelope(agent_id=profile.agent_id, sent_at=ms[-1].received_at, measurements=tuple(ms))
        info = self.client.publish(self.settings.topics.measurements(profile.agent_id), env.to_json(), qos=1)
        info.wait_for_publish(10)
        ids = [str(m.id) for m in ms]
        with self.conn() as c:
            sql = "SELECT count(*) FROM reading_evaluations WHERE measurement_id = ANY(%s::uuid[])"
            wait_for(lambda: c.execute(sql, (ids,)).fetchone()[0] == len(ids), what=f"{len(ids)} readings evaluated")
        return ids

    def close(self) -> None:
        if self.pool.closed:
            return
        self.client.disconnect()
        self.client.loop_stop()
        from backend import roles

        roles.stop(self.runtime)


@pytest.fixture
def make_platform(settings: Any) -> Iterator[Callable[..., Platform]]:
    made: list[Platform] = []

    def make(clock: Any, notifier: Any = None) -> Platform:
        p = Platform(settings, clock, notifier)
        made.append(p)
        return p

    try:
        yield make
    finally:
        for p in reversed(made):
            p.close()


@pytest.fixture
def citizen() -> Callable[..., Any]:
    """A simulator citizen with a unique agent id (the session's database is shared)."""
    from edge_agent.simulate import demo_cohort

    def make(scenario: str, **baseline: float) -> Any:
        p = next(c for c in demo_cohort(8) if c.scenario == scenario)
        b = dataclasses.replace(p.baseline, **baseline)
        return dataclasses.replace(p, agent_id=f"scn-{secrets.token_hex(4)}", baseline=b)

    return make
