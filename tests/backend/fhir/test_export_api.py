"""The FHIR export endpoint of the live app: readings held at ingest are in the Bundle as
entered-in-error Observations with their reason when the consumer asks (``rejected=true``), and
not otherwise."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg

from tests.backend.web._support import api_token


def test_held_readings_are_exported_on_request(live: Any, world: Any, client: httpx.Client,
                                               database_url: str) -> None:
    held = uuid.uuid4()
    at = datetime.now(UTC) - timedelta(minutes=2)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO rejected_readings (id, measured_at, patient_id, agent_id, device_address, kind, components,"
            " unit, reason, envelope) VALUES (%s, %s, %s, %s, 'AA:BB:CC:DD:EE:01', 'spo2', %s, '%%',"
            " 'implausible_value: spo2 140 outside 50-100 %%', %s)",
            (held, at, world.patient_id, world.agent_id, json.dumps({"spo2": 140.0}), json.dumps({"quality": []})),
        )
    nurse = {"Authorization": f"Bearer {api_token(client, world.nurse)}"}
    url = f"/api/v1/patients/{world.patient_id}/fhir"

    def observation(bundle: dict[str, Any]) -> dict[str, Any] | None:
        return next((e["resource"] for e in bundle["entry"] if any(
            i.get("value") == f"urn:uuid:{held}" for i in e["resource"].get("identifier") or [])), None)

    plain = client.get(url, headers=nurse)
    assert plain.status_code == 200 and observation(plain.json()) is None
    asked = client.get(url, params={"rejected": "true"}, headers=nurse)
    assert asked.status_code == 200
    obs = observation(asked.json())
    assert obs is not None and obs["status"] == "entered-in-error"
    assert obs["valueQuantity"]["value"] == 140.0
    assert {"system": "urn:nearcare:hold-reason", "code": "implausible_value"} in obs["meta"]["tag"]
    assert any("implausible_value: spo2 140" in n["text"] for n in obs["note"])
