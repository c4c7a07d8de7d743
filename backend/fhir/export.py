"""A patient's readings as a FHIR R4 transaction Bundle per the HL7 PHD IG (validated with
``fhir.resources``' R4B models; ``fhir.resources`` 8 ships R4B and R5, R4B is R4-compatible).

What goes in, by the PHD IG (../shared/standards/phd):

- Observations per ``PhdNumericObservation`` / ``PhdCompoundNumericObservation`` (blood
  pressure), category ``phd`` and, for vital signs only, ``vital-signs`` with the R4 profile;
  the MDC code first (the right one per source: a cuff's pulse is 149546, an oximeter's 149530),
  LOINC second; UCUM units; ``device`` -> a ``PhdDevice``; the gateway extension -> a ``PhgDevice``.
- The conditional-create identifier in the PHD form ``<device>-<patient>-<MDC type>-<timestamp>``
  (the timestamp as the device reported it, in seconds since 2000-01-01 as the IG's
  "Generating the timestamp part" says), with the edge-minted id as a second identifier. A
  reading whose device gave no timestamp has no PHD identifier (the IG does not recommend one:
  two such readings could collide) and is created conditionally on the edge-minted id.
- Measurement status from the device's flags: *invalid* -> ``entered-in-error`` with a
  ``dataAbsentReason`` and no value; *unavailable* / a missing value -> ``dataAbsentReason``;
  *ongoing* / *early estimate* -> ``preliminary``; *questionable*, *calibration ongoing*,
  *validated* -> an ``interpretation`` in the pocd measurement-status system; *test* or
  *demonstration* data -> the ``HTEST`` security label. The other device bits (low perfusion,
  irregular pulse, cuff loose...) are coded in a ``PhdBitsEnumerationObservation`` per status
  attribute (ASN1ToHL7 codes), ``derivedFrom`` the measurement; flags with no code stay in a note.
- A ``PhdCoincidentTimeStampObservation`` wherever the device clock was replaced or untrusted:
  the gateway's receipt time against the device's own time (re-decoded from the stored raw
  characteristic) or, if the device gave none, a time fault; the measurement points to it with
  the ``CoincidentTimeStampReference`` extension.
- The backend's own flags (``future_time``, ``clock_not_set``) as ``meta.tag`` codes.
- Readings held at ingest (implausible value, unknown device...), when asked for, as
  ``entered-in-error`` Observations with their value (if any) and the hold reason, never left out.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from fhir.resources.R4B.bundle import Bundle

from backend.errors import BackendError
from backend.fhir import codes as C
from vitals.kinds import MeasurementKind, spec

_NS = uuid.UUID("6b1f5a52-4c1e-4a7e-9d1b-6e6561726361")  # stable namespace for bundle-local ids
_EPOCH_2000 = datetime(2000, 1, 1)
DEFAULT_ZONE = ZoneInfo("Europe/Copenhagen")

# Kept for callers of the old module.
MDC, LOINC, UCUM = C.MDC, C.LOINC, C.UCUM
ID_SYSTEM = C.UUID_SYSTEM


class FhirExportError(BackendError):
    """The export could not be built or did not validate."""


def _urn(*parts: object) -> str:
    return "urn:uuid:" + str(uuid.uuid5(_NS, "/".join(str(p) for p in parts)))


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _iso(t: datetime) -> str:
    return _aware(t).isoformat()


def _quantity(value: float, ucum: str, display: str) -> dict[str, Any]:
    return {"value": round(float(value), 3), "unit": display, "system": C.UCUM, "code": ucum}


def _mdc(code: int | str, display: str | None = None) -> dict[str, Any]:
    c: dict[str, Any] = {"system": C.MDC, "code": str(code)}
    if display:
        c["display"] = display
    return c


def _dar(code: str) -> dict[str, Any]:
    return {"coding": [{"system": C.DATA_ABSENT, "code": code}]}


# -- identifiers ------------------------------------------------------------------------------


def bt_mac(address: str) -> str | None:
    """A Bluetooth address in the IG's form (hex pairs, dashes, capitals), or None if it is not
    a 48-bit address."""
    digits = "".join(ch for ch in address if ch.isalnum()).upper()
    if len(digits) != 12 or any(ch not in "0123456789ABCDEF" for ch in digits):
        return None
    return "-".join(digits[i : i + 2] for i in range(0, 12, 2))


def gateway_system_id(agent_id: str) -> str:
    """The gateway's EUI-64 system id: a locally administered EUI-64 (U/L bit set, unicast)
    derived from the agent id, stable across exports. Agents have no factory EUI-64."""
    raw = bytearray(uuid.uuid5(_NS, f"agent/{agent_id}").bytes[:8])
    raw[0] = (raw[0] | 0x02) & 0xFE
    return "-".join(f"{b:02X}" for b in raw)


def device_key(address: str) -> str:
    """The device part of the PHD identifier: its Bluetooth address, else the address as known."""
    return bt_mac(address) or address


def timestamp_part(device_time: datetime) -> str:
    """Seconds since 2000-01-01 of the timestamp as the device reported it (the IG's "Generating
    the timestamp part"): a naive device-local time is counted as given; an aware time (a receipt
    time) in UTC, with the offset appended as 15-minute units."""
    if device_time.tzinfo is None:
        secs = (device_time - _EPOCH_2000).total_seconds()
        suffix = ""
    else:
        offset = device_time.utcoffset()
        local = device_time.replace(tzinfo=None)
        secs = (local - _EPOCH_2000).total_seconds()
        quarters = int(offset.total_seconds() // 900) if offset is not None else 0
        suffix = f"{quarters:+d}"
    text = f"{secs:.3f}" if device_time.microsecond else f"{int(secs)}"
    return text + suffix


def phd_identifier_value(*, device: str, patient_ref: str, mdc: int, timestamp: datetime) -> str:
    return f"{device}-{patient_ref}-{mdc}-{timestamp_part(timestamp)}"


# -- the device's own time -------------------------------------------------------------------


def device_time_reported(reading: Mapping[str, Any], zone: tzinfo) -> datetime | None:
    """The time the device itself put on the reading (naive, device-local), or None if it gave
    none. Where the clock was trusted that is ``measured_at``; where it was replaced the stored
    raw characteristic is decoded again (the agent sent it for exactly this)."""
    if reading.get("device_clock_trusted", True):
        return _aware(reading["measured_at"]).astimezone(zone).replace(tzinfo=None)
    raw, characteristic = reading.get("raw"), reading.get("raw_characteristic")
    if not raw or not characteristic:
        return None
    from edge_agent.gatt import GattError, decode, readings_from

    try:
        decoded = readings_from(decode(characteristic, bytes(raw)))
    except (GattError, ValueError):
        return None
    for r in decoded:
        if r.device_time is not None:
            return r.device_time
    return None


def needs_coincident(reading: Mapping[str, Any], zone: tzinfo) -> bool:
    """A device clock that was replaced or not set: the device gave a time that was not used, or
    said its clock was not set. A device that gave no time at all needs none (the IG: no
    coincident timestamp means the gateway's receipt time is the timestamp)."""
    flags = set(reading.get("quality") or ()) | set(reading.get("flags") or ())
    if flags & C.CLOCK_FLAGS:
        return True
    return not reading.get("device_clock_trusted", True) and device_time_reported(reading, zone) is not None


# -- codes per reading -------------------------------------------------------------------------


def pulse_mdc(reading: Mapping[str, Any], device_kinds: Iterable[str] = ()) -> int:
    """149546 for a pulse from a blood-pressure cuff, 149530 for one from an oximeter."""
    from edge_agent.gatt import GattError, normalize_uuid

    ch = ""
    if reading.get("raw_characteristic"):
        try:
            ch = normalize_uuid(reading["raw_characteristic"]).upper()
        except GattError:
            ch = ""
    if ch in C.CUFF_CHARACTERISTICS or MeasurementKind.BLOOD_PRESSURE.value in set(device_kinds):
        return C.PULSE_FROM_CUFF
    return C.PULSE_FROM_OXIMETER


def measurement_mdc(reading: Mapping[str, Any], device_kinds: Iterable[str] = ()) -> int:
    kind = MeasurementKind(reading["kind"])
    ks = spec(kind)
    if kind is MeasurementKind.BLOOD_PRESSURE:
        assert ks.panel_mdc is not None
        return ks.panel_mdc
    if kind is MeasurementKind.PULSE:
        return pulse_mdc(reading, device_kinds)
    return ks.primary.mdc


def _status(quality: set[str]) -> tuple[str, str | None]:
    """(Observation.status, dataAbsentReason code or None) from the device's flags."""
    if quality & C.INVALID_FLAGS:
        return "entered-in-error", "error"
    if quality & C.PRELIMINARY_FLAGS:
        return "preliminary", None
    return "final", None


# -- Observations ------------------------------------------------------------------------------


def observation_for(
    reading: Mapping[str, Any],
    *,
    patient_url: str,
    device_url: str | None,
    gateway_url: str,
    patient_ref: str = "unknown",
    device_id_value: str | None = None,
    device_kinds: Iterable[str] = (),
    coincident_url: str | None = None,
    zone: tzinfo = DEFAULT_ZONE,
    hold_reason: str | None = None,
) -> dict[str, Any]:
    """One reading (keys: id, kind, components, measured_at, agent_received_at, quality, flags,
    device_clock_trusted, raw_characteristic, raw) as a PHD Observation dict."""
    kind = MeasurementKind(reading["kind"])
    ks = spec(kind)
    components: Mapping[str, Any] = reading.get("components") or {}
    quality = set(reading.get("quality") or ())
    flags = list(reading.get("flags") or ())
    device_kinds = set(device_kinds)
    mdc = measurement_mdc(reading, device_kinds)
    vital = kind in C.VITAL_PROFILES
    status, absent = _status(quality)
    if hold_reason is not None:
        status = "entered-in-error"

    categories = [{"coding": [{"system": C.PHD_CATEGORY, "code": "phd", "display": "PHD generated"}]}]
    if vital:
        categories.insert(
            0, {"coding": [{"system": C.OBS_CATEGORY, "code": "vital-signs", "display": "Vital Signs"}]}
        )
    profiles = [C.VITAL_PROFILES[kind]] if vital else []
    profiles.append(C.PHD_COMPOUND if kind is MeasurementKind.BLOOD_PRESSURE else C.PHD_NUMERIC)

    reported = device_time_reported(reading, zone)
    identifiers = [{"system": C.UUID_SYSTEM, "value": f"urn:uuid:{reading['id']}"}]
    # The PHD identifier needs the device's own timestamp (the IG: not for readings without one,
    # which would collide); those keep the edge-minted id as their conditional-create key.
    if device_id_value is not None and reported is not None:
        stamp = reported
        identifiers.insert(
            0,
            {
                "system": C.PHD_ID_SYSTEM,
                "value": phd_identifier_value(
                    device=device_id_value, patient_ref=patient_ref, mdc=mdc, timestamp=stamp
                ),
            },
        )
    meta: dict[str, Any] = {"profile": profiles}
    if quality & C.TEST_FLAGS:
        meta["security"] = [{"system": C.ACT_REASON, "code": "HTEST", "display": "test health data"}]
    tags = [{"system": C.BACKEND_FLAG_SYSTEM, "code": f} for f in flags]
    if hold_reason is not None:
        tags.append({"system": C.HOLD_REASON_SYSTEM, "code": hold_reason.split(":", 1)[0].strip() or "held"})
    if tags:
        meta["tag"] = tags

    extensions: list[dict[str, Any]] = [{"url": C.GATEWAY_EXT, "valueReference": {"reference": gateway_url}}]
    if coincident_url is not None:
        extensions.append({"url": C.COINCIDENT_EXT, "valueReference": {"reference": coincident_url}})
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "meta": meta,
        "extension": extensions,
        "identifier": identifiers,
        "status": status,
        "category": categories,
        "subject": {"reference": patient_url},
        "effectiveDateTime": _iso(reading["measured_at"]),
    }
    if device_url:
        obs["device"] = {"reference": device_url}
    interp = sorted({C.INTERPRETATION_FLAGS[f] for f in quality if f in C.INTERPRETATION_FLAGS})
    if interp:
        # One measurement-status coding per Observation (the slice is 1..1): the first wins,
        # the rest go to the note.
        obs["interpretation"] = [{"coding": [{"system": C.MSMT_STATUS, "code": interp[0]}]}]
    notes = []
    uncoded = sorted(
        f
        for f in quality
        if f not in C.STATUS_BITS
        and f not in C.INTERPRETATION_FLAGS
        and f not in C.TEST_FLAGS
        and f not in C.INVALID_FLAGS
        and f not in C.PRELIMINARY_FLAGS
        and f not in C.UNAVAILABLE_FLAGS
    )
    if uncoded or interp[1:]:
        notes.append("device flags: " + ", ".join([*uncoded, *interp[1:]]))
    if hold_reason is not None:
        notes.append(f"held at ingest: {hold_reason}")
    if notes:
        obs["note"] = [{"text": n} for n in notes]

    if kind is MeasurementKind.BLOOD_PRESSURE:
        obs["code"] = {
            "coding": [
                _mdc(mdc, "MDC_PRESS_BLD_NONINV"),
                {"system": C.LOINC, "code": ks.panel_loinc, "display": "Blood pressure panel"},
            ],
            "text": ks.label_da,
        }
        comps = []
        for c in ks.components:
            if c.name not in components and c.name == "mean_arterial":
                continue
            entry: dict[str, Any] = {
                "code": {"coding": [_mdc(c.mdc), {"system": C.LOINC, "code": c.loinc}], "text": c.label_da},
            }
            v = components.get(c.name)
            if absent is None and isinstance(v, int | float):
                entry["valueQuantity"] = _quantity(v, c.ucum, c.display_unit)
            else:
                entry["dataAbsentReason"] = _dar("error")
            comps.append(entry)
        obs["component"] = comps
        if absent is not None:
            obs["dataAbsentReason"] = _dar(absent)
        return obs
    c = ks.primary
    display = "MDC_PULS_RATE_NON_INV" if mdc == C.PULSE_FROM_CUFF else None
    codings = [_mdc(mdc, display), {"system": C.LOINC, "code": c.loinc}]
    if kind is MeasurementKind.SPO2:
        codings.append({"system": C.LOINC, "code": "2708-6", "display": "Oxygen saturation in Arterial blood"})
    obs["code"] = {"coding": codings, "text": c.label_da}
    v = components.get(c.name)
    if absent is None and isinstance(v, int | float):
        obs["valueQuantity"] = _quantity(v, c.ucum, c.display_unit)
    else:
        obs["dataAbsentReason"] = _dar(absent or "error")
    return obs


