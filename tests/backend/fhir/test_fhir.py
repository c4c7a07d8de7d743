"""The FHIR R4 export: a transaction Bundle that validates with fhir.resources, with the
vital-signs and PHD IG codes, devices, gateway and dedup identifiers."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.observation import Observation

from backend.fhir import FhirExportError, patient_bundle

T0 = datetime(2026, 3, 2, 8, 15, tzinfo=UTC)
BP_ID = uuid.UUID("0190a1b2-0000-7000-8000-000000000001")
SPO2_ID = uuid.UUID("0190a1b2-0000-7000-8000-000000000002")


def _bundle(readings: list[dict[str, Any]]) -> dict[str, Any]:
    return patient_bundle(
        patient={"external_ref": "P-0001", "name": "Karen Jensen", "birth_date": None},
        readings=readings,
        devices={
            7: {
                "address": "00:09:1F:80:4B:01",
                "model": "UA-651BLE",
                "manufacturer": "A&D",
                "serial": "5140100123",
                "firmware": "1.02",
            }
        },
        now=T0,
    )


def _profiles(entry: dict[str, Any]) -> list[str]:
    return list(entry["resource"].get("meta", {}).get("profile", []))


def _obs(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """The measurement Observations (not the status bits or coincident-timestamp ones)."""
    return [
        e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Observation"
        and any(p.endswith(("PhdNumericObservation", "PhdCompoundNumericObservation")) for p in _profiles(e))
    ]


def _reading(rid: uuid.UUID, kind: str, comps: dict[str, Any], device_id: int | None = 7) -> dict[str, Any]:
    return {
        "id": rid,
        "kind": kind,
        "components": comps,
        "measured_at": T0,
        "agent_received_at": T0,
        "quality": [],
        "device_clock_trusted": True,
        "agent_id": "tablet-0001",
        "device_id": device_id,
    }


def test_blood_pressure_and_spo2_codes_units_and_devices() -> None:
    b = _bundle(
        [
            _reading(BP_ID, "blood_pressure", {"systolic": 142.0, "diastolic": 91.0, "mean_arterial": 108.0}),
            _reading(SPO2_ID, "spo2", {"spo2": 93.0}, device_id=None),
        ]
    )
    Bundle.model_validate(b)  # validates with fhir.resources (R4B models)
    bp, spo2 = _obs(b)
    assert [c["code"] for c in bp["code"]["coding"]] == ["150020", "85354-9"]
    assert bp["code"]["coding"][0]["system"] == "urn:iso:std:iso:11073:10101"
    comps = {c["code"]["coding"][1]["code"]: c["valueQuantity"] for c in bp["component"]}
    assert comps["8480-6"] == {"value": 142.0, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}
    assert comps["8462-4"]["value"] == 91.0
    assert {c["code"]["coding"][0]["code"] for c in bp["component"]} == {"150021", "150022", "150023"}
    assert spo2["code"]["coding"][0] == {"system": "urn:iso:std:iso:11073:10101", "code": "150456"}
    assert {"59408-5", "2708-6"} <= {c["code"] for c in spo2["code"]["coding"]}
    assert spo2["valueQuantity"]["code"] == "%"
    cats = {c["coding"][0]["code"] for c in bp["category"]}
    assert cats == {"vital-signs", "phd"}
    # device -> the cuff, extension -> the gateway; both are entries of the bundle.
    urls = {e["fullUrl"]: e["resource"] for e in b["entry"]}
    assert urls[bp["device"]["reference"]]["serialNumber"] == "5140100123"
    gw = bp["extension"][0]
    assert gw["url"] == "http://hl7.org/fhir/StructureDefinition/observation-gatewayDevice"
    assert {"system": "urn:nearcare:agent-id", "value": "tablet-0001"} in urls[gw["valueReference"]["reference"]][
        "identifier"
    ]
    assert "device" not in spo2
    # The PHD identifier (device-patient-type-timestamp) is the conditional-create key; the
    # edge-minted id is kept as a second identifier.
    entry = next(e for e in b["entry"] if e["resource"] is bp)
    phd_id = "http://hl7.org/fhir/uv/phd/StructureDefinition/PhdBaseObservation"
    local = T0.astimezone(ZoneInfo("Europe/Copenhagen")).replace(tzinfo=None)
    secs = int((local - datetime(2000, 1, 1)).total_seconds())
    assert bp["identifier"] == [
        {"system": phd_id, "value": f"00-09-1F-80-4B-01-P-0001-150020-{secs}"},
        {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{BP_ID}"},
    ]
    assert entry["request"] == {
        "method": "POST",
        "url": "Observation",
        "ifNoneExist": f"identifier={phd_id}|00-09-1F-80-4B-01-P-0001-150020-{secs}",
    }


def test_missing_value_goes_to_data_absent_reason_and_quality_to_a_note() -> None:
    r = _reading(SPO2_ID, "spo2", {"spo2": None})
    r["quality"] = ["weak_signal"]
    r["device_clock_trusted"] = False
    (obs,) = _obs(_bundle([r]))
    Observation.model_validate(obs)
    assert "valueQuantity" not in obs
    assert obs["dataAbsentReason"]["coding"][0]["code"] == "error"
    # weak_signal is coded (a PhdBitsEnumerationObservation), not only described.
    assert "note" not in obs


def test_same_export_twice_has_the_same_ids() -> None:
    readings = [_reading(BP_ID, "blood_pressure", {"systolic": 120.0, "diastolic": 80.0})]
    assert [e["fullUrl"] for e in _bundle(readings)["entry"]] == [e["fullUrl"] for e in _bundle(readings)["entry"]]


@pytest.mark.parametrize(("kind", "comps"), [("bogus_kind", {"x": 1.0}), ("weight", {"weight": float("inf")})])
def test_an_invalid_bundle_is_refused_not_returned(kind: str, comps: dict[str, float]) -> None:
    r = _reading(BP_ID, kind, comps)
    with pytest.raises(FhirExportError):
        _bundle([r])


def test_export_of_stored_readings_validates(db: Any) -> None:
    from backend.accounts.access import Patient
    from backend.fhir.query import export_patient

    ref = f"fhir-{uuid.uuid4().hex[:8]}"
    pid = db.execute(
        "INSERT INTO patients (external_ref, name, programme, municipality) VALUES (%s, 'F', 'copd',"
        " 'Aarhus') RETURNING id",
        (ref,),
    ).fetchone()[0]
    agent = f"fhir-agent-{uuid.uuid4().hex[:6]}"
    db.execute("INSERT INTO agents (id, patient_id) VALUES (%s, %s)", (agent, pid))
    dev = db.execute(
        "INSERT INTO devices (agent_id, address, model) VALUES (%s, 'AA:00', 'Nonin 3230') RETURNING id", (agent,)
    ).fetchone()[0]
    now = datetime.now(UTC)
    for i, (kind, comps, unit) in enumerate(
        [
            ("spo2", {"spo2": 91.0}, "%"),
            ("pulse", {"pulse": 88.0}, "/min"),
            ("blood_pressure", {"systolic": 150.0, "diastolic": 95.0}, "mm[Hg]"),
            ("weight", {"weight": 81.2}, "kg"),
        ]
    ):
        db.execute(
            """INSERT INTO measurements (id, measured_at, patient_id, agent_id, device_id, kind, value, components,
                      unit, device_clock_trusted, agent_received_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,true,%s)""",
            (
                uuid.uuid4(),
                now - timedelta(minutes=i),
                pid,
                agent,
                dev,
                kind,
                next(iter(comps.values())),
                json.dumps(comps),
                unit,
                now,
            ),
        )
    patient = Patient(pid, ref, "F", None, "copd", "Aarhus", None, True)
    bundle = export_patient(db, patient=patient)
    Bundle.model_validate(bundle)
    codes = {c["code"] for o in _obs(bundle) for c in o["code"]["coding"]}
    codes |= {c["code"] for o in _obs(bundle) for comp in o.get("component", []) for c in comp["code"]["coding"]}
    assert {"150456", "8480-6", "8462-4", "8867-4", "29463-7"} <= codes
    assert len(_obs(bundle)) == 4
