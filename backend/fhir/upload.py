"""PHD upload: FHIR transaction Bundles from third-party PHD/Continua gateways, stored once.

``POST /fhir/phd`` (:data:`router`) takes a transaction Bundle as the PHD IG's
``CapabilityStatement.PhdFHIRServer`` describes it: PhdNumeric/PhdCompoundNumeric Observations
created conditionally on their PHD identifier, a PhgDevice (the gateway) and PhdDevices. The
gateway authenticates with a bearer token (:func:`register_gateway`) and is one of nearcare's
agents for attribution: each Observation becomes the same wire :class:`vitals.wire.Measurement`
an agent would send, and goes through ingest's own attribution, plausibility and time checks
(:func:`backend.ingest.core.attribute`) and ingest's writer. So an unknown device is held with its
reason, a reading is stored once (its id is derived from the PHD identifier), and a re-sent
Bundle changes nothing.

The router is listed in ``backend/app.py::routers()``. A gateway gets its token from the admin's
``/admin/gateways`` page (:mod:`backend.fhir.gateways`: issued once, listed, revoked, audited).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Body, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from fhir.resources.R4B.bundle import Bundle
from pydantic import BaseModel, ConfigDict, Field

from backend.accounts.deps import Conn
from backend.fhir import codes as C
from backend.fhir.cpr import mask
from backend.fhir.export import FhirExportError
from vitals.kinds import MeasurementKind, spec, to_canonical
from vitals.wire import MAX_BATCH, Device, Envelope, Measurement, Topics

_NS = uuid.UUID("2f0e5c1e-8c55-4c9b-9d5e-7068645f7570")  # ids of uploaded readings, from their identifier

KIND_BY_MDC = {
    150020: MeasurementKind.BLOOD_PRESSURE,
    150456: MeasurementKind.SPO2,
    C.PULSE_FROM_OXIMETER: MeasurementKind.PULSE,
    C.PULSE_FROM_CUFF: MeasurementKind.PULSE,
    188736: MeasurementKind.WEIGHT,
    150364: MeasurementKind.TEMPERATURE,
    160184: MeasurementKind.GLUCOSE,
    151562: MeasurementKind.RESPIRATION_RATE,
}
_COMPONENT_BY_MDC = {c.mdc: c.name for c in spec(MeasurementKind.BLOOD_PRESSURE).components}


class PhdUploadError(FhirExportError):
    """The upload is not a PHD transaction Bundle nearcare can read."""


@dataclass(frozen=True, slots=True)
class Skipped:
    full_url: str
    reason: str


@dataclass(frozen=True, slots=True)
class ParsedUpload:
    gateway_sysids: frozenset[str]
    measurements: tuple[tuple[str, Measurement], ...]
    """(the entry's fullUrl, the measurement it becomes)."""
    skipped: tuple[Skipped, ...] = ()


def _codes(cc: Mapping[str, Any] | None, system: str) -> list[str]:
    return [str(c.get("code")) for c in (cc or {}).get("coding") or [] if c.get("system") == system]


def _identifier(res: Mapping[str, Any], system: str) -> str | None:
    for i in res.get("identifier") or []:
        if i.get("system") == system and i.get("value"):
            return str(i["value"])
    return None


def _address(device: Mapping[str, Any]) -> str | None:
    """The device's address as nearcare keeps it: a Bluetooth address with colons, else its
    system id."""
    mac = _identifier(device, C.BT_MAC_SYSTEM)
    if mac:
        return mac.replace("-", ":").upper()
    return _identifier(device, C.SYSID_SYSTEM)


def _value(q: Mapping[str, Any] | None, kind: MeasurementKind, expected_ucum: str) -> float | None:
    if not q or q.get("value") is None:
        return None
    if q.get("system") != C.UCUM or not q.get("code"):
        raise ValueError(f"quantity without a UCUM unit: {q}")
    unit = str(q["code"])
    value = float(q["value"])
    return value if unit == expected_ucum else to_canonical(kind, value, unit)


def _quality(obs: Mapping[str, Any]) -> tuple[str, ...]:
    q: list[str] = []
    status = obs.get("status")
    if status == "entered-in-error":
        q.append("invalid_measurement")
    elif status == "preliminary":
        q.append("measurement_ongoing")
    reverse = {v: k for k, v in C.INTERPRETATION_FLAGS.items()}
    for interp in obs.get("interpretation") or []:
        q += [reverse[c] for c in _codes(interp, C.MSMT_STATUS) if c in reverse]
    if any(s.get("code") == "HTEST" for s in (obs.get("meta") or {}).get("security") or []):
        q.append("data_for_testing")
    return tuple(dict.fromkeys(q))


def parse_bundle(bundle: Mapping[str, Any], *, now: datetime) -> ParsedUpload:
    """The measurements in a PHD transaction Bundle (pure). Entries that are not measurements
    nearcare keeps (coincident timestamps, device status bits, Devices, the Patient) are listed
    as skipped with the reason; an Observation that cannot be read is refused whole."""
    if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "transaction":
        raise PhdUploadError("a transaction Bundle is expected")
    try:
        Bundle.model_validate(bundle)
    except Exception as exc:  # pydantic's ValidationError and fhir_core's own errors alike
        raise PhdUploadError(f"the Bundle is not valid FHIR: {exc}") from exc
    by_url = {e.get("fullUrl"): e.get("resource") or {} for e in bundle.get("entry") or []}
    sysids: set[str] = set()
    out: list[tuple[str, Measurement]] = []
    skipped: list[Skipped] = []
    for entry in bundle.get("entry") or []:
        res = entry.get("resource") or {}
        url = str(entry.get("fullUrl") or "")
        if res.get("resourceType") == "Device":
            if C.PHG_DEVICE in (res.get("meta") or {}).get("profile", []) or "531981" in _codes(res.get("type"), C.MDC):
                sid = _identifier(res, C.SYSID_SYSTEM)
                if sid:
                    sysids.add(sid)
            continue
        if res.get("resourceType") != "Observation":
            skipped.append(Skipped(url, f"{res.get('resourceType')} is not a measurement"))
            continue
        mdc = next((int(c) for c in _codes(res.get("code"), C.MDC) if c.isdigit()), None)
        kind = KIND_BY_MDC.get(mdc) if mdc is not None else None
        if kind is None:
            skipped.append(Skipped(url, f"MDC code {mdc} is not a measurement nearcare keeps"))
            continue
        try:
            out.append((url, _measurement(res, kind, by_url, now)))
        except (ValueError, KeyError, TypeError) as exc:
            raise PhdUploadError(f"{url}: {exc}") from exc
    return ParsedUpload(frozenset(sysids), tuple(out), tuple(skipped))


def _measurement(obs: Mapping[str, Any], kind: MeasurementKind, by_url: Mapping[Any, Any],
                 now: datetime) -> Measurement:
    ks = spec(kind)
    device = by_url.get((obs.get("device") or {}).get("reference"))
    if not device:
        raise ValueError("device does not point to a Device in the Bundle")
    address = _address(device)
    if not address:
        raise ValueError("the Device has neither a Bluetooth address nor a system id")
    effective = obs.get("effectiveDateTime") or (obs.get("effectivePeriod") or {}).get("start")
    if not effective:
        raise ValueError("no effective time")
    measured = datetime.fromisoformat(str(effective).replace("Z", "+00:00"))
    if measured.tzinfo is None:
        raise ValueError("effective time without a zone")
    values: dict[str, float | None] = {}
    if kind is MeasurementKind.BLOOD_PRESSURE:
        for comp in obs.get("component") or []:
            name = next((_COMPONENT_BY_MDC[int(c)] for c in _codes(comp.get("code"), C.MDC)
                         if c.isdigit() and int(c) in _COMPONENT_BY_MDC), None)
            if name is not None:
                values[name] = _value(comp.get("valueQuantity"), kind, ks.component(name).ucum)
        values.setdefault("systolic", None)
    else:
        values[ks.primary.name] = _value(obs.get("valueQuantity"), kind, ks.primary.ucum)
    if obs.get("status") == "entered-in-error":
        values = dict.fromkeys(values)  # the device said invalid: no value is kept as one
    key = _identifier(obs, C.PHD_ID_SYSTEM)
    basis = f"{C.PHD_ID_SYSTEM}|{key}" if key else json.dumps(obs, sort_keys=True, separators=(",", ":"))
    return Measurement(
        id=uuid.uuid5(_NS, basis),
        kind=kind,
        values=values,
        unit=ks.unit,
        measured_at=measured,
        device_clock_trusted=True,  # the gateway's time line (PHD: it corrected the device's clock)
        received_at=now,
        device=Device(address=address, model=device.get("modelNumber"), manufacturer=device.get("manufacturer"),
                      serial=device.get("serialNumber")),
        quality=_quality(obs),
    )


# -- gateways ----------------------------------------------------------------------------------


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _eui64(sysid: str) -> str:
    """A system id compared as its hex digits (``FE-ED-…``, ``fe:ed:…`` and ``FEED…`` are one)."""
    return "".join(c for c in sysid if c not in " :.-").upper()


def register_gateway(conn: psycopg.Connection[Any], *, agent_id: str, sysid: str) -> str:
    """A bearer token for a third-party gateway acting as ``agent_id`` (shown once; only its
    hash is kept)."""
    token = secrets.token_urlsafe(32)
    conn.execute("INSERT INTO phd_gateways (token_sha256, agent_id, sysid) VALUES (%s, %s, %s)",
                 (_digest(token), agent_id, sysid))
    return token


def gateway_for(conn: psycopg.Connection[Any], token: str) -> tuple[str, str] | None:
    """(agent id, system id) of a live gateway token, or None."""
    row = conn.execute("SELECT agent_id, sysid FROM phd_gateways WHERE token_sha256 = %s AND revoked_at IS NULL",
                       (_digest(token),)).fetchone()
    return (str(row[0]), str(row[1])) if row else None


# -- storing -----------------------------------------------------------------------------------


@dataclass
class UploadResult:
    stored: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    held: dict[str, str] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)