def status_observations(
    reading: Mapping[str, Any],
    *,
    measurement_url: str,
    patient_url: str,
    device_url: str | None,
    gateway_url: str,
) -> list[dict[str, Any]]:
    """The device's quality bits, coded: one PhdBitsEnumerationObservation per status attribute
    (ASN1ToHL7 codes, valueBoolean true), derivedFrom the measurement it qualifies."""
    by_attr: dict[tuple[int, str], list[tuple[str, str]]] = {}
    for f in sorted(set(reading.get("quality") or ())):
        if f in C.STATUS_BITS:
            attr, code, display = C.STATUS_BITS[f]
            bits = by_attr.setdefault(attr, [])
            if (code, display) not in bits:
                bits.append((code, display))
    out = []
    for (attr_code, attr_name), bits in by_attr.items():
        obs: dict[str, Any] = {
            "resourceType": "Observation",
            "meta": {"profile": [C.PHD_BITS]},
            "extension": [{"url": C.GATEWAY_EXT, "valueReference": {"reference": gateway_url}}],
            "status": "final",
            "category": [{"coding": [{"system": C.PHD_CATEGORY, "code": "phd", "display": "PHD generated"}]}],
            "code": {"coding": [_mdc(attr_code, attr_name)]},
            "subject": {"reference": patient_url},
            "effectiveDateTime": _iso(reading["measured_at"]),
            "derivedFrom": [{"reference": measurement_url}],
            "component": [
                {"code": {"coding": [{"system": C.ASN1, "code": code, "display": display}]}, "valueBoolean": True}
                for code, display in bits
            ],
        }
        if device_url:
            obs["device"] = {"reference": device_url}
        out.append(obs)
    return out


