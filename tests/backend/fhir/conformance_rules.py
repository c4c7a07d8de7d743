"""The element-by-element conformance check of issue 14, as 47 named rules: 12 from the FHIR R4
vital-signs profiles, 25 from the HL7 PHD IG (profiles and the rules it states in prose), 10 from
the FUT IG (ehealth-observation and $submit-measurement).

This is a hand-written rule list (the issue's "last resort"), mirroring the integrator's check;
the structural part of each profile is validated separately with fhir.resources' R4B models. The
rule list is this project's reconstruction: the issue names the failing areas, not the 47 rules.

A rule gets a :class:`Export` (the PHD bundle, the FUT submission bodies, and which reading plays
which part in the scenario) and returns None when it holds, or a short reason when it does not.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

MDC = "urn:iso:std:iso:11073:10101"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
PHD_ID = "http://hl7.org/fhir/uv/phd/StructureDefinition/PhdBaseObservation"
VITAL = "http://terminology.hl7.org/CodeSystem/observation-category"
PHD_CAT = "http://hl7.org/fhir/uv/phd/CodeSystem/PhdObservationCategories"
GATEWAY = "http://hl7.org/fhir/StructureDefinition/observation-gatewayDevice"
COINCIDENT = "http://hl7.org/fhir/uv/phd/StructureDefinition/CoincidentTimeStampReference"
ASN1 = "http://terminology.hl7.org/CodeSystem/ASN1ToHL7"
FUT_PROFILE = "http://ehealth.sundhed.dk/fhir/StructureDefinition/ehealth-observation"
FUT_CODE_SYSTEMS = {"urn:oid:1.2.208.176.2.1", "urn:oid:1.2.208.184.100.8", "urn:oid:1.2.208.176.2.4"}


@dataclass
class Export:
    bundle: dict[str, Any]
    submissions: list[dict[str, Any]]
    """The FUT request bodies, one per submitted measurement (the old export: the bundle)."""
    roles: dict[str, str]
    """Scenario part -> measurement id: bp, cuff_pulse, oxi_pulse, spo2_clock, invalid, test_data,
    weight, future, glucose, missing, held."""
    device_local_time: dict[str, str] = field(default_factory=dict)
    """Scenario part -> the device's own timestamp (ISO, no zone) where its clock was replaced."""
    fut_refs: dict[str, str] = field(default_factory=dict)

    # -- helpers ---------------------------------------------------------------------------------
    def resources(self) -> list[dict[str, Any]]:
        return [e["resource"] for e in self.bundle["entry"]]

    def by_url(self, url: str) -> dict[str, Any] | None:
        return next((e["resource"] for e in self.bundle["entry"] if e["fullUrl"] == url), None)

    def entry_of(self, part: str) -> dict[str, Any]:
        rid = self.roles[part]
        for e in self.bundle["entry"]:
            for ident in e["resource"].get("identifier") or []:
                if str(ident.get("value", "")).endswith(rid):
                    return e
        raise LookupError(f"no Observation for {part} ({rid}) in the export")

    def obs(self, part: str) -> dict[str, Any]:
        return self.entry_of(part)["resource"]

    def measurements(self) -> Iterator[dict[str, Any]]:
        for part in self.roles:
            try:
                yield self.obs(part)
            except LookupError:
                continue

    def vital(self) -> Iterator[dict[str, Any]]:
        for part in ("bp", "cuff_pulse", "oxi_pulse", "spo2_clock", "weight", "future"):
            yield self.obs(part)

    def fut_observations(self) -> list[dict[str, Any]]:
        out = []
        for body in self.submissions:
            bundle = body
            if body.get("resourceType") == "Parameters":
                bundle = body["parameter"][0]["resource"]
            out += [e["resource"] for e in bundle.get("entry") or [] if e["resource"]["resourceType"] == "Observation"]
        return out


Rule = Callable[[Export], str | None]
RULES: list[tuple[str, str, Rule]] = []


def rule(rid: str, text: str) -> Callable[[Rule], Rule]:
    def add(fn: Rule) -> Rule:
        RULES.append((rid, text, fn))
        return fn

    return add


def codes(cc: dict[str, Any] | None, system: str) -> list[str]:
    return [c.get("code") for c in (cc or {}).get("coding") or [] if c.get("system") == system]


