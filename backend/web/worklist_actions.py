"""The worklist's actions (issue 13): kvittering of one alert or all of a citizen's open alerts
with one note, "kvittér alle grønne" on exactly the green rows the nurse saw, and a manual
handover of a citizen's alerts to another team. Each answers the page's script with a short
Danish (or English) message as JSON, and a browser without script with a page or a redirect; a
refused note is never lost (it comes back in the answer)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated

import psycopg
from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from backend import audit
from backend.accounts.access import PatientNotFound, open_patient
from backend.accounts.deps import Conn, CurrentPrincipal, Principal, remote_addr
from backend.accounts.model import AccessDenied
from backend.alerting.errors import AlertingError
from backend.alerting.views import actions as alert_actions
from backend.alerting.views.worklist import HandoverRefused, hand_over
from backend.api.deps import TopicsDep
from backend.messages.service import MAX_LENGTH as MESSAGE_MAX
from backend.messages.service import EmptyMessage, MessageTooLong, checked_body, send_message
from backend.review.router import GreenCacheDep
from backend.review.service import acknowledge_all_green
from backend.web.i18n import translator
from backend.web.render import lang_of, render

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)

NOTE_MAX = 2000
"""The longest kvittering note (the form says so too)."""


def _wants_json(request: Request) -> bool:
    return request.headers.get("x-nearcare-fetch") == "1"


def _answer(
    request: Request, p: Principal, *, ok: bool, message: str, back: str, status: int = 200, note: str = "",
    heading: str = "kvitter", **extra: object,
) -> Response:
    if _wants_json(request):
        return JSONResponse({"ok": ok, "message": message, **extra}, status_code=status if not ok else 200)
    if ok:
        return RedirectResponse(back if back.startswith("/") and not back.startswith("//") else "/worklist", 303)
    t = translator(lang_of(request, p))
    return render(request, p, "error.html", status=status, heading=t(heading), message=message, note=note,
                  back=back if back.startswith("/") and not back.startswith("//") else "/worklist")


def _refuse_role(request: Request, p: Principal, conn: psycopg.Connection, action: str) -> Response | None:
    if p.user.role.clinical:
        return None
    audit.record(conn, actor=p.user, patient_id=None, action=action, detail="refused: needs a nurse or specialist",
                 remote_addr=remote_addr(request), allowed=False, commit=True)
    t = translator(lang_of(request, p))
    return _answer(request, p, ok=False, message=t("forbidden_text"), back="/", status=403)


def _may_change(request: Request, p: Principal, conn: psycopg.Connection, patient_id: int, action: str,
                detail: str) -> bool:
    try:
        open_patient(conn, user=p.user, patient_id=patient_id, action=action, detail=detail,
                     remote_addr=remote_addr(request))
    except (AccessDenied, PatientNotFound):
        return False
    return True


@router.post("/worklist/kvitter")
def kvitter_alerts(
    request: Request,
    p: CurrentPrincipal,
    conn: Conn,
    topics: TopicsDep,
    alert_id: Annotated[list[int], Form()],
    note: Annotated[str, Form()] = "",
    back: Annotated[str, Form()] = "/worklist",
) -> Response:
    """Kvittér one alert, or several of one citizen's ("kvittér alle"), with one note."""
    if (denied := _refuse_role(request, p, conn, "kvittering")) is not None:
        return denied
    t = translator(lang_of(request, p))
    text = note.strip()
    if not text:
        return _answer(request, p, ok=False, message=t("note_empty"), back=back, status=400, note=note)
    if len(text) > NOTE_MAX:
        return _answer(request, p, ok=False, message=t("note_too_long", n=len(text), max=NOTE_MAX), back=back,
                       status=400, note=note)
    done = 0
    for aid in dict.fromkeys(alert_id):
        patient_id = alert_actions.alert_patient(conn, alert_id=aid)
        if patient_id is None or not _may_change(request, p, conn, patient_id, "kvittering", f"alert {aid}"):
            if patient_id is None:
                audit.record(conn, actor=p.user, patient_id=None, action="kvittering",
                             detail=f"refused: unknown alert id {aid}", remote_addr=remote_addr(request),
                             allowed=False, commit=True)
            conn.rollback()
            return _answer(request, p, ok=False, message=t("forbidden_text"), back=back, status=403, note=note)
        try:
            alert_actions.acknowledge(conn, alert_id=aid, user=p.user, note=text, topics=topics)
        except AlertingError:
            conn.rollback()
            return _answer(request, p, ok=False, message=t("action_failed"), back=back, status=409, note=note)
        done += 1
    conn.commit()
    return _answer(request, p, ok=True, message=t("kvitter_done"), back=back, count=done)


