"""The PHD upload through the real app (all roles, under uvicorn): a third-party gateway's low
SpO2 is stored, evaluated by the rules, and is on the nurse's worklist as a red row; sending the
Bundle again changes nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg

from backend.embedded import wait_for
from backend.fhir.export import gateway_system_id, patient_bundle
from backend.fhir.upload import register_gateway
from tests.backend.web._support import api_token


def test_a_gateway_reading_reaches_the_worklist_once(live: Any, world: Any, client: httpx.Client,
                                                     database_url: str) -> None:
    at = datetime.now(UTC) - timedelta(minutes=1)
    bundle = patient_bundle(
        patient={"external_ref": world.patient_ref, "name": "x"},
        readings=[{"id": uuid.uuid4(), "kind": "spo2", "components": {"spo2": 80.0}, "measured_at": at,
                   "agent_received_at": at, "quality": [], "flags": [], "device_clock_trusted": True,
                   "agent_id": world.agent_id, "device_id": 1}],
        devices={1: {"address": "AA:BB:CC:DD:EE:01", "model": "Oximeter", "manufacturer": "Third", "firmware": "9"}},
    )
    with psycopg.connect(database_url, autocommit=True) as conn:
        token = register_gateway(conn, agent_id=world.agent_id, sysid=gateway_system_id(world.agent_id))
        gateway = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
        first = client.post("/fhir/phd", json=bundle, headers=gateway)
        assert first.status_code == 200, first.text
        assert [e["response"]["status"] for e in first.json()["entry"]] == ["201 Created"]

        nurse = {"Authorization": f"Bearer {api_token(client, world.nurse)}"}

        def red_row() -> dict[str, Any] | None:
            rows = client.get("/api/v1/worklist", headers=nurse).json()["rows"]
            return next((r for r in rows if r["patient_id"] == world.patient_id and r["worst_severity"] == "red"),
                        None)

        row = wait_for(red_row, timeout=30, what="the gateway's SpO2 80 % as a red worklist row")
        assert row["patient_ref"] == world.patient_ref

        again = client.post("/fhir/phd", json=bundle, headers=gateway)
        assert [e["response"]["status"] for e in again.json()["entry"]] == ["200 OK"]
        n = conn.execute("SELECT count(*) FROM measurements WHERE patient_id = %s AND kind = 'spo2'",
                         (world.patient_id,)).fetchone()[0]
        assert n == 1
