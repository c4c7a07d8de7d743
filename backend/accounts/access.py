"""Opening a patient's record: the scope check and the audit row, always together.

The patient row is the registry's (:class:`backend.registry.Patient`), re-exported here."""

from __future__ import annotations

import psycopg

from backend import audit
from backend.accounts.model import AccessDenied, User
from backend.accounts.scope import can_read_patient
from backend.errors import BackendError
from backend.registry import Patient, RegistryNotFound, get_patient


class PatientNotFound(BackendError):
    def __init__(self, patient_id: int) -> None:
        super().__init__(f"no patient {patient_id}")
        self.patient_id = patient_id


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
    try:
        patient = get_patient(conn, patient_id=patient_id)
    except RegistryNotFound:
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
        raise PatientNotFound(patient_id) from None
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


__all__ = ["Patient", "PatientNotFound", "open_patient"]
