"""The JSON API, version 1. Bearer tokens (POST /api/v1/auth/token) or the web session cookie.

Every read of a patient's data goes through :func:`backend.accounts.access.open_patient`,
which checks the scope and writes the audit row."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from backend import audit
from backend.accounts.access import Patient, PatientNotFound, open_patient
from backend.accounts.deps import Conn, CurrentPrincipal, Principal, audit_overview, remote_addr
from backend.accounts.model import AccessDenied, AuthError, RateLimited, Role
from backend.accounts.store import authenticate, create_api_token
from backend.api import alerts, clinical, schemas
from backend.api.schemas import ShortText
from backend.fhir import FhirExportError

router = APIRouter(prefix="/api/v1", tags=["api"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Not logged in"},
    403: {"description": "Outside your scope (audited)"},
    404: {"description": "No such patient"},
}


def _open(
    request: Request, p: Principal, conn: Any, patient_id: int, action: str, detail: str | None = None
) -> Patient:
    try:
        return open_patient(
            conn, user=p.user, patient_id=patient_id, action=action, detail=detail, remote_addr=remote_addr(request)
        )
    except AccessDenied as exc:
        raise HTTPException(403, exc.why) from exc
    except PatientNotFound as exc:
        raise HTTPException(404, "no such patient") from exc


def _clinician(p: Principal) -> None:
    if not p.user.role.clinical:
        raise HTTPException(403, "this needs a nurse or specialist")


@router.post(
    "/auth/token",
    response_model=schemas.TokenOut,
    tags=["auth"],
    responses={401: {"description": "Wrong username or password"}, 429: {"description": "Rate limited"}},
)
def token(request: Request, conn: Conn, body: schemas.TokenRequest) -> Any:
    """Exchange a username and password for a bearer token (30 days)."""
    try:
        user = authenticate(conn, username=body.username, password=body.password, remote_addr=remote_addr(request))
    except RateLimited as exc:
        conn.commit()
        raise HTTPException(429, str(exc), headers={"Retry-After": str(exc.retry_after_s)}) from exc
    except AuthError as exc:
        conn.commit()
        raise HTTPException(401, "wrong username or password") from exc
    value, expires = create_api_token(conn, user=user, secret=request.app.state.settings.secret_key)
    conn.commit()
    return schemas.TokenOut(access_token=value, expires_at=expires)


@router.get("/me", response_model=schemas.UserOut, responses=_ERRORS)
def me(p: CurrentPrincipal) -> Any:
    return p.user


@router.get("/patients", response_model=list[schemas.PatientSummaryOut], responses=_ERRORS)
def patients(
    request: Request,
    p: CurrentPrincipal,
    conn: Conn,
    q: ShortText | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> Any:
    """The patients you may read (nurse: your team's municipality; specialist: your department)."""
    if p.user.role is Role.ADMIN:
        raise HTTPException(403, "admins see no clinical data")
    rows = clinical.list_patients(conn, user=p.user, search=q, limit=limit, offset=offset)
    audit_overview(request, p, conn, action="api patient list", detail=f"{len(rows)} shown")
    return rows


@router.get("/patients/{patient_id}", response_model=schemas.PatientOut, responses=_ERRORS)
def patient(request: Request, p: CurrentPrincipal, conn: Conn, patient_id: Annotated[int, Path(ge=1, le=2**62)]) -> Any:
    return _open(request, p, conn, patient_id, "api patient")


@router.get("/patients/{patient_id}/trend", response_model=schemas.TrendOut, responses=_ERRORS)
def trend(
    request: Request,
    p: CurrentPrincipal,
    conn: Conn,
    patient_id: Annotated[int, Path(ge=1, le=2**62)],
    kind: Annotated[str, Query(pattern="^(spo2|pulse|weight|blood_pressure|temperature|glucose|respiration_rate)$")],
    range: Annotated[str, Query(pattern="^(7d|30d|1y)$")] = "7d",
) -> Any:
    """One kind's trend: raw readings up to 7 days, daily mean/min/max beyond."""
    _open(request, p, conn, patient_id, "api trend", detail=f"{kind} {range}")
    return clinical.trend(
        conn, patient_id=patient_id, kind=kind, range_key=range, tz=request.app.state.settings.timezone, lang=p.lang
    )


@router.get("/patients/{patient_id}/readings", response_model=list[schemas.ReadingOut], responses=_ERRORS)
def readings(
    request: Request,
    p: CurrentPrincipal,
    conn: Conn,
    patient_id: Annotated[int, Path(ge=1, le=2**62)],
    kind: Annotated[str | None, Query(pattern="^[a-z_]{1,32}$")] = None,
    since: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 200,
) -> Any:
    _open(request, p, conn, patient_id, "api readings", detail=kind)
    if since is not None and since.tzinfo is None:
        raise HTTPException(422, "since needs a time zone")
    return clinical.readings(conn, patient_id=patient_id, since=since, kind=kind, limit=limit)


@router.get("/patients/{patient_id}/readings/{reading_id}", response_model=schemas.ReadingDetailOut, responses=_ERRORS)
def reading(
    request: Request,
    p: CurrentPrincipal,
    conn: Conn,
    patient_id: Annotated[int, Path(ge=1, le=2**62)],
    reading_id: UUID,
) -> Any:
    _open(request, p, conn, patient_id, "api reading detail", detail=str(reading_id))
    d = clinical.reading_detail(conn, patient_id=patient_id, reading_id=reading_id)
    if d is None:
        raise HTTPException(404, "no such reading for this patient")
    return schemas.ReadingDetailOut.model_validate(d)


@router.get("/patients/{patient_id}/rejected", response_model=list[schemas.RejectedOut], responses=_ERRORS)
def rejected(
    request: Request, p: CurrentPrincipal, conn: Conn, patient_id: Annotated[int, Path(ge=1, le=2**62)]
) -> Any:
    """Readings kept but not used (implausible values, unknown devices), with their reason."""
    _open(request, p, conn, patient_id, "api rejected readings")
    return clinical.rejected(conn, patient_id=patient_id)


@router.get(
    "/patients/{patient_id}/fhir",
    responses={
        **_ERRORS,
        200: {"content": {"application/fhir+json": {}}, "description": "A FHIR R4 transaction Bundle"},
    },
)
def fhir_export(
    request: Request,
    p: CurrentPrincipal,
    conn: Conn,
    patient_id: Annotated[int, Path(ge=1, le=2**62)],
    since: datetime | None = None,
) -> JSONResponse:
    """The patient's readings as a FHIR R4 Bundle (vital-signs profile + PHD IG), validated."""
    from backend.fhir.query import export_patient

    pt = _open(request, p, conn, patient_id, "fhir export", detail=f"since {since}" if since else None)
    if since is not None and since.tzinfo is None:
        raise HTTPException(422, "since needs a time zone")
    try:
        bundle = export_patient(conn, patient=pt, since=since)
    except FhirExportError as exc:
        raise HTTPException(500, str(exc)) from exc
    return JSONResponse(bundle, media_type="application/fhir+json")


@router.get("/worklist", responses=_ERRORS)
def worklist(request: Request, p: CurrentPrincipal, conn: Conn, team: ShortText | None = None) -> Any:
    """One row per patient: worst open severity first, then oldest."""
    _clinician(p)
    view = alerts.worklist(conn, user=p.user, team_key=team)
    audit_overview(request, p, conn, action="api worklist", detail=f"{len(view.rows)} patients")
    # Serialised here, not by FastAPI's generic encoder, which dominated this hot endpoint.
    return Response(json.dumps(alerts.worklist_json(view)), media_type="application/json")


def _change_alert(
    request: Request, p: Principal, conn: Any, alert_id: int, *, action: str, change: Callable[[], object]
) -> None:
    """A clinician's change to one alert: scope check and audit row on its patient, the change
    (alerting's refusal is a 409), commit."""
    _clinician(p)
    patient_id = alerts.alert_patient(conn, alert_id=alert_id)
    if patient_id is None:
        raise HTTPException(404, "no such alert")
    _open(request, p, conn, patient_id, action, detail=f"alert {alert_id}")
    from backend.alerting import AlertingError

    try:
        change()
    except AlertingError as exc:
        raise HTTPException(409, str(exc)) from exc
    conn.commit()


_ALERT_CHANGE: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    404: {"description": "No such alert"},
    409: {"description": "Refused by the alert's state"},
}