def cats(obs: dict[str, Any], system: str) -> list[str]:
    return [c for cc in obs.get("category") or [] for c in codes(cc, system)]


def ext(obs: dict[str, Any], url: str) -> dict[str, Any] | None:
    return next((e for e in obs.get("extension") or [] if e.get("url") == url), None)


def has_value(o: dict[str, Any]) -> bool:
    return any(k.startswith("value") for k in o)


# -- FHIR R4 vital signs (12) ---------------------------------------------------------------------


@rule("R1", "every Observation has a status")
def _r1(x: Export) -> str | None:
    return None if all(o.get("status") for o in x.measurements()) else "an Observation without status"


@rule("R2", "vital signs carry the vital-signs category")
def _r2(x: Export) -> str | None:
    bad = [o["code"].get("text") for o in x.vital() if "vital-signs" not in cats(o, VITAL)]
    return f"no vital-signs category: {bad}" if bad else None


@rule("R3", "vital signs carry a LOINC code")
def _r3(x: Export) -> str | None:
    return None if all(codes(o["code"], LOINC) for o in x.vital()) else "vital sign without LOINC"


@rule("R4", "every quantity is UCUM (system and code)")
def _r4(x: Export) -> str | None:
    qs = [o.get("valueQuantity") for o in x.measurements()]
    qs += [c.get("valueQuantity") for o in x.measurements() for c in o.get("component") or []]
    bad = [q for q in qs if q and (q.get("system") != UCUM or not q.get("code"))]
    return f"non-UCUM quantities: {bad}" if bad else None


@rule("R5", "blood pressure is one 85354-9 Observation with 8480-6 and 8462-4 components")
def _r5(x: Export) -> str | None:
    bp = x.obs("bp")
    comp = {c for comp in bp.get("component") or [] for c in codes(comp["code"], LOINC)}
    return None if "85354-9" in codes(bp["code"], LOINC) and {"8480-6", "8462-4"} <= comp else "BP panel shape"


@rule("R6", "blood-pressure components are in mm[Hg]")
def _r6(x: Export) -> str | None:
    units = {c["valueQuantity"]["code"] for c in x.obs("bp")["component"] if "valueQuantity" in c}
    return None if units == {"mm[Hg]"} else f"units {units}"


@rule("R7", "every Observation has a subject")
def _r7(x: Export) -> str | None:
    return None if all((o.get("subject") or {}).get("reference") for o in x.measurements()) else "no subject"


@rule("R8", "every Observation has an effective time")
def _r8(x: Export) -> str | None:
    ok = all(o.get("effectiveDateTime") or o.get("effectivePeriod") for o in x.measurements())
    return None if ok else "no effective[x]"


@rule("R9", "every Observation has a value, components or a dataAbsentReason")
def _r9(x: Export) -> str | None:
    bad = [o for o in x.measurements() if not (has_value(o) or o.get("component") or o.get("dataAbsentReason"))]
    return f"{len(bad)} without value or reason" if bad else None


@rule("R10", "SpO2 carries 59408-5 and 2708-6")
def _r10(x: Export) -> str | None:
    return None if {"59408-5", "2708-6"} <= set(codes(x.obs("spo2_clock")["code"], LOINC)) else "SpO2 codes"


@rule("R11", "glucose is not in the vital-signs category")
def _r11(x: Export) -> str | None:
    return "glucose in vital-signs" if "vital-signs" in cats(x.obs("glucose"), VITAL) else None


@rule("R12", "heart rate is 8867-4 in /min")
def _r12(x: Export) -> str | None:
    o = x.obs("cuff_pulse")
    return None if "8867-4" in codes(o["code"], LOINC) and o["valueQuantity"]["code"] == "/min" else "heart rate"


# -- HL7 PHD IG (25) ------------------------------------------------------------------------------


@rule("P1", "every PHD Observation has the phd category")
def _p1(x: Export) -> str | None:
    return None if all("phd" in cats(o, PHD_CAT) for o in x.measurements()) else "no phd category"


@rule("P2", "the MDC code comes first")
def _p2(x: Export) -> str | None:
    ok = all(o["code"]["coding"][0]["system"] == MDC for o in x.measurements())
    return None if ok else "MDC not first"


@rule("P3", "device points to a Device in the bundle")
def _p3(x: Export) -> str | None:
    for o in x.measurements():
        d = x.by_url((o.get("device") or {}).get("reference", ""))
        if d is None or d["resourceType"] != "Device":
            return f"{o['code'].get('text')}: no device"
    return None


