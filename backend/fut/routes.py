"""The admin's FUT page (``/admin/fut``): how the outbox stands (pending, retrying, sent, refused,
not submittable, the age of the oldest undelivered measurement) and the submissions FUT refused,
each with FUT's reason and a "retry" action. A retry is recorded in ``admin_audit`` with the
reason FUT had given (masked like everything FUT says: no CPR number reaches the page or the
record).

Third-party PHD gateways' tokens are on their own page (:mod:`backend.fhir.gateways`).
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import RedirectResponse, Response

from backend.accounts.deps import Admin, Conn, remote_addr
from backend.admin.service import record_admin
from backend.fhir.gateways import pages as gateway_pages
from backend.fut import gauges, outbox
from backend.web.render import render

pages = APIRouter(include_in_schema=False)
pages.include_router(gateway_pages)  # /admin/gateways: the PHD upload's tokens, beside FUT on the admin's side


@pages.get("/admin/fut")
def fut_page(request: Request, p: Admin, conn: Conn,
             retried: Annotated[uuid.UUID | None, Query()] = None,
             gone: Annotated[uuid.UUID | None, Query()] = None) -> Response:
    m = gauges.refresh(conn, force=True)
    assert m is not None
    return render(request, p, "fut.html", m=m, rows=outbox.refused(conn), retried=retried, gone=gone)


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
