"""Opening a patient's record: the scope check and the audit row, always together."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import psycopg

from backend import audit
from backend.accounts.model import AccessDenied, User
from backend.accounts.scope import can_read_patient
from backend.errors import BackendError


class PatientNotFound(BackendError):
    def __init__(self, patient_id: int) -> None:
        super().__init__(f"no patient {patient_id}")
        self.patient_id = patient_id


@dataclass(frozen=True, slots=True)
class Patient:
    id: int
    external_ref: str
    name: str
    birth_date: date | None
    programme: str
    municipality: str
    department: str | None
    active: bool


def open_patient(
    conn: psycopg.Connection,
    *,
    user: User,
    patient_id: int,
    action: str,
    detail: str | None = None,
    remote_addr: str | None = None,
) -> Patient:
    """The patient row if ``user`` may read it, with an audit row either way.

    A refusal (and a look-up of an unknown id) is committed at once, then raised."""
    row = conn.execute(
        "SELECT id, external_ref, name, birth_date, programme, municipality, department, active"
        " FROM patients WHERE id = %s",
        (patient_id,),
    ).fetchone()
    if row is None:
        audit.record(
            conn,
            actor=user,
            patient_id=None,
            action=action,
            allowed=False,
            detail=f"unknown patient id {patient_id}",
            remote_addr=remote_addr,
            commit=True,
        )
        raise PatientNotFound(patient_id)
    patient = Patient(*row)
    ok, why = can_read_patient(
        user, patient_id=patient.id, municipality=patient.municipality, department=patient.department
    )
    if not ok:
        audit.record(
            conn,
            actor=user,
            patient_id=patient.id,
            action=action,
            allowed=False,
            detail=f"refused: {why}" + (f"; {detail}" if detail else ""),
            remote_addr=remote_addr,
            commit=True,
        )
        raise AccessDenied(user=user.username, patient_id=patient.id, why=why)
    # Committed before any data is read: no look goes unrecorded, even if the request fails later.
    audit.record(
        conn, actor=user, patient_id=patient.id, action=action, detail=detail, remote_addr=remote_addr, commit=True
    )
    return patient