@router.post("/worklist/kvitter-shown")
def kvitter_shown_green(
    request: Request,
    p: CurrentPrincipal,
    conn: Conn,
    green: GreenCacheDep,
    topics: TopicsDep,
    patient_id: Annotated[list[int], Form()],
    back: Annotated[str, Form()] = "/worklist",
) -> Response:
    """Kvittér alle grønne, on exactly the green rows the page showed (its search and filter
    applied): a patient with an unresolved alert is never marked seen this way."""
    if (denied := _refuse_role(request, p, conn, "kvittering (green)")) is not None:
        return denied
    t = translator(lang_of(request, p))
    n = acknowledge_all_green(conn, user=p.user, cache=green, topics=topics, remote_addr=remote_addr(request),
                              patient_ids=set(patient_id))
    conn.commit()
    log.info("%s acknowledged %d of %d shown green rows", p.user.username, n, len(patient_id))
    return _answer(request, p, ok=True, message=t("kvitter_green_done", n=n), back=back, count=n)


@router.post("/worklist/handover")
def handover(
    request: Request,
    p: CurrentPrincipal,
    conn: Conn,
    patient_id: Annotated[int, Form()],
    team: Annotated[str, Form(max_length=200)],
    note: Annotated[str, Form()] = "",
    back: Annotated[str, Form()] = "/worklist",
) -> Response:
    """Hand a citizen's unresolved alerts to another team: one action, recorded per alert and in
    the audit log."""
    if (denied := _refuse_role(request, p, conn, "handover")) is not None:
        return denied
    t = translator(lang_of(request, p))
    if len(note.strip()) > NOTE_MAX:
        return _answer(request, p, ok=False, message=t("note_too_long", n=len(note.strip()), max=NOTE_MAX),
                       back=back, status=400, note=note)
    if not _may_change(request, p, conn, patient_id, "handover", f"to team {team}"):
        conn.commit()  # the refusal's audit row
        return _answer(request, p, ok=False, message=t("forbidden_text"), back=back, status=403, note=note)
    try:
        n = hand_over(conn, patient_id=patient_id, team_key=team, by=alert_actions.clinician_name(p.user),
                      note=note.strip())
    except HandoverRefused:
        conn.rollback()
        return _answer(request, p, ok=False, message=t("handover_refused"), back=back, status=409, note=note)
    conn.commit()
    name_row = conn.execute("SELECT name FROM teams WHERE key = %s", (team,)).fetchone()
    return _answer(request, p, ok=True, message=t("handover_done", n=n, team=name_row[0] if name_row else team),
                   back=back, count=n)


@router.post("/patients/{patient_id}/message")
def message_to_citizen(
    request: Request,
    p: CurrentPrincipal,
    conn: Conn,
    topics: TopicsDep,
    patient_id: int,
    body: Annotated[str, Form(max_length=20000)] = "",
    back: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """A message from the care team to the citizen: stored, audited (the citizen's Min Log says who
    sent it), shown on the citizen's page and queued for their tablet. A refused text comes back."""
    back = back or f"/patients/{patient_id}#messages"
    if (refused := _refuse_role(request, p, conn, "message to citizen")) is not None:
        return refused
    t = translator(lang_of(request, p))
    try:
        text = checked_body(body)
    except EmptyMessage:
        return _answer(request, p, ok=False, message=t("message_empty"), back=back, status=400, note=body,
                       heading="message_to_citizen")
    except MessageTooLong as exc:
        return _answer(request, p, ok=False, message=t("message_too_long", n=exc.length, max=MESSAGE_MAX), back=back,
                       status=400, note=body, heading="message_to_citizen")
    if not _may_change(request, p, conn, patient_id, "message to citizen", detail=f"{len(text)} characters"):
        conn.commit()
        return _answer(request, p, ok=False, message=t("forbidden_text"), back=back, status=403, note=body,
                       heading="message_to_citizen")
    sent = send_message(conn, patient_id=patient_id, body=text, user=p.user, topics=topics, now=datetime.now(UTC))
    conn.commit()
    return _answer(request, p, ok=True, message=t("message_sent"), back=back, tablets=sent.tablets)