@router.post("/alerts/{alert_id}/acknowledge", responses=_ALERT_CHANGE)
def acknowledge(
    request: Request,
    p: CurrentPrincipal,
    conn: Conn,
    alert_id: Annotated[int, Path(ge=1, le=2**62)],
    body: schemas.AcknowledgeIn,
) -> Any:
    """Kvittér an alert with a note."""
    _change_alert(
        request,
        p,
        conn,
        alert_id,
        action="api kvittering",
        change=lambda: alerts.acknowledge(
            conn, runtime=request.app.state.runtime, alert_id=alert_id, user=p.user, note=body.note
        ),
    )
    return {"alert_id": alert_id, "acknowledged_by": p.user.username}


@router.post("/alerts/{alert_id}/resolve", responses=_ALERT_CHANGE)
def resolve(
    request: Request,
    p: CurrentPrincipal,
    conn: Conn,
    alert_id: Annotated[int, Path(ge=1, le=2**62)],
    body: schemas.ResolveIn,
) -> Any:
    """Afslut an alert by hand, with a note."""
    _change_alert(
        request,
        p,
        conn,
        alert_id,
        action="api resolve alert",
        change=lambda: alerts.resolve(conn, alert_id=alert_id, user=p.user, note=body.note),
    )
    return {"alert_id": alert_id, "resolved_by": p.user.username}


