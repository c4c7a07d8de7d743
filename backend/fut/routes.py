"""The admin's FUT page (``/admin/fut``): how the outbox stands (pending, retrying, sent, refused,
not submittable, the age of the oldest undelivered measurement) and the submissions FUT refused,
each with FUT's reason and a "retry" action. A retry is recorded in ``admin_audit`` with the
reason FUT had given (masked like everything FUT says: no CPR number reaches the page or the
record).

The page also links a citizen to FUT (the references of the FUT Patient, EpisodeOfCare,
ServiceRequest with its version, and Device) and, optionally, keeps the citizen's CPR number,
sealed (:mod:`backend.fhir.cpr`). The link is recorded in ``admin_audit`` with the references
before and after; of the CPR number only that one was kept. The number is never put back into
the page, not even into a form refused for another field.

Third-party PHD gateways' tokens are on their own page (:mod:`backend.fhir.gateways`).
"""

from __future__ import annotations

import uuid
from dataclasses import asdict
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import RedirectResponse, Response

from backend.accounts.deps import Admin, Conn, remote_addr
from backend.admin.service import record_admin
from backend.fhir import cpr
from backend.fhir.fut import FutLinkError, checked_link
from backend.fhir.gateways import pages as gateway_pages
from backend.fut import gauges, outbox
from backend.web.render import render

pages = APIRouter(include_in_schema=False)
pages.include_router(gateway_pages)  # /admin/gateways: the PHD upload's tokens, beside FUT on the admin's side


def _page(request: Request, p: Any, conn: Any, status: int = 200, **extra: Any) -> Response:
    m = gauges.refresh(conn, force=True)
    assert m is not None
    return render(request, p, "fut.html", status=status, m=m, rows=outbox.refused(conn), links=outbox.links(conn),
                  **extra)


@pages.get("/admin/fut")
def fut_page(request: Request, p: Admin, conn: Conn,
             retried: Annotated[uuid.UUID | None, Query()] = None,
             gone: Annotated[uuid.UUID | None, Query()] = None,
             linked: Annotated[str | None, Query(max_length=200)] = None) -> Response:
    return _page(request, p, conn, retried=retried, gone=gone, linked=linked)


Ref = Annotated[str, Form(max_length=500)]


@pages.post("/admin/fut/links")
def fut_link(request: Request, p: Admin, conn: Conn, patient_ref: Annotated[str, Form(max_length=200)],
             fut_patient: Ref, episode_of_care: Ref, service_request: Ref,
             service_request_version: Annotated[str, Form(max_length=64)], device: Ref,
             cpr_number: Annotated[str, Form(max_length=20)] = "") -> Response:
    """Link a citizen to FUT (or change the references); keep the CPR number, sealed, if given."""
    typed = {"patient_ref": patient_ref, "fut_patient": fut_patient, "episode_of_care": episode_of_care,
             "service_request": service_request, "service_request_version": service_request_version,
             "device": device}  # never the CPR number
    try:
        link = checked_link(patient=fut_patient, episode_of_care=episode_of_care, service_request=service_request,
                            service_request_version=service_request_version, device=device)
        keys = None
        if cpr_number.strip():
            try:
                cpr.normalise(cpr_number)
            except cpr.CprError as exc:
                raise FutLinkError("fut_cpr_bad", str(exc)) from None
            try:
                keys = cpr.keys_from_environment()
            except cpr.CprError as exc:  # a key setting that is not a key
                raise FutLinkError("fut_cpr_no_key", str(exc)) from None
            if keys is None:
                raise FutLinkError("fut_cpr_no_key", "NEARCARE_CPR_KEY is not set: a CPR number cannot be kept")
        with conn.transaction():
            row = conn.execute("SELECT id FROM patients WHERE external_ref = %s", (patient_ref.strip(),)).fetchone()
            if row is None:
                raise FutLinkError("fut_no_patient", "no citizen with that reference")
            pid = int(row[0])
            before = outbox.link_of(conn, patient_id=pid)
            outbox.link_patient(conn, patient_id=pid, link=link)
            if keys is not None:
                cpr.store_cpr(conn, keys, patient_id=pid, cpr=cpr_number)
            after: dict[str, Any] = {**asdict(link), "cpr": "kept, sealed" if keys is not None else "unchanged"}
            record_admin(conn, by=p.user, action="fut link", patient_id=pid,
                         before=asdict(before) if before else None, after=after, remote_addr=remote_addr(request))
        conn.commit()
    except FutLinkError as exc:
        return _page(request, p, conn, status=400, error_key=exc.key, form=typed)
    return RedirectResponse(f"/admin/fut?linked={quote(patient_ref.strip())}", status_code=303)


@pages.post("/admin/fut/{measurement_id}/retry")
def fut_retry(request: Request, p: Admin, conn: Conn, measurement_id: Annotated[uuid.UUID, Path()]) -> Response:
    """Put a refused submission back in line (the sender sends it on its next round)."""
    with conn.transaction():
        done = outbox.retry_refused(conn, measurement_id=measurement_id)
        if done is not None:
            record_admin(conn, by=p.user, action="fut retry", patient_id=done.patient_id,
                         before={"measurement_id": str(done.measurement_id), "state": "refused",
                                 "reason": done.reason},
                         after={"measurement_id": str(done.measurement_id), "state": "retrying"},
                         remote_addr=remote_addr(request))
    conn.commit()
    key = "retried" if done is not None else "gone"
    return RedirectResponse(f"/admin/fut?{key}={measurement_id}", status_code=303)
