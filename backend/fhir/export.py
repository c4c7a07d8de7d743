"""A patient's readings as a FHIR R4 transaction Bundle, validated with ``fhir.resources``.

Each Observation follows the R4 vital-signs profile and the HL7 PHD IG (CLINICAL.md):
MDC code first with LOINC as a second coding, categories ``vital-signs`` and ``phd``, UCUM units,
``device`` -> the measuring Device, the ``observation-gatewayDevice`` extension -> the home
gateway (the agent), and an ``identifier`` (the edge-minted measurement id) used in
``ifNoneExist`` so a re-sent export never creates duplicates. Missing values (SFLOAT NaN/NRes)
go to ``dataAbsentReason``.

``fhir.resources`` 8 ships R4B (R4's compatible revision) and R5; the R4B models validate here.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from fhir.resources.R4B.bundle import Bundle

from backend.errors import BackendError
from vitals.kinds import MeasurementKind, spec

MDC = "urn:iso:std:iso:11073:10101"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
PHD_CATEGORY = "http://hl7.org/fhir/uv/phd/CodeSystem/PhdObservationCategories"
GATEWAY_EXT = "http://hl7.org/fhir/StructureDefinition/observation-gatewayDevice"
ID_SYSTEM = "urn:ietf:rfc:3986"
PATIENT_REF_SYSTEM = "urn:nearcare:patient-ref"
DEVICE_ADDR_SYSTEM = "urn:ietf:rfc:7042"  # EUI-48 (Bluetooth address) identifiers
AGENT_SYSTEM = "urn:nearcare:agent-id"
DATA_ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
_NS = uuid.UUID("6b1f5a52-4c1e-4a7e-9d1b-6e6561726361")  # stable namespace for bundle-local ids

# R4 vital-signs profiles per kind; the LOINC code of the vital-signs profile where it differs
# from the component's own (SpO2's profile wants 2708-6 alongside 59408-5).
_PROFILES = {
    MeasurementKind.SPO2: "http://hl7.org/fhir/StructureDefinition/oxygensat",
    MeasurementKind.PULSE: "http://hl7.org/fhir/StructureDefinition/heartrate",
    MeasurementKind.WEIGHT: "http://hl7.org/fhir/StructureDefinition/bodyweight",
    MeasurementKind.BLOOD_PRESSURE: "http://hl7.org/fhir/StructureDefinition/bp",
    MeasurementKind.TEMPERATURE: "http://hl7.org/fhir/StructureDefinition/bodytemp",
    MeasurementKind.RESPIRATION_RATE: "http://hl7.org/fhir/StructureDefinition/resprate",
}
_PHD_NUMERIC = "http://hl7.org/fhir/uv/phd/StructureDefinition/PhdNumericObservation"
_PHD_COMPOUND = "http://hl7.org/fhir/uv/phd/StructureDefinition/PhdCompoundNumericObservation"


class FhirExportError(BackendError):
    """The export could not be built or did not validate."""


def _urn(*parts: object) -> str:
    return "urn:uuid:" + str(uuid.uuid5(_NS, "/".join(str(p) for p in parts)))


def _iso(t: datetime) -> str:
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).isoformat()


def _quantity(value: float, ucum: str, display: str) -> dict[str, Any]:
    return {"value": round(float(value), 3), "unit": display, "system": UCUM, "code": ucum}


def observation_for(
    reading: dict[str, Any], *, patient_url: str, device_url: str | None, gateway_url: str
) -> dict[str, Any]:
    """One reading (keys: id, kind, components, measured_at, agent_received_at, quality) as an
    Observation dict."""
    kind = MeasurementKind(reading["kind"])
    ks = spec(kind)
    components: dict[str, Any] = reading["components"] or {}
    categories = [
        {"coding": [{"system": OBS_CATEGORY, "code": "vital-signs", "display": "Vital Signs"}]},
        {"coding": [{"system": PHD_CATEGORY, "code": "phd", "display": "PHD generated"}]},
    ]
    profiles = [p for p in (_PROFILES.get(kind),) if p]
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "meta": {"profile": [*profiles, _PHD_COMPOUND if kind is MeasurementKind.BLOOD_PRESSURE else _PHD_NUMERIC]},
        "identifier": [{"system": ID_SYSTEM, "value": f"urn:uuid:{reading['id']}"}],
        "status": "final",
        "category": categories,
        "subject": {"reference": patient_url},
        "effectiveDateTime": _iso(reading["measured_at"]),
        "extension": [{"url": GATEWAY_EXT, "valueReference": {"reference": gateway_url}}],
    }
    if device_url:
        obs["device"] = {"reference": device_url}
    quality = list(reading.get("quality") or [])
    if not reading.get("device_clock_trusted", True):
        quality.append("device_clock_not_trusted")
    if quality:
        obs["note"] = [{"text": "quality: " + ", ".join(quality)}]
    if kind is MeasurementKind.BLOOD_PRESSURE:
        obs["code"] = {
            "coding": [
                {"system": MDC, "code": str(ks.panel_mdc), "display": "MDC_PRESS_BLD_NONINV"},
                {"system": LOINC, "code": ks.panel_loinc, "display": "Blood pressure panel"},
            ],
            "text": ks.label_da,
        }
        comps = []
        for c in ks.components:
            if c.name not in components:
                continue
            entry: dict[str, Any] = {
                "code": {
                    "coding": [{"system": MDC, "code": str(c.mdc)}, {"system": LOINC, "code": c.loinc}],
                    "text": c.label_da,
                },
            }
            v = components[c.name]
            if isinstance(v, int | float):
                entry["valueQuantity"] = _quantity(v, c.ucum, c.display_unit)
            else:
                entry["dataAbsentReason"] = {"coding": [{"system": DATA_ABSENT, "code": "error"}]}
            comps.append(entry)
        obs["component"] = comps
        return obs
    c = ks.primary
    codings = [{"system": MDC, "code": str(c.mdc)}, {"system": LOINC, "code": c.loinc}]
    if kind is MeasurementKind.SPO2:
        codings.append({"system": LOINC, "code": "2708-6", "display": "Oxygen saturation in Arterial blood"})
    obs["code"] = {"coding": codings, "text": c.label_da}
    v = components.get(c.name)
    if isinstance(v, int | float):
        obs["valueQuantity"] = _quantity(v, c.ucum, c.display_unit)
    else:
        obs["dataAbsentReason"] = {"coding": [{"system": DATA_ABSENT, "code": "error"}]}
    return obs


def patient_bundle(
    *,
    patient: dict[str, Any],
    readings: Sequence[dict[str, Any]],
    devices: dict[int, dict[str, Any]],
    now: datetime | None = None,
) -> dict[str, Any]:
    """A validated transaction Bundle (as a JSON-ready dict) of the patient, the devices and
    gateways that measured, and one Observation per reading."""
    patient_url = _urn("patient", patient["external_ref"])
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": patient_url,
            "resource": {
                "resourceType": "Patient",
                "identifier": [{"system": PATIENT_REF_SYSTEM, "value": patient["external_ref"]}],
                "name": [{"text": patient["name"]}],
                **({"birthDate": patient["birth_date"].isoformat()} if patient.get("birth_date") else {}),
            },
            "request": {
                "method": "POST",
                "url": "Patient",
                "ifNoneExist": f"identifier={PATIENT_REF_SYSTEM}|{patient['external_ref']}",
            },
        }
    ]
    gateways: dict[str, str] = {}
    device_urls: dict[int, str] = {}
    for r in readings:
        agent = r["agent_id"]
        if agent not in gateways:
            gateways[agent] = _urn("gateway", agent)
            entries.append(
                {
                    "fullUrl": gateways[agent],
                    "resource": {
                        "resourceType": "Device",
                        "identifier": [{"system": AGENT_SYSTEM, "value": agent}],
                        "deviceName": [{"name": f"nearcare gateway {agent}", "type": "user-friendly-name"}],
                    },
                    "request": {"method": "POST", "url": "Device", "ifNoneExist": f"identifier={AGENT_SYSTEM}|{agent}"},
                }
            )
        dev_id = r.get("device_id")
        if dev_id is not None and dev_id not in device_urls and dev_id in devices:
            d = devices[dev_id]
            device_urls[dev_id] = _urn("device", d["address"], agent)
            res: dict[str, Any] = {
                "resourceType": "Device",
                "identifier": [{"system": DEVICE_ADDR_SYSTEM, "value": d["address"]}],
            }
            if d.get("manufacturer"):
                res["manufacturer"] = d["manufacturer"]
            if d.get("model"):
                res["modelNumber"] = d["model"]
            if d.get("serial"):
                res["serialNumber"] = d["serial"]
            if d.get("firmware"):
                res["version"] = [{"type": {"text": "firmware-revision"}, "value": d["firmware"]}]
            entries.append(
                {
                    "fullUrl": device_urls[dev_id],
                    "resource": res,
                    "request": {
                        "method": "POST",
                        "url": "Device",
                        "ifNoneExist": f"identifier={DEVICE_ADDR_SYSTEM}|{d['address']}",
                    },
                }
            )
    for r in readings:
        try:
            obs = observation_for(
                r,
                patient_url=patient_url,
                device_url=device_urls.get(r.get("device_id")),  # type: ignore[arg-type]
                gateway_url=gateways[r["agent_id"]],
            )
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise FhirExportError(f"reading {r.get('id')} cannot be exported: {exc!r}") from exc
        entries.append(
            {
                "fullUrl": f"urn:uuid:{r['id']}",
                "resource": obs,
                "request": {
                    "method": "POST",
                    "url": "Observation",
                    "ifNoneExist": f"identifier={ID_SYSTEM}|urn:uuid:{r['id']}",
                },
            }
        )
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "timestamp": _iso(now or datetime.now(UTC)),
        "entry": entries,
    }
    try:
        validated = Bundle.model_validate(bundle)
    except Exception as exc:  # pydantic's ValidationError and fhir_core's own errors alike
        raise FhirExportError(f"FHIR bundle did not validate: {exc}") from exc
    import json

    return json.loads(validated.model_dump_json(exclude_none=True))
