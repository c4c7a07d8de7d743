"""Issue 14's integrator check, end to end: raw GATT bytes -> the agent's decoders and clock
judgement -> ingest's writer -> PostgreSQL -> ``export_patient`` (PHD) and the FUT connector
(against the FUT stand-in), then the 47 rules of ``conformance_rules`` element by element, and
every resource through the R4B models."""

from __future__ import annotations

import json
import os
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.parameters import Parameters

from backend.accounts.access import Patient
from backend.fhir.cpr import CprKeys, store_cpr
from backend.fhir.fut import FutLink
from backend.fhir.query import export_patient
from backend.fut import FutClient, FutConfig, enqueue_new, link_patient, send_due
from edge_agent.gatt import decode, readings_from
from edge_agent.recorder import measured_at
from tests.backend.fhir import conformance_rules as rules
from tests.backend.fut.fake_fut import FakeFut

ZONE = ZoneInfo("Europe/Copenhagen")
# Whatever cannot hold by design (say why in the report). None left: the CPR number is kept
# sealed (backend/fhir/cpr.py) and opened into the export's Patient.
KNOWN_UNMET: set[str] = set()


def random_cpr() -> str:
    """A CPR-shaped number no other test plants (DDMMYYSSSS)."""
    r = secrets.SystemRandom()
    return f"{r.randint(1, 28):02d}{r.randint(1, 12):02d}{r.randint(0, 99):02d}{r.randint(0, 9999):04d}"


def _sfloat(v: int) -> bytes:
    return (v & 0x0FFF).to_bytes(2, "little")


def _dt(t: datetime) -> bytes:
    return t.year.to_bytes(2, "little") + bytes([t.month, t.day, t.hour, t.minute, t.second])


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as c:
        yield c


def _device(conn: psycopg.Connection[Any], agent: str, address: str, model: str, maker: str, fw: str) -> int:
    return int(conn.execute(
        "INSERT INTO devices (agent_id, address, model, manufacturer, firmware) VALUES (%s, %s, %s, %s, %s)"
        " RETURNING id", (agent, address, model, maker, fw)).fetchone()[0])


@dataclass
class Scenario:
    patient: Patient
    roles: dict[str, str]
    device_local_time: dict[str, str]
    link: FutLink
    bodies: list[dict[str, Any]]
    states: dict[str, int]
    submitted: int
    cpr_keys: CprKeys
    cpr: str