@router.post("/alerts/{alert_id}/snooze", responses=_ALERT_CHANGE)
def snooze(
    request: Request,
    p: CurrentPrincipal,
    conn: Conn,
    alert_id: Annotated[int, Path(ge=1, le=2**62)],
    body: schemas.SnoozeIn,
) -> Any:
    """Udsæt an alert until a time (with its zone), with a reason: no escalation until then."""
    _change_alert(
        request,
        p,
        conn,
        alert_id,
        action="api snooze alert",
        change=lambda: alerts.snooze(conn, alert_id=alert_id, user=p.user, until=body.until, reason=body.reason),
    )
    return {"alert_id": alert_id, "snoozed_until": body.until.isoformat(), "snoozed_by": p.user.username}


@router.get("/patients/{patient_id}/alerts", responses=_ERRORS)
def alert_history(
    request: Request, p: CurrentPrincipal, conn: Conn, patient_id: Annotated[int, Path(ge=1, le=2**62)]
) -> Any:
    """Every alert of the patient with every transition."""
    _open(request, p, conn, patient_id, "api alert history")
    return alerts.history_json(conn, patient_id=patient_id)


@router.get("/patients/{patient_id}/thresholds", responses=_ERRORS)
def thresholds(
    request: Request, p: CurrentPrincipal, conn: Conn, patient_id: Annotated[int, Path(ge=1, le=2**62)]
) -> Any:
    _open(request, p, conn, patient_id, "api thresholds")
    return alerts.thresholds_json(conn, patient_id=patient_id)


@router.put("/patients/{patient_id}/thresholds", responses={**_ERRORS, 400: {"description": "Refused change"}})
def set_threshold(
    request: Request,
    p: CurrentPrincipal,
    conn: Conn,
    patient_id: Annotated[int, Path(ge=1, le=2**62)],
    body: schemas.ThresholdIn,
) -> Any:
    """Set (or, with value null, clear) a personal threshold. A reason is required."""
    _clinician(p)
    _open(request, p, conn, patient_id, "threshold change", detail=f"{body.rule_id}.{body.field}")
    error = alerts.edit_threshold(
        conn,
        patient_id=patient_id,
        rule_id=body.rule_id,
        field=body.field,
        value="" if body.value is None else str(body.value),
        reason=body.reason,
        user=p.user,
        clear=body.value is None,
    )
    if error:
        raise HTTPException(400, error)
    conn.commit()
    return alerts.thresholds_json(conn, patient_id=patient_id)


@router.get("/population", responses=_ERRORS)
def population(request: Request, p: CurrentPrincipal, conn: Conn) -> Any:
    """Patients ranked by risk, adherence, and the alert burden per team."""
    _clinician(p)
    view = alerts.population(conn, user=p.user)
    audit_overview(request, p, conn, action="api population", detail=f"{len(view['patients'])} patients")
    return view


@router.get("/audit", response_model=list[schemas.AuditOut], responses=_ERRORS)
def audit_log(
    p: CurrentPrincipal,
    conn: Conn,
    patient_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    actor: ShortText | None = None,
    refused_only: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> Any:
    """The read audit (admins)."""
    if p.user.role is not Role.ADMIN:
        raise HTTPException(403, "admins only")
    return audit.entries(
        conn,
        patient_id=patient_id,
        actor_prefix=actor,
        allowed=False if refused_only else None,
        limit=limit,
        offset=offset,
    )


@router.get("/me/log", response_model=list[schemas.AuditOut], responses=_ERRORS)
def min_log(p: CurrentPrincipal, conn: Conn) -> Any:
    """Min Log: who looked at my data (citizens)."""
    if p.user.role is not Role.CITIZEN or p.user.patient_id is None:
        raise HTTPException(403, "citizens only")
    return audit.entries(conn, patient_id=p.user.patient_id)