def coincident_observation(
    reading: Mapping[str, Any], *, device_url: str, gateway_url: str, zone: tzinfo = DEFAULT_ZONE
) -> dict[str, Any]:
    """PhdCoincidentTimeStampObservation: the gateway's time (``agent_received_at``) against the
    device's own time for the same moment; a time fault when the device gave no usable time."""
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "meta": {"profile": [C.PHD_COINCIDENT]},
        "status": "final",
        "code": {"coding": [_mdc(*C.CLOCK_ABSOLUTE)]},
        "subject": {"reference": device_url},
        "effectiveDateTime": _iso(reading["agent_received_at"]),
        "device": {"reference": gateway_url},
    }
    reported = device_time_reported(reading, zone)
    if reported is not None:
        # The device clock has no zone: its reading is stated in the gateway's zone, as the agent
        # would have read it.
        obs["valueDateTime"] = reported.replace(tzinfo=zone).isoformat()
    else:
        obs["dataAbsentReason"] = _dar("unknown")
    return obs


# -- Devices and Patient -----------------------------------------------------------------------


def _version(code: tuple[int, str], value: str) -> dict[str, Any]:
    return {"type": {"coding": [_mdc(*code)]}, "value": value}


def phd_device(d: Mapping[str, Any], kinds: Iterable[str] = ()) -> dict[str, Any]:
    """A PhdDevice from what the agent knows: Bluetooth address, model, manufacturer, serial,
    firmware; the specializations from the kinds it has measured."""
    mac = bt_mac(d["address"])
    identifiers: list[dict[str, Any]] = []
    if mac is not None:
        identifiers.append(
            {
                "type": {"coding": [{"system": C.CONTINUA_IDS, "code": "BTMAC"}]},
                "system": C.BT_MAC_SYSTEM,
                "value": mac,
            }
        )
    else:
        identifiers.append({"system": "urn:nearcare:device-address", "value": d["address"]})
    known = {k.value: k for k in MeasurementKind}
    specs = sorted({C.SPECIALIZATION.get(known[k], C.GENERIC_SPECIALIZATION) for k in kinds if k in known}) or [
        C.GENERIC_SPECIALIZATION
    ]
    res: dict[str, Any] = {
        "resourceType": "Device",
        "meta": {"profile": [C.PHD_DEVICE]},
        "identifier": identifiers,
        "manufacturer": d.get("manufacturer") or "not reported by the device",
        "modelNumber": d.get("model") or "not reported by the device",
        "type": {"coding": [_mdc(*C.PHD_TYPE)]},
        # Bluetooth SIG profiles are mapped "virtually" to the 11073 specializations
        # (Non11073PHDDevices.md); version 1 of each specialization.
        "specialization": [{"systemType": {"coding": [_mdc(code, name)]}, "version": "1"} for code, name in specs],
        "version": [_version(C.VERSION_FW, d.get("firmware") or "not reported")],
        "property": [
            {"type": {"coding": [_mdc(*C.TIME_SYNC_PROTOCOL)]}, "valueCode": [{"coding": [_mdc(*C.TIME_SYNC_NONE)]}]}
        ],
    }
    if d.get("serial"):
        res["serialNumber"] = d["serial"]
    return res