def build_scenario(conn: psycopg.Connection[Any]) -> Scenario:
    """A citizen with a cuff, an oximeter, a scale and a glucose meter; readings decoded from raw
    GATT bytes, judged by the agent's clock rules and stored by ingest's writer; one held reading;
    every measurement through the FUT connector to the FUT stand-in."""
    from backend.ingest.core import AcceptedReading, Decision
    from backend.ingest.writer import prepare, write_batch

    ref = f"conf-{uuid.uuid4().hex[:8]}"
    pid = conn.execute("INSERT INTO patients (external_ref, name, programme, municipality) VALUES (%s, 'Karen',"
                       " 'heart_failure', 'Aarhus') RETURNING id", (ref,)).fetchone()[0]
    keys = CprKeys(os.urandom(32))
    cpr = random_cpr()
    store_cpr(conn, keys, patient_id=pid, cpr=cpr)
    agent = f"conf-agent-{uuid.uuid4().hex[:6]}"
    conn.execute("INSERT INTO agents (id, patient_id, version) VALUES (%s, %s, '0.9.1')", (agent, pid))
    cuff = _device(conn, agent, "00:09:1F:80:4B:01", "UA-651BLE", "A&D", "1.02")
    oxi = _device(conn, agent, "00:1C:05:FE:28:33", "Nonin 3230", "Nonin", "2.1")
    scale = _device(conn, agent, "00:09:1F:80:4B:02", "UC-352BLE", "A&D", "1.10")
    meter = _device(conn, agent, "00:09:1F:80:4B:03", "Contour", "Ascensia", "3.0")

    received = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
    local = received.astimezone(ZONE).replace(tzinfo=None)
    roles: dict[str, str] = {}
    accepted: list[AcceptedReading] = []

    def take(part: str | None, device: int, characteristic: str, data: bytes, kind: str | None = None,
             flags: tuple[str, ...] = ()) -> None:
        for r in readings_from(decode(characteristic, data)):
            if kind is not None and r.kind.value != kind:
                continue
            at, trusted, extra = measured_at(r, received, ZONE)
            quality = r.quality + extra
            if r.values.get(next(iter(r.values))) is None:
                quality += ("value_missing",)
            rid = uuid.uuid4()
            accepted.append(AcceptedReading(
                rid, at, pid, agent, device, r.kind.value, next(iter(r.values.values())), dict(r.values),
                {"spo2": "%", "pulse": "/min", "blood_pressure": "mm[Hg]", "weight": "kg"}[r.kind.value], trusted,
                received, quality=quality, flags=flags, raw_characteristic=characteristic, raw=data))
            name = part or ("cuff_pulse" if r.kind.value == "pulse" else "bp")
            roles[name] = str(rid)

    # A&D cuff: 142/91 (MAP 108), its clock, pulse 72, "irregular pulse" status bit.
    take(None, cuff, "2A35", bytes([0x16]) + _sfloat(142) + _sfloat(91) + _sfloat(108) + _dt(local)
         + _sfloat(72) + (0x0004).to_bytes(2, "little"))
    # PLX spot check with a clock years off (replaced by the receipt time), "questionable", "low perfusion".
    plx_old = datetime(2019, 1, 1, 12, 0, 0)
    plx = bytes([0x07]) + _sfloat(93) + _sfloat(88) + _dt(plx_old) + (1 << 14).to_bytes(2, "little") \
        + (1 << 5).to_bytes(3, "little")
    take("spo2_clock", oxi, "2A5E", plx, "spo2")
    take("oxi_pulse", oxi, "2A5E", plx, "pulse")
    # Flagged invalid, flagged test data, a NaN SpO2.
    take("invalid", oxi, "2A5E", bytes([0x02]) + _sfloat(80) + _sfloat(60) + (1 << 15).to_bytes(2, "little"), "spo2")
    take("test_data", oxi, "2A5E", bytes([0x02]) + _sfloat(97) + _sfloat(61) + (1 << 11).to_bytes(2, "little"),
         "spo2")
    take("missing", oxi, "2A5E", bytes([0x00]) + (0x07FF).to_bytes(2, "little") + _sfloat(70), "spo2")
    # Scale: 81.2 kg; and one the backend flagged future_time.
    take("weight", scale, "2A9D", bytes([0x00]) + (16240).to_bytes(2, "little"))
    take("future", scale, "2A9D", bytes([0x00]) + (16260).to_bytes(2, "little"), flags=("future_time",))
    gid = uuid.uuid4()
    accepted.append(AcceptedReading(gid, received, pid, agent, meter, "glucose", 6.1, {"glucose": 6.1}, "mmol/L",
                                    False, received))
    roles["glucose"] = str(gid)
    prepare(conn)
    write_batch(conn, [Decision(agent_id=agent, accepted=tuple(accepted))], received_at=received)
    held = uuid.uuid4()
    conn.execute(
        "INSERT INTO rejected_readings (id, measured_at, patient_id, agent_id, device_address, kind, components,"
        " unit, reason, envelope) VALUES (%s, %s, %s, %s, '00:1C:05:FE:28:33', 'pulse', %s, '/min',"
        " 'implausible_value', %s)",
        (held, received, pid, agent, json.dumps({"pulse": 420.0}), json.dumps({"quality": []})))
    roles["held"] = str(held)

    # FUT side: the real connector against the FUT stand-in.
    n = uuid.uuid4().int % 10**6
    link = FutLink(f"https://fut.test/fhir/Patient/{n}", f"https://fut.test/fhir/EpisodeOfCare/{n}",
                   f"https://fut.test/fhir/ServiceRequest/{n}", "2", f"https://fut.test/fhir/Device/{n}")
    fake = FakeFut(known={link.patient, link.episode_of_care, link.service_request, link.device}).start()
    client = FutClient(FutConfig(base_url=fake.base_url, oauth=fake.oauth(), timeout_s=5, backoff_base_s=0.05,
                                 backoff_cap_s=0.2, evaluation_wait_s=0))
    try:
        link_patient(conn, patient_id=pid, link=link, submit_from=received - timedelta(minutes=1))
        enqueue_new(conn)
        send_due(conn, client, limit=50)
    finally:
        client.close()
        fake.stop()
    states = dict(conn.execute("SELECT state, count(*) FROM fut_outbox WHERE patient_id = %s GROUP BY state",
                               (pid,)).fetchall())
    return Scenario(Patient(pid, ref, "Karen", None, "heart_failure", "Aarhus", None, True), roles,
                    {"spo2_clock": plx_old.isoformat()}, link, fake.bodies, states, len(accepted), keys, cpr)


def export_of(sc: Scenario, bundle: dict[str, Any], submissions: list[dict[str, Any]]) -> rules.Export:
    link = sc.link
    return rules.Export(
        bundle=bundle, submissions=submissions, roles=sc.roles, device_local_time=sc.device_local_time,
        fut_refs={"patient": link.patient, "episode_of_care": link.episode_of_care,
                  "service_request": link.service_request, "device": link.device},
    )


def test_the_47_rules(conn: psycopg.Connection[Any]) -> None:
    sc = build_scenario(conn)
    # Glucose has no FUT code and test data is not the citizen's: kept with the reason, not sent.
    assert sc.states == {"sent": sc.submitted - 2, "not_submittable": 2}
    for body in sc.bodies:
        Parameters.model_validate(body)
    bundle = export_patient(conn, patient=sc.patient, include_rejected=True, zone=ZONE, cpr_keys=sc.cpr_keys)
    Bundle.model_validate(bundle)
    (patient,) = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
    assert {"use": "official", "system": "urn:oid:1.2.208.176.1.2", "value": sc.cpr} in patient["identifier"]
    # FUT gets only its own Patient reference, never the number.
    assert sc.cpr not in json.dumps(sc.bodies)
    export = export_of(sc, bundle, sc.bodies)
    result = rules.check(export)
    assert len(result) == 47
    failing = {rid: why for rid, why in result.items() if why is not None}
    print(f"\nconformance: {47 - len(failing)} of 47 rules pass; not met: {failing}")
    assert set(failing) == KNOWN_UNMET, failing


def test_the_rules_can_fail() -> None:
    """Each rule family catches a broken export (the rules are not checks that cannot fail)."""
    bp = {
        "resourceType": "Observation", "status": "final", "code": {"coding": [{"system": rules.LOINC, "code": "x"}]},
        "identifier": [{"system": "urn:ietf:rfc:3986", "value": "urn:uuid:1"}],
    }
    x = rules.Export(bundle={"entry": [{"fullUrl": "urn:uuid:1", "resource": bp, "request": {}}]},
                     submissions=[{"resourceType": "Bundle", "entry": [{"resource": bp}]}], roles={"bp": "1"})
    result = rules.check(x)
    assert all(result[r] is not None for r in ("R5", "R7", "P1", "P2", "P3", "P6", "F1", "F10"))
