"""The JSON API, version 1. Bearer tokens (POST /api/v1/auth/token) or the web session cookie.

Every read of a patient's data goes through :func:`backend.accounts.access.open_patient`,
which checks the scope and writes the audit row. The domain routers (alerting views, review of
green readings, population) are included here, under the same prefix."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from backend import audit
from backend.accounts.access import Patient
from backend.accounts.deps import Conn, CurrentPrincipal, audit_overview, remote_addr
from backend.accounts.model import (
    AuthError,
    PasswordChangeRequired,
    PasswordNotChanged,
    PendingApproval,
    RateLimited,
    Role,
    User,
)
from backend.accounts.store import (
    authenticate,
    change_password,
    create_api_token,
    create_refresh_token,
    refresh,
    revoke_token,
)
from backend.alerting.views.router import router as alerting_views
from backend.api import clinical, schemas
from backend.api.deps import ERRORS, open_patient_or_refuse
from backend.api.schemas import ShortText
from backend.fhir import FhirExportError
from backend.population.router import router as population
from backend.review.router import router as review

router = APIRouter(
    prefix="/api/v1", tags=["api"], responses={400: {"description": "Refused (e.g. a NUL byte in the request)"}}
)


@router.post(
    "/auth/token",
    response_model=schemas.TokenOut,
    tags=["auth"],
    responses={401: {"description": "Wrong username or password"}, 429: {"description": "Rate limited"},
               403: {"description": "The account awaits a second admin's approval (four-eyes), or its password "
                                     "was set by an administrator and must be changed first"}},
)
def token(request: Request, conn: Conn, body: schemas.TokenRequest) -> schemas.TokenOut:
    """Exchange a username and password for a bearer token (30 minutes) and a refresh token
    (12 hours, spent once at ``/auth/refresh``). A wrong password delays the account's next try
    (1, 2, 4 … s after three), it never locks it."""
    with _refused_login(conn):
        try:
            user = authenticate(conn, username=body.username, password=body.password,
                                remote_addr=remote_addr(request))
        except PasswordChangeRequired as exc:
            conn.commit()
            raise HTTPException(403, "the password was set by an administrator: choose your own at "
                                     "POST /api/v1/auth/password") from exc
    return _pair(conn, user, request.app.state.settings.secret_key)


@contextmanager
def _refused_login(conn: Conn) -> Iterator[None]:
    """A refused login or password change answers by its reason, after the attempt is recorded
    (committed: the throttle and the security log count it)."""
    try:
        yield
    except RateLimited as exc:
        conn.commit()
        raise HTTPException(429, str(exc), headers={"Retry-After": str(exc.retry_after_s)}) from exc
    except PendingApproval as exc:
        conn.commit()
        raise HTTPException(403, "the account awaits a second admin's approval") from exc
    except AuthError as exc:
        conn.commit()
        raise HTTPException(401, "wrong username or password") from exc


def _pair(conn: Conn, user: User, secret: str) -> schemas.TokenOut:
    value, expires = create_api_token(conn, user=user, secret=secret)
    refresh_value, refresh_expires = create_refresh_token(conn, user=user, secret=secret)
    conn.commit()
    return schemas.TokenOut(access_token=value, expires_at=expires, refresh_token=refresh_value,
                            refresh_expires_at=refresh_expires)


@router.post(
    "/auth/password",
    response_model=schemas.TokenOut,
    tags=["auth"],
    responses={401: {"description": "Wrong username or password"}, 429: {"description": "Rate limited"},
               403: {"description": "The account awaits a second admin's approval (four-eyes)"},
               409: {"description": "The new password is the current one"}},
)
def token_password(request: Request, conn: Conn, body: schemas.PasswordChangeIn) -> schemas.TokenOut:
    """Set one's own password (needed when an administrator set it: ASVS 2.3.1) and get a token pair."""
    with _refused_login(conn):
        try:
            user = change_password(conn, username=body.username, password=body.password,
                                   new_password=body.new_password, remote_addr=remote_addr(request))
        except PasswordNotChanged as exc:
            conn.rollback()
            raise HTTPException(409, str(exc)) from exc
    return _pair(conn, user, request.app.state.settings.secret_key)