def phg_device(agent_id: str, *, version: str | None = None) -> dict[str, Any]:
    """A PhgDevice for the home gateway (the agent)."""
    return {
        "resourceType": "Device",
        "meta": {"profile": [C.PHG_DEVICE]},
        "identifier": [
            {
                "type": {"coding": [{"system": C.CONTINUA_IDS, "code": "SYSID"}]},
                "system": C.SYSID_SYSTEM,
                "value": gateway_system_id(agent_id),
            },
            {"system": C.AGENT_SYSTEM, "value": agent_id},
        ],
        "manufacturer": "nearcare",
        "modelNumber": "nearcare edge agent",
        "deviceName": [{"name": f"nearcare gateway {agent_id}", "type": "user-friendly-name"}],
        "type": {"coding": [_mdc(*C.PHG_TYPE)]},
        "specialization": [{"systemType": {"coding": [_mdc(*C.GENERIC_SPECIALIZATION)]}, "version": "1"}],
        "version": [_version(C.VERSION_SW, version or "not reported")],
        "property": [
            {"type": {"coding": [_mdc(*C.TIME_SYNC_PROTOCOL)]}, "valueCode": [{"coding": [_mdc(*C.TIME_SYNC_NTP)]}]}
        ],
    }


def phd_patient(patient: Mapping[str, Any]) -> dict[str, Any]:
    identifiers: list[dict[str, Any]] = [
        {
            "type": {"coding": [{"system": C.V2_0203, "code": "MR"}]},
            "system": C.PATIENT_REF_SYSTEM,
            "value": patient["external_ref"],
        }
    ]
    if patient.get("cpr"):
        identifiers.append({"use": "official", "system": C.CPR_SYSTEM, "value": patient["cpr"]})
    res: dict[str, Any] = {
        "resourceType": "Patient",
        "meta": {"profile": [C.PHD_PATIENT]},
        "identifier": identifiers,
        "name": [{"text": patient["name"]}],
    }
    if patient.get("birth_date"):
        res["birthDate"] = patient["birth_date"].isoformat()
    return res


