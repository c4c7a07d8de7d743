"""Reading a patient's data for the FHIR export."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from backend.accounts.access import Patient
from backend.fhir.export import patient_bundle

MAX_OBSERVATIONS = 5000


def export_patient(conn: psycopg.Connection, *, patient: Patient, since: datetime | None = None) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        readings = cur.execute(
            """SELECT id, kind, components, measured_at, agent_received_at, quality, device_clock_trusted,
                      agent_id, device_id
               FROM measurements WHERE patient_id = %s AND (%s::timestamptz IS NULL OR measured_at >= %s)
               ORDER BY measured_at DESC LIMIT %s""",
            (patient.id, since, since, MAX_OBSERVATIONS),
        ).fetchall()
        ids = sorted({r["device_id"] for r in readings if r["device_id"] is not None})
        devices = (
            {
                d["id"]: d
                for d in cur.execute(
                    "SELECT id, address, model, manufacturer, serial, firmware FROM devices WHERE id = ANY(%s)", (ids,)
                ).fetchall()
            }
            if ids
            else {}
        )
    return patient_bundle(
        patient={"external_ref": patient.external_ref, "name": patient.name, "birth_date": patient.birth_date},
        readings=readings,
        devices=devices,
    )
