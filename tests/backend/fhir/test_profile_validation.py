"""Every resource of the PHD export and every submitted FUT Observation, validated against the
StructureDefinitions of ../shared/standards/packages (PHD IG 2.0.0, FUT IG 8.0.0, DK core) and the
R4 vital-signs profiles, by a real validator: @medplum/core 5 (validator/validate.mjs), installed
from the npm registry into a cache directory on first use.

The validator has limits of its own, each shown here on a resource that is correct by the spec
(``test_the_validators_own_limits``); an error the export gets is accepted only if it is one of
those, and nothing else. The negative controls show the validator does find real errors.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from backend.fhir.query import export_patient
from tests.backend.fhir.test_conformance import ZONE, build_scenario

HERE = Path(__file__).parent / "validator"
PACKAGES = Path(__file__).resolve().parents[4] / "shared" / "standards" / "packages"
BP = "http://hl7.org/fhir/StructureDefinition/bp"
PHD = "http://hl7.org/fhir/uv/phd/StructureDefinition/"
FUT = "http://ehealth.sundhed.dk/fhir/StructureDefinition/ehealth-observation"

# (profile, error pattern, why it is the validator's and not the resource's)
LIMITS: list[tuple[str, str, str]] = [
    (BP, r"slice '(SystolicBP|DiastolicBP)'", "rejects the spec's own minimal blood-pressure example"),
    (PHD + "PhdDevice", r"Device\.specialization .*slice 'MDCType'", "slice discriminated by a required binding only"),
    (PHD + "PhgDevice", r"Device\.(specialization|version) .*slice 'MDCType'",
     "slice discriminated by a required binding only"),
    (PHD + "PhdCompoundNumericObservation", r"Observation\.component .*slice '(SimpleAlerting|MdcType|"
     r"MsmtStatusInterpretation)'", "counts nested slices of component (extension, coding, interpretation) as "
     "slices of component itself"),
    (FUT, r"slice 'resolvedTiming'", "matches extension slices by the url in the snapshot, which this slice lacks"),
]

Validate = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


@pytest.fixture(scope="module")
def validate() -> Validate:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed for the profile validator (a Node package)")
    assert PACKAGES.is_dir(), f"the standards packages are missing: {PACKAGES}"
    sources = (HERE / "package.json").read_bytes() + (HERE / "validate.mjs").read_bytes()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    home = cache / "nearcare" / f"fhir-validator-{hashlib.sha256(sources).hexdigest()[:12]}"
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test sessions may install at once
        if not (home / "node_modules" / "@medplum" / "core").is_dir():
            shutil.copy(HERE / "package.json", home / "package.json")
            done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--no-package-lock"], cwd=home,
                                  capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, f"npm install failed:\n{done.stderr[-2000:]}"
        shutil.copy(HERE / "validate.mjs", home / "validate.mjs")

    def run(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        done = subprocess.run([node, str(home / "validate.mjs"), str(PACKAGES)], input=json.dumps(items),
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        out: list[dict[str, Any]] = json.loads(done.stdout)
        return out

    return run


def _errors(result: dict[str, Any]) -> list[str]:
    return [i for i in result["issues"] if i.startswith("error")]


def _unexplained(result: dict[str, Any]) -> list[str]:
    return [e for e in _errors(result)
            if not any(result["profile"] == p and re.search(rx, e) for p, rx, _ in LIMITS)]


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as c:
        yield c


def test_every_exported_and_submitted_resource_validates(conn: psycopg.Connection[Any], validate: Validate) -> None:
    sc = build_scenario(conn)
    bundle = export_patient(conn, patient=sc.patient, include_rejected=True, zone=ZONE, cpr_keys=sc.cpr_keys)
    items = [{"name": f"{e['resource']['resourceType']} {e['fullUrl']}", "resource": e["resource"],
              "profiles": e["resource"]["meta"]["profile"]} for e in bundle["entry"]]
    for body in sc.bodies:
        for e in body["parameter"][0]["resource"]["entry"]:
            items.append({"name": f"FUT {e['fullUrl']}", "resource": e["resource"], "profiles": [FUT]})
    results = validate(items)
    assert len(results) == sum(len(i["profiles"]) for i in items)
    kinds = {r["profile"].rsplit("/", 1)[-1] for r in results}
    assert {"PhdNumericObservation", "PhdCompoundNumericObservation", "PhdDevice", "PhgDevice", "PhdPatient",
            "PhdCoincidentTimeStampObservation", "PhdBitsEnumerationObservation", "ehealth-observation"} <= kinds
    bad = {f"{r['name']} / {r['profile']}": _unexplained(r) for r in results if _unexplained(r)}
    assert not bad, json.dumps(bad, indent=1)
    clean = sum(1 for r in results if r["ok"])
    print(f"\nprofile validation: {len(results)} (resource, profile) pairs, {clean} without any error, "
          f"{len(results) - clean} with only the validator's known limits")


def _spec_bp() -> dict[str, Any]:
    q = {"unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}
    loinc = "http://loinc.org"
    return {
        "resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
        "subject": {"reference": "Patient/example"}, "effectiveDateTime": "2012-09-17",
        "component": [
            {"code": {"coding": [{"system": loinc, "code": "8480-6"}]}, "valueQuantity": {"value": 107, **q}},
            {"code": {"coding": [{"system": loinc, "code": "8462-4"}]}, "valueQuantity": {"value": 60, **q}},
        ],
    }


def test_the_validators_own_limits(validate: Validate) -> None:
    """Each accepted error appears on a resource that is right by the spec, so it is the
    validator's; and the validator does report real errors (negative controls)."""
    mdc = "urn:iso:std:iso:11073:10101"
    device = {
        "resourceType": "Device",
        "identifier": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/ContinuaDeviceIdentifiers",
                                             "code": "SYSID"}]},
                        "system": "urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680", "value": "FE-ED-AB-EE-DE-AD-BE-EF"}],
        "manufacturer": "Example", "modelNumber": "1",
        "type": {"coding": [{"system": mdc, "code": "531981"}]},
        "specialization": [{"systemType": {"coding": [{"system": mdc, "code": "528391"}]}, "version": "1"}],
        "version": [{"type": {"coding": [{"system": mdc, "code": "531975"}]}, "value": "1.0"}],
    }
    fut_obs = {
        "resourceType": "Observation", "status": "final",
        "extension": [
            {"url": "http://hl7.org/fhir/StructureDefinition/workflow-episodeOfCare",
             "valueReference": {"reference": "EpisodeOfCare/1"}},
            {"url": "http://ehealth.sundhed.dk/fhir/StructureDefinition/ehealth-resolved-timing",
             "extension": [{"url": "serviceRequestVersionId", "valueId": "1"},
                           {"url": "type", "valueCodeableConcept": {"coding": [
                               {"system": "http://ehealth.sundhed.dk/cs/resolved-timing-type", "code": "Adhoc"}]}}]},
        ],
        "basedOn": [{"reference": "ServiceRequest/1"}],
        "code": {"coding": [{"system": "urn:oid:1.2.208.176.2.1", "code": "NPU03804"}]},
        "subject": {"reference": "Patient/1"}, "effectiveDateTime": "2026-01-01T08:00:00Z",
        "performer": [{"reference": "Patient/1"}],
        "valueQuantity": {"value": 80, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"},
    }
    no_based_on = {k: v for k, v in fut_obs.items() if k != "basedOn"}
    results = validate([
        {"name": "spec BP", "resource": _spec_bp(), "profiles": [BP]},
        {"name": "IG-shaped PHG", "resource": device, "profiles": [PHD + "PhgDevice"]},
        {"name": "IG-shaped FUT weight", "resource": fut_obs, "profiles": [FUT]},
        {"name": "FUT weight without basedOn", "resource": no_based_on, "profiles": [FUT]},
    ])
    spec_bp, phg, fut_ok, fut_bad = results
    for r in (spec_bp, phg, fut_ok):
        assert _errors(r) and not _unexplained(r), r  # rejected, and only for a listed limit
    assert any("basedOn" in e for e in _unexplained(fut_bad)), fut_bad  # a real error is reported