@rule("P4", "the gateway extension points to a Device in the bundle")
def _p4(x: Export) -> str | None:
    for o in x.measurements():
        e = ext(o, GATEWAY)
        if e is None or x.by_url(e["valueReference"]["reference"]) is None:
            return "no gateway"
    return None


@rule("P5", "meta.profile claims PhdNumericObservation / PhdCompoundNumericObservation")
def _p5(x: Export) -> str | None:
    bp = x.obs("bp")["meta"]["profile"]
    ok = any(p.endswith("PhdCompoundNumericObservation") for p in bp) and all(
        any(p.endswith("PhdNumericObservation") for p in x.obs(k)["meta"]["profile"]) for k in ("weight", "spo2_clock")
    )
    return None if ok else "profiles"


@rule("P6", "a conditional-create identifier in the PhdBaseObservation system, used in ifNoneExist")
def _p6(x: Export) -> str | None:
    timed = [x.obs(p) for p in ("bp", "cuff_pulse", "spo2_clock", "oxi_pulse")]  # the device gave a time
    bad = [o for o in timed if not any(i.get("system") == PHD_ID for i in o.get("identifier") or [])]
    if bad:
        return f"{len(bad)} without the PHD identifier"
    untimed = x.entry_of("weight")  # no device time: the identifier would collide, the edge id is the key
    if "urn:uuid:" not in (untimed.get("request") or {}).get("ifNoneExist", ""):
        return "a reading without a device time has no unique conditional-create key"
    e = x.entry_of("bp")
    return None if PHD_ID in (e.get("request") or {}).get("ifNoneExist", "") else "ifNoneExist not the PHD identifier"


@rule("P7", "the identifier value is device-patient-type-timestamp")
def _p7(x: Export) -> str | None:
    o = x.obs("bp")
    ident = next((i["value"] for i in o.get("identifier") or [] if i.get("system") == PHD_ID), "")
    form = r"(?P<dev>[0-9A-F]{2}(?:-[0-9A-F]{2}){5,7})-(?P<pat>.+)-(?P<mdc>\d+)-(?P<ts>\d+(?:\.\d+)?(?:[+-]\d+)?)"
    m = re.fullmatch(form, ident)
    if not m or m["mdc"] != "150020":
        return f"identifier {ident!r}"
    return None



@rule("P8", "a device-flagged invalid reading is not final")
def _p9(x: Export) -> str | None:
    return "invalid exported as final" if x.obs("invalid").get("status") == "final" else None


@rule("P9", "a device-flagged invalid reading has a dataAbsentReason and no value")
def _p10(x: Export) -> str | None:
    o = x.obs("invalid")
    return None if o.get("dataAbsentReason") and not has_value(o) else "invalid reading keeps its value"


@rule("P10", "questionable -> interpretation in the measurement-status system")
def _p11(x: Export) -> str | None:
    o = x.obs("spo2_clock")
    got = [c for i in o.get("interpretation") or [] for c in codes(i, "http://hl7.org/fhir/uv/pocd/CodeSystem/measurement-status")]
    return None if "questionable" in got else "questionable only as text"


@rule("P11", "test data -> the HTEST security label")
def _p12(x: Export) -> str | None:
    sec = (x.obs("test_data").get("meta") or {}).get("security") or []
    return None if any(s.get("code") == "HTEST" for s in sec) else "no HTEST"


def _coded_bits(x: Export, part: str) -> set[str]:
    url = x.entry_of(part)["fullUrl"]
    out: set[str] = set()
    for r in x.resources():
        if r["resourceType"] == "Observation" and any(d.get("reference") == url for d in r.get("derivedFrom") or []):
            on = [comp for comp in r.get("component") or [] if comp.get("valueBoolean")]
            out |= {c for comp in on for c in codes(comp["code"], ASN1)}
    return out


@rule("P12", "low perfusion is coded (ASN1ToHL7 150604.10)")
def _p13(x: Export) -> str | None:
    return None if "150604.10" in _coded_bits(x, "spo2_clock") else "low perfusion not coded"


@rule("P13", "irregular pulse is coded (ASN1ToHL7 8410608.2)")
def _p14(x: Export) -> str | None:
    return None if "8410608.2" in _coded_bits(x, "bp") else "irregular pulse not coded"


