"""Reading a patient's data for the FHIR export."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

import psycopg
from psycopg.rows import dict_row

from backend.accounts.access import Patient
from backend.fhir import cpr
from backend.fhir.export import DEFAULT_ZONE, patient_bundle

MAX_OBSERVATIONS = 5000


def export_patient(
    conn: psycopg.Connection,
    *,
    patient: Patient,
    since: datetime | None = None,
    include_rejected: bool = False,
    zone: tzinfo = DEFAULT_ZONE,
    cpr_keys: cpr.CprKeys | None = None,
) -> dict[str, Any]:
    """The patient's readings as a PHD transaction Bundle; ``include_rejected`` adds the readings
    held at ingest (implausible values, unknown devices...) as entered-in-error Observations.
    The Patient carries the citizen's CPR number where one is kept (opened with ``cpr_keys``,
    default the process's ``NEARCARE_CPR_KEY``)."""
    number = cpr.cpr_of(conn, cpr_keys or cpr.keys_from_environment(), patient_id=patient.id)
    with conn.cursor(row_factory=dict_row) as cur:
        readings = cur.execute(
            """SELECT id, kind, components, measured_at, agent_received_at, quality, flags, device_clock_trusted,
                      agent_id, device_id, raw_characteristic, raw
               FROM measurements WHERE patient_id = %s AND (%s::timestamptz IS NULL OR measured_at >= %s)
               ORDER BY measured_at DESC LIMIT %s""",
            (patient.id, since, since, MAX_OBSERVATIONS),
        ).fetchall()
        rejected: list[dict[str, Any]] = []
        if include_rejected:
            rejected = cur.execute(
                """SELECT id, kind, components, measured_at, stored_at, agent_id, device_address, reason,
                          COALESCE(envelope->'quality', '[]'::jsonb) AS quality_json
                   FROM rejected_readings
                   WHERE patient_id = %s AND (%s::timestamptz IS NULL OR COALESCE(measured_at, stored_at) >= %s)
                   ORDER BY stored_at DESC LIMIT %s""",
                (patient.id, since, since, MAX_OBSERVATIONS),
            ).fetchall()
            for r in rejected:
                q = r.pop("quality_json")
                r["quality"] = [f for f in q if isinstance(f, str)] if isinstance(q, list) else []
        agent_ids = sorted({r["agent_id"] for r in [*readings, *rejected]})
        ids = sorted({r["device_id"] for r in readings if r["device_id"] is not None})
        devices: dict[Any, dict[str, Any]] = {}
        if ids or agent_ids:
            for d in cur.execute(
                # The kinds a device measured (its specializations) come from the readings exported.
                """SELECT d.id, d.agent_id, d.address, d.model, d.manufacturer, d.serial, d.firmware
                   FROM devices d WHERE d.id = ANY(%s) OR d.agent_id = ANY(%s)""",
                (ids, agent_ids),
            ).fetchall():
                devices[d["id"]] = d
        agents = {
            a["id"]: a
            for a in cur.execute("SELECT id, version FROM agents WHERE id = ANY(%s)", (agent_ids,)).fetchall()
        }
    return patient_bundle(
        patient={"external_ref": patient.external_ref, "name": patient.name, "birth_date": patient.birth_date,
                 "cpr": number},
        readings=readings,
        devices=devices,
        agents=agents,
        rejected=rejected,
        zone=zone,
    )
