"""The PHD upload endpoint: a third-party gateway's transaction Bundle is attributed by the
backend and stored once through ingest's writer (handed to the rules like any reading), a re-sent
Bundle stores nothing new, an unknown device is held with its reason, and only the gateway's own
token and system id are accepted."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from psycopg_pool import ConnectionPool

from backend.embedded import free_port, wait_for
from backend.fhir.export import gateway_system_id, patient_bundle
from backend.fhir.upload import parse_bundle, register_gateway, router
from vitals.wire import Topics

CUFF = "00:09:1F:80:4B:11"
STRANGER = "00:09:1F:80:4B:99"


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as c:
        yield c


@pytest.fixture
def client(database_url: str) -> Iterator[httpx.Client]:
    """The upload router in a real HTTP server on loopback (uvicorn in a thread)."""
    import uvicorn

    app = FastAPI()
    app.include_router(router)
    pool = ConnectionPool(database_url, min_size=1, max_size=2, open=True)
    app.state.runtime = SimpleNamespace(pool=pool)
    app.state.settings = SimpleNamespace(topics=Topics(root=f"test/{uuid.uuid4().hex[:6]}"))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), timeout=60, what="upload server start")
        assert server.started
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            yield c
    finally:
        server.should_exit = True
        thread.join(20)
        pool.close()


def _gateway_bundle(agent: str, ref: str, at: datetime) -> dict[str, Any]:
    """What a PHD gateway would send: nearcare's own PHD export is one (PhgDevice, PhdDevices,
    conditional creates on the PHD identifier)."""

    def reading(kind: str, comps: dict[str, float], device: int) -> dict[str, Any]:
        return {"id": uuid.uuid4(), "kind": kind, "components": comps, "measured_at": at, "agent_received_at": at,
                "quality": [], "flags": [], "device_clock_trusted": True, "agent_id": agent, "device_id": device}

    return patient_bundle(
        patient={"external_ref": ref, "name": "Gateway Citizen"},
        readings=[
            reading("blood_pressure", {"systolic": 151.0, "diastolic": 94.0}, 1),
            reading("pulse", {"pulse": 77.0}, 1),
            reading("weight", {"weight": 80.4}, 2),
        ],
        devices={1: {"address": CUFF, "model": "BP-X", "manufacturer": "Third", "firmware": "2"},
                 2: {"address": STRANGER, "model": "Scale-Y", "manufacturer": "Third", "firmware": "1"}},
        agents={agent: {"version": "thirdparty-1.0"}},
    )


def test_a_gateway_bundle_is_stored_once_and_unknown_devices_held(conn: psycopg.Connection[Any],
                                                                 client: httpx.Client) -> None:
    ref = f"gw-{uuid.uuid4().hex[:8]}"
    pid = conn.execute("INSERT INTO patients (external_ref, name, programme, municipality) VALUES (%s, 'G',"
                       " 'hypertension', 'Aarhus') RETURNING id", (ref,)).fetchone()[0]
    agent = f"phg-{uuid.uuid4().hex[:8]}"
    conn.execute("INSERT INTO agents (id, patient_id) VALUES (%s, %s)", (agent, pid))
    conn.execute("INSERT INTO devices (agent_id, address, model) VALUES (%s, %s, 'BP-X')", (agent, CUFF))
    token = register_gateway(conn, agent_id=agent, sysid=gateway_system_id(agent))
    bundle = _gateway_bundle(agent, ref, datetime.now(UTC) - timedelta(minutes=3))
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}

    first = client.post("/fhir/phd", json=bundle, headers=auth)
    assert first.status_code == 200, first.text
    statuses = sorted(e["response"]["status"] for e in first.json()["entry"])
    assert statuses == ["201 Created", "201 Created", "202 Accepted"]
    held = next(e for e in first.json()["entry"] if e["response"]["status"] == "202 Accepted")
    assert "unknown_device" in held["response"]["outcome"]["issue"][0]["diagnostics"]

    stored = conn.execute("SELECT kind, components FROM measurements WHERE patient_id = %s ORDER BY kind",
                          (pid,)).fetchall()
    assert [k for k, _ in stored] == ["blood_pressure", "pulse"]
    assert stored[0][1]["systolic"] == 151.0
    # Handed to the rules exactly as ingest hands a reading over (the worklist's path).
    inbox = conn.execute("SELECT count(*) FROM rules_inbox WHERE patient_id = %s", (pid,)).fetchone()[0]
    assert inbox == 2
    reasons = conn.execute("SELECT reason FROM rejected_readings WHERE agent_id = %s", (agent,)).fetchall()
    assert len(reasons) == 1 and reasons[0][0].startswith("unknown_device")

    again = client.post("/fhir/phd", json=bundle, headers=auth)
    assert again.status_code == 200
    assert sorted(e["response"]["status"] for e in again.json()["entry"]) == ["200 OK", "200 OK", "202 Accepted"]
    assert conn.execute("SELECT count(*) FROM measurements WHERE patient_id = %s", (pid,)).fetchone()[0] == 2
    assert conn.execute("SELECT count(*) FROM rejected_readings WHERE agent_id = %s", (agent,)).fetchone()[0] == 1

    # Someone else's token, no token, a bundle naming another gateway, and not a bundle at all.
    other = f"phg-{uuid.uuid4().hex[:8]}"
    conn.execute("INSERT INTO agents (id, patient_id) VALUES (%s, %s)", (other, pid))
    other_token = register_gateway(conn, agent_id=other, sysid=gateway_system_id(other))
    assert client.post("/fhir/phd", json=bundle, headers={"Authorization": f"Bearer {other_token}"}).status_code == 403
    assert client.post("/fhir/phd", json=bundle).status_code == 401
    assert client.post("/fhir/phd", json=bundle, headers={"Authorization": "Bearer nope"}).status_code == 401
    bad = client.post("/fhir/phd", json={"resourceType": "Patient"}, headers=auth)
    assert bad.status_code == 400 and bad.json()["resourceType"] == "OperationOutcome"


def test_parse_reads_codes_units_and_status() -> None:
    at = datetime(2026, 3, 2, 8, 15, tzinfo=UTC)
    bundle = _gateway_bundle("phg-unit", "P-1", at)
    obs = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"]
    weight = next(o for o in obs if o["code"]["coding"][0]["code"] == "188736")
    weight["valueQuantity"] = {"value": 180.0, "unit": "lb", "system": "http://unitsofmeasure.org", "code": "[lb_av]"}
    weight["status"] = "preliminary"
    parsed = parse_bundle(bundle, now=at)
    by_kind = {m.kind.value: m for _, m in parsed.measurements}
    assert by_kind["weight"].values["weight"] == pytest.approx(81.647, abs=0.001)
    assert by_kind["weight"].quality == ("measurement_ongoing",)
    assert by_kind["blood_pressure"].values == {"systolic": 151.0, "diastolic": 94.0}
    assert by_kind["pulse"].device.address == CUFF
    assert parsed.gateway_sysids == {gateway_system_id("phg-unit")}
    # The same Observation always becomes the same reading id (a re-sent bundle is a duplicate).
    again = parse_bundle(bundle, now=at + timedelta(hours=1))
    assert [m.id for _, m in again.measurements] == [m.id for _, m in parsed.measurements]
    assert [s.reason for s in parsed.skipped] == ["Patient is not a measurement"]