def store_upload(conn: psycopg.Connection[Any], *, parsed: ParsedUpload, agent_id: str, topics: Topics,
                 now: datetime) -> UploadResult:
    """Attribute and store ``parsed`` as ``agent_id``'s readings through ingest's own checks and
    writer (one transaction per chunk of :data:`MAX_BATCH`)."""
    from backend.ingest.core import attribute
    from backend.ingest.writer import prepare, write_batch
    from backend.registry import load_snapshot

    result = UploadResult(skipped=list(parsed.skipped))
    registry = load_snapshot(conn)
    topic = topics.measurements(agent_id)
    prepare(conn)
    items: Sequence[tuple[str, Measurement]] = parsed.measurements
    for start in range(0, len(items), MAX_BATCH):
        chunk = items[start : start + MAX_BATCH]
        urls = {m.id: url for url, m in chunk}
        env = Envelope(agent_id=agent_id, sent_at=now, measurements=tuple(m for _, m in chunk))
        decision = attribute(env, topic=topic, payload=env.to_json(), registry=registry, now=now)
        if decision.dead_letter is not None:
            for url in urls.values():
                result.refused[url] = decision.dead_letter.reason
            continue
        written = write_batch(conn, [decision], received_at=now)
        fresh = {r.id for r in written.stored}
        for r in decision.accepted:
            (result.stored if r.id in fresh else result.duplicates).append(urls[r.id])
        for h in decision.held:
            result.held[urls[h.id]] = h.reason
    return result