# -- the Bundle --------------------------------------------------------------------------------


def _entry(url: str, resource: dict[str, Any], if_none_exist: str | None = None) -> dict[str, Any]:
    request: dict[str, Any] = {"method": "POST", "url": resource["resourceType"]}
    if if_none_exist:
        request["ifNoneExist"] = if_none_exist
    return {"fullUrl": url, "resource": resource, "request": request}


def _first_identifier(res: Mapping[str, Any]) -> str:
    ident = res["identifier"][0]
    return f"identifier={ident['system']}|{ident['value']}"


def patient_bundle(
    *,
    patient: Mapping[str, Any],
    readings: Sequence[Mapping[str, Any]],
    devices: Mapping[int, Mapping[str, Any]],
    agents: Mapping[str, Mapping[str, Any]] | None = None,
    rejected: Sequence[Mapping[str, Any]] = (),
    now: datetime | None = None,
    zone: tzinfo = DEFAULT_ZONE,
) -> dict[str, Any]:
    """A validated transaction Bundle (a JSON-ready dict): the patient, the PHD and PHG devices
    that measured, one Observation per reading with its status and coincident-timestamp
    Observations, and, if given, the held readings (``rejected``: keys as a reading plus
    ``reason`` and ``device_address``) as entered-in-error."""
    agents = agents or {}
    patient_url = _urn("patient", patient["external_ref"])
    ref = patient["external_ref"]
    pat = phd_patient(patient)
    entries: list[dict[str, Any]] = [_entry(patient_url, pat, _first_identifier(pat))]
    gateways: dict[str, str] = {}
    device_urls: dict[Any, str] = {}
    device_keys: dict[Any, str] = {}
    device_kinds: dict[Any, set[str]] = {}

    for r in [*readings, *rejected]:
        key = r.get("device_id")
        if key is None and r.get("device_address"):
            key = ("address", r["agent_id"], r["device_address"])
        if key is not None:
            device_kinds.setdefault(key, set()).add(r["kind"])
    for key, d in devices.items():
        device_kinds.setdefault(key, set()).update(d.get("kinds") or ())

    def gateway(agent: str) -> str:
        if agent not in gateways:
            gateways[agent] = _urn("gateway", agent)
            res = phg_device(agent, version=(agents.get(agent) or {}).get("version"))
            entries.append(_entry(gateways[agent], res, _first_identifier(res)))
        return gateways[agent]

    def device(key: Any, d: Mapping[str, Any], agent: str) -> str:
        if key not in device_urls:
            device_urls[key] = _urn("device", d["address"], agent)
            device_keys[key] = device_key(d["address"])
            res = phd_device(d, device_kinds.get(key, ()))
            entries.append(_entry(device_urls[key], res, _first_identifier(res)))
        return device_urls[key]

    def add(r: Mapping[str, Any], key: Any, d: Mapping[str, Any] | None, hold: str | None) -> None:
        gw = gateway(r["agent_id"])
        dev_url = device(key, d, r["agent_id"]) if d is not None else None
        obs_url = f"urn:uuid:{r['id']}"
        coincident_url = None
        if hold is None and dev_url is not None and needs_coincident(r, zone):
            coincident_url = _urn("coincident", r["id"])
            entries.append(
                _entry(coincident_url, coincident_observation(r, device_url=dev_url, gateway_url=gw, zone=zone))
            )
        try:
            obs = observation_for(
                r,
                patient_url=patient_url,
                device_url=dev_url,
                gateway_url=gw,
                patient_ref=ref,
                device_id_value=device_keys.get(key) if d is not None else gateway_system_id(r["agent_id"]),
                device_kinds=device_kinds.get(key, ()),
                coincident_url=coincident_url,
                zone=zone,
                hold_reason=hold,
            )
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise FhirExportError(f"reading {r.get('id')} cannot be exported: {exc!r}") from exc
        entries.append(_entry(obs_url, obs, _first_identifier(obs)))
        for i, s in enumerate(
            status_observations(r, measurement_url=obs_url, patient_url=patient_url, device_url=dev_url, gateway_url=gw)
        ):
            entries.append(_entry(_urn("status", r["id"], i), s))

    for r in readings:
        key = r.get("device_id")
        add(r, key, devices.get(key) if key is not None else None, None)
    for r in rejected:
        address = r.get("device_address")
        key = ("address", r["agent_id"], address) if address else None
        here = (address, r["agent_id"])
        known = next((k for k, dv in devices.items() if address and (dv.get("address"), dv.get("agent_id")) == here),
                     None)
        if known is not None:
            key = known
        dev: Mapping[str, Any] | None = devices.get(known) if known is not None else None
        if dev is None and address:
            dev = {"address": address}
        row = dict(r)
        row.setdefault("agent_received_at", row.get("measured_at") or row.get("stored_at"))
        if row.get("measured_at") is None:
            row["measured_at"] = row.get("stored_at") or row["agent_received_at"]
        row.setdefault("device_clock_trusted", True)
        add(row, key, dev, str(r.get("reason") or "held"))

    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "timestamp": _iso(now or datetime.now(UTC)),
        "entry": entries,
    }
    return validated(bundle)


def validated(bundle: dict[str, Any]) -> dict[str, Any]:
    """The bundle after a round trip through the R4B models: refused with
    :class:`FhirExportError` if it does not validate."""
    try:
        model = Bundle.model_validate(bundle)
    except Exception as exc:  # pydantic's ValidationError and fhir_core's own errors alike
        raise FhirExportError(f"FHIR bundle did not validate: {exc}") from exc
    out: dict[str, Any] = json.loads(model.model_dump_json(exclude_none=True))
    return out
