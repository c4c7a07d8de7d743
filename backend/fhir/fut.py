"""One stored reading as a FUT ``$submit-measurement`` request (pure; no I/O).

FUT (the Danish national eHealth infrastructure, IG 8.0.0, ../shared/standards/fut) takes one
measurement per call: a ``Parameters`` resource whose ``measurement`` parameter is a transaction
Bundle of Observations (``ehealth-observation``) that point to the FUT Patient, EpisodeOfCare,
ServiceRequest and Device that already exist there. Nothing else is POSTed: no Patient, no
Device.

The Observation carries:

- the NPU/DNK code of ``ValueSet-ehealth-observation-codes`` (blood pressure as the SKS home
  blood-pressure code ZZ3170 with the DNK05472/DNK05473 components);
- the ``workflow-episodeOfCare`` and ``ehealth-resolved-timing`` extensions (``Unresolved``:
  nearcare does not resolve the regime's time slots), ``basedOn`` the ServiceRequest, ``subject``
  and ``performer`` the citizen (who measured at home), ``device`` the FUT Device;
- an ``ehealth-quality`` extension where the device flagged the reading;
- the reference ranges in force when it was evaluated (``reading_evaluations.thresholds``), red
  as RAL and yellow as GAL;
- an identifier (``urn:nearcare:measurement-id`` | the edge-minted id) used as the entry's
  ``ifNoneExist``: the idempotency key, so a retry after a lost response is not a second
  measurement.

FUT wants ``status = final`` on every submitted Observation; a reading the device marked invalid
goes with a ``dataAbsentReason`` and no value. Test or demonstration data and kinds with no FUT
code are not submittable: :class:`FutNotSubmittable` says why, and the outbox keeps the reason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fhir.resources.R4B.parameters import Parameters

from backend.fhir import codes as C
from backend.fhir.export import FhirExportError
from vitals.kinds import MeasurementKind, spec

REFERENCE_RANGE_TYPES = "http://ehealth.sundhed.dk/cs/reference-range-type"  # RAL/GAL (CLINICAL.md)
_RANGES = (("RAL", "red_low", "red_high"), ("GAL", "yellow_low", "yellow_high"))


class FutNotSubmittable(FhirExportError):
    """This reading is not a FUT measurement (no FUT code for its kind, or test data)."""


@dataclass(frozen=True, slots=True)
class FutLink:
    """Where a citizen's measurements go in FUT: references to resources that exist there.
    The CPR number is not here: FUT knows the citizen by its Patient reference."""

    patient: str
    episode_of_care: str
    service_request: str
    service_request_version: str
    device: str


class FutLinkError(FhirExportError):
    """FUT references that cannot be a link; ``key`` names the screen words."""

    def __init__(self, key: str, text: str) -> None:
        super().__init__(text)
        self.key = key


_FHIR_ID = r"[A-Za-z0-9\-.]{1,64}"


def checked_link(*, patient: str, episode_of_care: str, service_request: str, service_request_version: str,
                 device: str) -> FutLink:
    """A :class:`FutLink` from references as an administrator types them: each an absolute URL
    of a resource of the right type in FUT (``https://…/Patient/123``), the version a FHIR id."""
    refs = {"Patient": patient, "EpisodeOfCare": episode_of_care, "ServiceRequest": service_request,
            "Device": device}
    for kind, ref in refs.items():
        if not re.fullmatch(rf"https?://[^\s/]+(/[^\s]*)?/{kind}/{_FHIR_ID}", ref.strip()):
            raise FutLinkError("fut_bad_reference", f"the {kind} reference must be FUT's absolute URL of a {kind}, "
                               f"e.g. https://fut.example/fhir/{kind}/123")
    if not re.fullmatch(_FHIR_ID, service_request_version.strip()):
        raise FutLinkError("fut_bad_version", "the ServiceRequest version is a FHIR id, e.g. 3")
    return FutLink(patient.strip(), episode_of_care.strip(), service_request.strip(), service_request_version.strip(),
                   device.strip())


def measurement_key(reading_id: object) -> str:
    """The idempotency key of one measurement toward FUT."""
    return f"identifier={C.FUT_MEASUREMENT_ID_SYSTEM}|urn:uuid:{reading_id}"


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def reference_ranges(thresholds: Mapping[str, Mapping[str, Any]] | None, component: str, ucum: str) -> list[dict]:
    """The RAL (red) and GAL (yellow) ranges for ``component`` from the thresholds in force
    (rule id -> field -> value, as ``reading_evaluations`` keeps them)."""
    out: list[dict[str, Any]] = []
    for rule_id, fields in (thresholds or {}).items():
        parts = rule_id.split(".")
        if component not in parts[-2:] or not isinstance(fields, Mapping):
            continue
        for code, low_f, high_f in _RANGES:
            low, high = fields.get(low_f), fields.get(high_f)
            if not isinstance(low, int | float) and not isinstance(high, int | float):
                continue
            rr: dict[str, Any] = {"type": {"coding": [{"system": REFERENCE_RANGE_TYPES, "code": code}]}}
            if isinstance(low, int | float):
                rr["low"] = {"value": float(low), "system": C.UCUM, "code": ucum}
            if isinstance(high, int | float):
                rr["high"] = {"value": float(high), "system": C.UCUM, "code": ucum}
            out.append(rr)
    return out


def _cc(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def _coding(code: tuple[str, str, str]) -> dict[str, Any]:
    return {"coding": [{"system": code[0], "code": code[1], "display": code[2]}]}


def fut_observation(
    reading: Mapping[str, Any], *, link: FutLink, thresholds: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    """The ehealth-observation for one stored reading (keys as in the measurements table)."""
    kind = MeasurementKind(reading["kind"])
    ks = spec(kind)
    quality = set(reading.get("quality") or ())
    if quality & C.TEST_FLAGS:
        raise FutNotSubmittable("test or demonstration data (device flag): not a measurement of the citizen")
    components: Mapping[str, Any] = reading.get("components") or {}
    invalid = bool(quality & C.INVALID_FLAGS)
    extensions: list[dict[str, Any]] = [
        {"url": C.FUT_EPISODE_EXT, "valueReference": {"reference": link.episode_of_care}},
        {
            "url": C.FUT_TIMING_EXT,
            "extension": [
                {"url": "serviceRequestVersionId", "valueId": link.service_request_version},
                {"url": "type", "valueCodeableConcept": _cc(C.FUT_TIMING_TYPES, "Unresolved")},
            ],
        },
    ]
    flagged = sorted(quality - C.TEST_FLAGS)
    if flagged:
        extensions.append(
            {
                "url": C.FUT_QUALITY_EXT,
                "extension": [
                    {"url": "qualityType", "valueCodeableConcept": _cc(C.FUT_QUALITY_TYPES, "SQ")},
                    {"url": "qualityCode", "valueCodeableConcept": _cc(C.FUT_SITUATION_QUALITY, "Unknown")},
                ],
            }
        )
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "meta": {"profile": [C.FUT_OBSERVATION]},
        "extension": extensions,
        "identifier": [{"system": C.FUT_MEASUREMENT_ID_SYSTEM, "value": f"urn:uuid:{reading['id']}"}],
        "basedOn": [{"reference": link.service_request}],
        "status": "final",
        "subject": {"reference": link.patient},
        "effectiveDateTime": _aware(reading["measured_at"]).isoformat(),
        "performer": [{"reference": link.patient}],
        "device": {"reference": link.device},
    }
    if flagged:
        obs["note"] = [{"text": "device flags: " + ", ".join(flagged)}]
    absent = {"coding": [{"system": C.DATA_ABSENT, "code": "error"}]}
    if kind is MeasurementKind.BLOOD_PRESSURE:
        obs["code"] = _coding(C.FUT_BP_PANEL)
        comps = []
        for c in ks.components:
            if c.name not in C.FUT_CODES:
                continue  # mean arterial pressure has no FUT code
            entry: dict[str, Any] = {"code": _coding(C.FUT_CODES[c.name])}
            v = components.get(c.name)
            if not invalid and isinstance(v, int | float):
                entry["valueQuantity"] = {"value": round(float(v), 3), "unit": c.display_unit, "system": C.UCUM,
                                          "code": c.ucum}
            else:
                entry["dataAbsentReason"] = absent
            ranges = reference_ranges(thresholds, c.name, c.ucum)
            if ranges:
                entry["referenceRange"] = ranges
            comps.append(entry)
        obs["component"] = comps
        if invalid:
            obs["dataAbsentReason"] = absent
        return obs
    c = ks.primary
    if c.name not in C.FUT_CODES:
        raise FutNotSubmittable(f"no FUT (NPU/DNK) code for {kind.value} in ehealth-observation-codes (IG 8.0.0)")
    obs["code"] = _coding(C.FUT_CODES[c.name])
    v = components.get(c.name)
    if not invalid and isinstance(v, int | float):
        obs["valueQuantity"] = {"value": round(float(v), 3), "unit": c.display_unit, "system": C.UCUM, "code": c.ucum}
    else:
        obs["dataAbsentReason"] = absent
    ranges = reference_ranges(thresholds, c.name, c.ucum)
    if ranges:
        obs["referenceRange"] = ranges
    return obs


def submit_measurement(
    reading: Mapping[str, Any], *, link: FutLink, thresholds: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    """The body of one ``POST [base]/$submit-measurement``: Parameters(measurement = a
    transaction Bundle of this one measurement), validated with the R4B models."""
    obs = fut_observation(reading, link=link, thresholds=thresholds)
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "measurement",
                "resource": {
                    "resourceType": "Bundle",
                    "type": "transaction",
                    "entry": [
                        {
                            "fullUrl": f"urn:uuid:{reading['id']}",
                            "resource": obs,
                            "request": {"method": "POST", "url": "Observation",
                                        "ifNoneExist": measurement_key(reading["id"])},
                        }
                    ],
                },
            }
        ],
    }
    try:
        Parameters.model_validate(body)
    except Exception as exc:  # pydantic's ValidationError and fhir_core's own errors alike
        raise FhirExportError(f"FUT submission did not validate: {exc}") from exc
    return body