@router.post(
    "/auth/refresh",
    response_model=schemas.TokenOut,
    tags=["auth"],
    responses={401: {"description": "Invalid, used or expired refresh token"}},
)
def token_refresh(request: Request, conn: Conn, body: schemas.RefreshIn) -> schemas.TokenOut:
    """Spend a refresh token (once) for a new access token and a new refresh token."""
    secret = request.app.state.settings.secret_key
    try:
        user = refresh(conn, refresh_token=body.refresh_token, secret=secret)
    except AuthError as exc:
        conn.commit()
        raise HTTPException(401, str(exc), headers={"WWW-Authenticate": "Bearer"}) from exc
    return _pair(conn, user, secret)


@router.post("/auth/revoke", status_code=204, tags=["auth"], responses={401: {"description": "Not logged in"}})
def token_revoke(request: Request, p: CurrentPrincipal, conn: Conn, body: schemas.RevokeIn | None = None) -> Response:
    """Revoke the bearer token of this request at once, and the refresh token given in the body."""
    secret = request.app.state.settings.secret_key
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        revoke_token(conn, token=auth[7:].strip(), secret=secret)
    if body is not None and body.refresh_token:
        revoke_token(conn, token=body.refresh_token, secret=secret)
    conn.commit()
    return Response(status_code=204)


@router.get("/me", response_model=schemas.UserOut, responses=ERRORS)
def me(p: CurrentPrincipal) -> User:
    return p.user