@rule("P14", "a replaced device clock has a coincident-timestamp Observation")
def _p15(x: Export) -> str | None:
    e = ext(x.obs("spo2_clock"), COINCIDENT)
    target = x.by_url(e["valueReference"]["reference"]) if e else None
    if not target or not any(p.endswith("PhdCoincidentTimeStampObservation") for p in target["meta"]["profile"]):
        return "no coincident-timestamp Observation"
    return None


@rule("P15", "the device's own time is kept")
def _p16(x: Export) -> str | None:
    e = ext(x.obs("spo2_clock"), COINCIDENT)
    target = x.by_url(e["valueReference"]["reference"]) if e else None
    want = x.device_local_time["spo2_clock"]
    if not target or not str(target.get("valueDateTime", "")).startswith(want):
        return "device time dropped"
    return None


@rule("P16", "the backend's future_time flag is exported")
def _p17(x: Export) -> str | None:
    o = x.obs("future")
    tags = [t.get("code") for t in (o.get("meta") or {}).get("tag") or []]
    return None if "future_time" in tags else "future_time not exported"


def _device(x: Export, part: str) -> dict[str, Any]:
    d = x.by_url(x.obs(part)["device"]["reference"])
    assert d is not None
    return d


def _gateway(x: Export) -> dict[str, Any]:
    e = ext(x.obs("bp"), GATEWAY)
    assert e is not None
    d = x.by_url(e["valueReference"]["reference"])
    assert d is not None
    return d


@rule("P17", "PhdDevice type is MDC 65573")
def _p18(x: Export) -> str | None:
    return None if "65573" in codes(_device(x, "bp").get("type"), MDC) else "PhdDevice type"


@rule("P18", "PhdDevice specialization is an MDC device specialization with a version")
def _p19(x: Export) -> str | None:
    spec = _device(x, "bp").get("specialization") or []
    ok = any("528391" in codes(s.get("systemType"), MDC) and s.get("version") for s in spec)
    return None if ok else "PhdDevice specialization"


@rule("P19", "PhdDevice firmware version is typed with an MDC version code")
def _p20(x: Export) -> str | None:
    ok = any(codes(v.get("type"), MDC) and v.get("value") for v in _device(x, "bp").get("version") or [])
    return None if ok else "PhdDevice version"


@rule("P20", "PhdDevice Bluetooth identifier: BTMAC type, eui-48/bluetooth system, IG format")
def _p21(x: Export) -> str | None:
    for i in _device(x, "bp").get("identifier") or []:
        if (i.get("system") == "http://hl7.org/fhir/sid/eui-48/bluetooth"
                and "BTMAC" in codes(i.get("type"), "http://terminology.hl7.org/CodeSystem/ContinuaDeviceIdentifiers")
                and re.fullmatch(r"[0-9A-F]{2}(-[0-9A-F]{2}){5}", i.get("value", ""))):
            return None
    return "PhdDevice identifier"



@rule("P21", "PhgDevice: type 531981, specialization, version, SYSID identifier")
def _p23(x: Export) -> str | None:
    g = _gateway(x)
    ok = (
        "531981" in codes(g.get("type"), MDC)
        and g.get("specialization")
        and g.get("version")
        and any(i.get("system") == "urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680" for i in g.get("identifier") or [])
    )
    return None if ok else "PhgDevice"


@rule("P22", "a cuff's pulse is 149546 (MDC_PULS_RATE_NON_INV)")
def _p24(x: Export) -> str | None:
    got = codes(x.obs("cuff_pulse")["code"], MDC)
    return None if got[:1] == ["149546"] else f"cuff pulse coded {got}"


@rule("P23", "an oximeter's pulse is 149530 (MDC_PULS_OXIM_PULS_RATE)")
def _p25(x: Export) -> str | None:
    got = codes(x.obs("oxi_pulse")["code"], MDC)
    return None if got[:1] == ["149530"] else f"oximeter pulse coded {got}"


@rule("P24", "a missing (SFLOAT special) value goes to dataAbsentReason")
def _p26(x: Export) -> str | None:
    o = x.obs("missing")
    return None if o.get("dataAbsentReason") and not has_value(o) else "missing value"


@rule("P25", "held (implausible) readings are exported as entered-in-error with their reason")
def _p27(x: Export) -> str | None:
    try:
        o = x.obs("held")
    except LookupError:
        return "held reading left out"
    notes = " ".join(n.get("text", "") for n in o.get("note") or [])
    return None if o.get("status") == "entered-in-error" and "implausible_value" in notes else "held reading shape"