def response_bundle(result: UploadResult) -> dict[str, Any]:
    """A transaction-response Bundle: 201 stored, 200 already stored, 202 held with the reason,
    422 refused; skipped entries are not echoed."""

    def outcome(severity: str, text: str) -> dict[str, Any]:
        return {"resourceType": "OperationOutcome", "issue": [{"severity": severity, "code": "processing",
                                                                "diagnostics": text}]}

    entries: list[dict[str, Any]] = [{"response": {"status": "201 Created", "location": url}} for url in result.stored]
    entries += [{"response": {"status": "200 OK", "location": url}} for url in result.duplicates]
    entries += [{"response": {"status": "202 Accepted", "location": url, "outcome": outcome("warning", f"held: {why}")}}
                for url, why in result.held.items()]
    entries += [{"response": {"status": "422 Unprocessable Entity", "location": url, "outcome": outcome("error", why)}}
                for url, why in result.refused.items()]
    return {"resourceType": "Bundle", "type": "transaction-response", "entry": entries}


class TransactionResponseOut(BaseModel):
    """A FHIR ``transaction-response`` Bundle (``application/fhir+json``): per measurement,
    ``201 Created`` (stored), ``200 OK`` (stored before), ``202 Accepted`` (held, with an
    OperationOutcome naming the reason) or ``422`` (refused, with the reason)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    resourceType: str = Field(description='"Bundle"')
    type: str = Field(description='"transaction-response"')
    entry: list[dict[str, object]] = Field(default_factory=list)


router = APIRouter()


@router.post(
    "/fhir/phd",
    tags=["fhir"],
    summary="PHD transaction Bundle from a third-party gateway",
    responses={
        200: {"model": TransactionResponseOut, "description": "What became of each measurement"},
        400: {"description": "Not a PHD transaction Bundle nearcare can read (an OperationOutcome)"},
        401: {"description": "No or unknown gateway token"},
        403: {"description": "The Bundle's PhgDevice is not this token's gateway"},
    },
)
def upload(request: Request, conn: Conn, body: Annotated[dict[str, Any], Body()],
           authorization: Annotated[str | None, Header()] = None) -> JSONResponse:
    token = (authorization or "").removeprefix("Bearer ").strip()
    gateway = gateway_for(conn, token) if token else None
    if gateway is None:
        raise HTTPException(401, "a gateway bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    agent_id, sysid = gateway
    try:
        parsed = parse_bundle(body, now=datetime.now(UTC))
    except PhdUploadError as exc:
        return JSONResponse(status_code=400, media_type="application/fhir+json", content={
            "resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "invalid",
                                                           "diagnostics": mask(str(exc))[:2000]}]})
    if parsed.gateway_sysids and _eui64(sysid) not in {_eui64(s) for s in parsed.gateway_sysids}:
        raise HTTPException(403, "the Bundle's PhgDevice is not the gateway this token belongs to")
    topics: Topics = request.app.state.settings.topics
    result = store_upload(conn, parsed=parsed, agent_id=agent_id, topics=topics, now=datetime.now(UTC))
    conn.commit()  # durable before the gateway is told "created" (the request's own commit comes later)
    return JSONResponse(status_code=200, media_type="application/fhir+json", content=response_bundle(result))