@router.get("/patients", response_model=list[schemas.PatientSummaryOut], responses=ERRORS)
def patients(
    request: Request,
    p: CurrentPrincipal,
    conn: Conn,
    q: ShortText | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> list[clinical.PatientSummary]:
    """The patients you may read (nurse: your team's municipality; specialist: your department)."""
    if p.user.role is Role.ADMIN:
        raise HTTPException(403, "admins see no clinical data")
    rows = clinical.list_patients(conn, user=p.user, search=q, limit=limit, offset=offset)
    audit_overview(request, p, conn, action="api patient list", detail=f"{len(rows)} shown",
                   patient_ids=[r.id for r in rows])
    return rows


@router.get("/patients/{patient_id}", response_model=schemas.PatientOut, responses=ERRORS)
def patient(
    request: Request, p: CurrentPrincipal, conn: Conn, patient_id: Annotated[int, Path(ge=1, le=2**62)]
) -> Patient:
    return open_patient_or_refuse(request, p, conn, patient_id, "api patient")


@router.get("/patients/{patient_id}/trend", response_model=schemas.TrendOut, responses=ERRORS)
def trend(
    request: Request,
    p: CurrentPrincipal,
    conn: Conn,
    patient_id: Annotated[int, Path(ge=1, le=2**62)],
    kind: Annotated[str, Query(pattern="^(spo2|pulse|weight|blood_pressure|temperature|glucose|respiration_rate)$")],
    range: Annotated[str, Query(pattern="^(7d|30d|1y)$")] = "7d",
) -> clinical.Trend:
    """One kind's trend: raw readings up to 7 days, daily mean/min/max beyond."""
    open_patient_or_refuse(request, p, conn, patient_id, "api trend", detail=f"{kind} {range}")
    return clinical.trend(
        conn, patient_id=patient_id, kind=kind, range_key=range, tz=request.app.state.settings.timezone, lang=p.lang
    )


@router.get("/patients/{patient_id}/readings", response_model=list[schemas.ReadingOut], responses=ERRORS)
def readings(
    request: Request,
    p: CurrentPrincipal,
    conn: Conn,
    patient_id: Annotated[int, Path(ge=1, le=2**62)],
    kind: Annotated[str | None, Query(pattern="^[a-z_]{1,32}$")] = None,
    since: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 200,
) -> list[clinical.Reading]:
    open_patient_or_refuse(request, p, conn, patient_id, "api readings", detail=kind)
    if since is not None and since.tzinfo is None:
        raise HTTPException(422, "since needs a time zone")
    return clinical.readings(conn, patient_id=patient_id, since=since, kind=kind, limit=limit)


@router.get("/patients/{patient_id}/readings/{reading_id}", response_model=schemas.ReadingDetailOut, responses=ERRORS)
def reading(
    request: Request,
    p: CurrentPrincipal,
    conn: Conn,
    patient_id: Annotated[int, Path(ge=1, le=2**62)],
    reading_id: UUID,
) -> schemas.ReadingDetailOut:
    open_patient_or_refuse(request, p, conn, patient_id, "api reading detail", detail=str(reading_id))
    d = clinical.reading_detail(conn, patient_id=patient_id, reading_id=reading_id)
    if d is None:
        raise HTTPException(404, "no such reading for this patient")
    return schemas.ReadingDetailOut.model_validate(d)


@router.get("/patients/{patient_id}/rejected", response_model=list[schemas.RejectedOut], responses=ERRORS)
def rejected(
    request: Request, p: CurrentPrincipal, conn: Conn, patient_id: Annotated[int, Path(ge=1, le=2**62)]
) -> list[clinical.Rejected]:
    """Readings kept but not used (implausible values, unknown devices), with their reason."""
    open_patient_or_refuse(request, p, conn, patient_id, "api rejected readings")
    return clinical.rejected(conn, patient_id=patient_id)


class FhirJSONResponse(JSONResponse):
    media_type = "application/fhir+json"


@router.get(
    "/patients/{patient_id}/fhir",
    response_model=schemas.FhirBundleOut,
    response_class=FhirJSONResponse,
    responses={**ERRORS, 200: {"description": "A FHIR R4 transaction Bundle"}},
)
def fhir_export(
    request: Request,
    p: CurrentPrincipal,
    conn: Conn,
    patient_id: Annotated[int, Path(ge=1, le=2**62)],
    since: datetime | None = None,
    rejected: bool = False,
) -> FhirJSONResponse:
    """The patient's readings as a FHIR R4 Bundle (vital-signs profile + PHD IG), validated;
    ``rejected=true`` adds the readings held at ingest as entered-in-error, with the reason."""
    from backend.fhir.query import export_patient

    pt = open_patient_or_refuse(request, p, conn, patient_id, "fhir export", detail=f"since {since}" if since else None)
    if since is not None and since.tzinfo is None:
        raise HTTPException(422, "since needs a time zone")
    try:
        bundle = export_patient(conn, patient=pt, since=since, include_rejected=rejected)
    except FhirExportError as exc:
        raise HTTPException(500, str(exc)) from exc
    return FhirJSONResponse(bundle)


@router.get("/audit", response_model=list[schemas.AuditOut], responses=ERRORS)
def audit_log(
    p: CurrentPrincipal,
    conn: Conn,
    patient_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    actor: ShortText | None = None,
    refused_only: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> list[audit.AuditEntry]:
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


@router.get("/me/log", response_model=schemas.MinLogOut, responses=ERRORS)
def min_log(
    p: CurrentPrincipal,
    conn: Conn,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> schemas.MinLogOut:
    """Min Log: every look at my data, newest first, a page at a time (citizens). Who (name, role,
    organisation; never an address), what, when and why, in Danish; ``next_offset`` pages on."""
    if p.user.role is not Role.CITIZEN or p.user.patient_id is None:
        raise HTTPException(403, "citizens only")
    page = audit.min_log(conn, patient_id=p.user.patient_id, limit=limit, offset=offset)
    return schemas.MinLogOut(entries=page.entries, total=page.total, limit=page.limit, offset=page.offset,
                             next_offset=page.next_offset)


for _domain in (alerting_views, review, population):
    router.include_router(_domain)