# -- FUT (10) -------------------------------------------------------------------------------------


@rule("F1", "one measurement per $submit-measurement: Parameters(measurement = one transaction Bundle)")
def _f1(x: Export) -> str | None:
    for body in x.submissions:
        if body.get("resourceType") != "Parameters":
            return f"a {body.get('resourceType')} is POSTed, not Parameters"
        params = body.get("parameter") or []
        if len(params) != 1 or params[0].get("name") != "measurement":
            return "parameters"
        if len(params[0]["resource"].get("entry") or []) != 1:
            return "more than one measurement per call"
    return None if x.submissions else "nothing submitted"


@rule("F2", "Observations only, nothing else POSTed to FUT")
def _f2(x: Export) -> str | None:
    for body in x.submissions:
        bundle = body["parameter"][0]["resource"] if body.get("resourceType") == "Parameters" else body
        kinds = {e["resource"]["resourceType"] for e in bundle.get("entry") or []}
        if kinds != {"Observation"}:
            return f"also POSTs {sorted(kinds - {'Observation'})}"
    return None


@rule("F3", "ehealth-observation profile")
def _f3(x: Export) -> str | None:
    ok = all(FUT_PROFILE in (o.get("meta") or {}).get("profile", []) for o in x.fut_observations())
    return None if ok else "not ehealth-observation"


@rule("F4", "NPU/DNK codes from ehealth-observation-codes")
def _f4(x: Export) -> str | None:
    for o in x.fut_observations():
        systems = {c.get("system") for c in o["code"]["coding"]}
        if not systems & FUT_CODE_SYSTEMS:
            return "no NPU/DNK code"
    return None


@rule("F5", "the workflow-episodeOfCare extension points to the FUT EpisodeOfCare")
def _f5(x: Export) -> str | None:
    for o in x.fut_observations():
        e = ext(o, "http://hl7.org/fhir/StructureDefinition/workflow-episodeOfCare")
        if not e or e["valueReference"]["reference"] != x.fut_refs.get("episode_of_care"):
            return "no episodeOfCare"
    return None


@rule("F6", "the ehealth-resolved-timing extension (serviceRequestVersionId, type)")
def _f6(x: Export) -> str | None:
    for o in x.fut_observations():
        e = ext(o, "http://ehealth.sundhed.dk/fhir/StructureDefinition/ehealth-resolved-timing")
        if not e or {"serviceRequestVersionId", "type"} - {s["url"] for s in e.get("extension") or []}:
            return "no resolved timing"
    return None


@rule("F7", "basedOn the FUT ServiceRequest")
def _f7(x: Export) -> str | None:
    ok = all([b.get("reference") for b in o.get("basedOn") or []] == [x.fut_refs.get("service_request")]
             for o in x.fut_observations())
    return None if ok else "no basedOn"


@rule("F8", "performer (1..1)")
def _f8(x: Export) -> str | None:
    return None if all(len(o.get("performer") or []) == 1 for o in x.fut_observations()) else "no performer"


@rule("F9", "subject and device are the existing FUT Patient and Device")
def _f9(x: Export) -> str | None:
    for o in x.fut_observations():
        if (o.get("subject") or {}).get("reference") != x.fut_refs.get("patient"):
            return "subject is not the FUT Patient"
        if (o.get("device") or {}).get("reference") != x.fut_refs.get("device"):
            return "device is not the FUT Device"
    return None


@rule("F10", "the patient carries the CPR identifier (urn:oid:1.2.208.176.1.2)")
def _f10(x: Export) -> str | None:
    for r in x.resources():
        if r["resourceType"] == "Patient" and any(
            i.get("system") == "urn:oid:1.2.208.176.1.2" for i in r.get("identifier") or []
        ):
            return None
    return "no CPR identifier on the Patient"


def check(x: Export) -> dict[str, str | None]:
    """Rule id -> None (holds) or why not; a rule that raises does not hold."""
    out: dict[str, str | None] = {}
    for rid, _text, fn in RULES:
        try:
            out[rid] = fn(x)
        except (LookupError, KeyError, TypeError, AssertionError, IndexError) as exc:
            out[rid] = f"cannot check: {exc!r}"
    return out
