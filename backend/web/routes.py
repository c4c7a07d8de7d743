"""Server-rendered pages: login, worklist (live), patients, patient page with trends, reading
detail, population, audit, Min Log, and the citizen's own page. Admin pages are in
:mod:`backend.admin.web`."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode
from uuid import UUID
from zoneinfo import ZoneInfo

import psycopg
from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from backend import audit
from backend.accounts.access import Patient, PatientNotFound, open_patient
from backend.accounts.deps import (
    SESSION_COOKIE,
    Conn,
    CurrentPrincipal,
    Principal,
    audit_overview,
    audit_role_refusal,
    optional_principal,
    remote_addr,
)
from backend.accounts.model import (
    AccessDenied,
    AuthError,
    PasswordChangeRequired,
    PasswordNotChanged,
    PendingApproval,
    RateLimited,
    Role,
    User,
    WeakPassword,
    WrongPassword,
)
from backend.accounts.scope import scope_clause
from backend.accounts.store import (
    MAX_PASSWORD,
    SESSION_TTL,
    authenticate,
    change_password,
    create_session,
    delete_session,
)
from backend.alerting.config import AlertingConfig
from backend.alerting.errors import AlertingError
from backend.alerting.views import actions as alert_actions
from backend.alerting.views.history import alert_markers
from backend.alerting.views.patient import add_passive, edit_plan, patient_panels
from backend.alerting.views.thresholds import edit_threshold, threshold_bands
from backend.alerting.views.thresholds import thresholds as threshold_rows
from backend.alerting.views.worklist import patient_alerts
from backend.alerting.views.worklist import worklist as scoped_worklist
from backend.api import clinical
from backend.api.deps import Config, TopicsDep, worklist_shown
from backend.messages.service import MAX_LENGTH as MESSAGE_MAX
from backend.messages.service import mark_read, messages_for
from backend.population.service import population as population_view
from backend.review.router import GreenCacheDep
from backend.review.service import acknowledge_all_green
from backend.web.i18n import programme_words, threshold_words, translator
from backend.web.render import STATIC, lang_of, render
from backend.web.threshold_form import FormError, check_reason, check_value, parse_value, rule_field_words, value_text

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)
LOGIN_CSRF_COOKIE = "nearcare_login_csrf"
SSE_LIFETIME_S = 25.0

HOME = {Role.NURSE: "/worklist", Role.SPECIALIST: "/worklist", Role.CITIZEN: "/me", Role.ADMIN: "/admin"}


def _secure(request: Request) -> bool:
    """Secure cookies always outside demo mode (a TLS proxy sits in front: deploy/compose.yaml);
    in demo mode only over https."""
    return request.url.scheme == "https" or not request.app.state.settings.demo


class _StaticFiles(StaticFiles):
    """The web's CSS and scripts, cached by browsers for an hour."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers.setdefault("Cache-Control", "public, max-age=3600")
        return response


def static_files() -> StaticFiles:
    """Mounted at ``/static`` by :func:`backend.app.create_app`."""
    return _StaticFiles(directory=STATIC)


@router.get("/")
async def home(request: Request) -> Response:
    p = await optional_principal(request)
    if p is None:
        return RedirectResponse("/login", 303)
    return RedirectResponse(HOME[p.user.role], 303)


def _demo_logins(request: Request) -> list[str]:
    """In demo mode only: the demo users, so a visitor can try each role."""
    if not request.app.state.settings.demo:
        return []
    from backend.accounts.demo import DEMO_PASSWORD, DEMO_USERS

    return [f"{name} / {DEMO_PASSWORD}" for name in DEMO_USERS]


def _safe_next(value: str | None) -> str:
    # Only local paths: never an open redirect to another site.
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return ""


@router.get("/login")
def login_page(request: Request, next: str | None = None) -> Response:
    token = secrets.token_urlsafe(16)
    resp = render(
        request,
        None,
        "login.html",
        login_csrf=token,
        next=_safe_next(next),
        error=None,
        demo_logins=_demo_logins(request),
    )
    resp.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", secure=_secure(request), max_age=3600)
    return resp


def _login_again(request: Request, status: int, error: str, next: str, change_for: str | None = None) -> Response:
    """The login page again with what went wrong; with ``change_for`` the form that sets the user's
    own password in place of one an administrator set."""
    token = secrets.token_urlsafe(16)
    resp = render(
        request,
        None,
        "login.html",
        status=status,
        login_csrf=token,
        next=_safe_next(next),
        error=error,
        change_for=change_for,
        demo_logins=_demo_logins(request),
    )
    resp.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", secure=_secure(request))
    return resp


def _logged_in(request: Request, conn: psycopg.Connection, user: User, next: str) -> Response:
    session, _ = create_session(
        conn, user=user, secret=request.app.state.settings.secret_key, remote_addr=remote_addr(request)
    )
    conn.commit()  # before the browser follows the redirect with the new cookie
    done = RedirectResponse(_safe_next(next) or HOME[user.role], 303)
    done.set_cookie(
        SESSION_COOKIE,
        session,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
        max_age=int(SESSION_TTL.total_seconds()),
    )
    done.delete_cookie(LOGIN_CSRF_COOKIE)
    return done


def _login_error(t: Callable[..., str], exc: AuthError) -> tuple[int, str]:
    """The status of a refused login, and what the login page says."""
    if isinstance(exc, RateLimited):
        return 429, t("rate_limited", s=exc.retry_after_s)
    if isinstance(exc, PendingApproval):
        return 403, t("pending_approval")
    if isinstance(exc, WrongPassword):
        # Warned before the delay sets in (issue 13: the lockout came without warning).
        return 401, (t("wrong_login_tries", n=exc.tries_left) if exc.tries_left else t("wrong_login_wait"))
    if isinstance(exc, WeakPassword):
        return 400, t("password_too_short", n=exc.minimum)
    if isinstance(exc, PasswordNotChanged):
        return 400, t("password_not_changed")
    return 401, t("wrong_login")


def _login_csrf_ok(request: Request, csrf: str) -> bool:
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    return bool(cookie) and secrets.compare_digest(cookie, csrf)


@router.post("/login")
def login(
    request: Request,
    conn: Conn,
    username: Annotated[str, Form()],
    password: Annotated[str, Form()],
    csrf: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    t = translator(lang_of(request, None))  # ?lang=, else the language cookie the login page set
    if not _login_csrf_ok(request, csrf):
        return _login_again(request, 403, "CSRF", next)
    try:
        user = authenticate(conn, username=username, password=password, remote_addr=remote_addr(request))
    except PasswordChangeRequired:
        # ASVS 2.3.1: a password an administrator chose is not the long-term one.
        conn.commit()
        return _login_again(request, 403, t("password_change_required"), next, change_for=username.strip().lower())
    except AuthError as exc:
        conn.commit()
        return _login_again(request, *_login_error(t, exc), next)
    return _logged_in(request, conn, user, next)


@router.post("/login/password")
def login_change_password(
    request: Request,
    conn: Conn,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=MAX_PASSWORD)],
    new_password: Annotated[str, Form(max_length=MAX_PASSWORD)],
    repeat: Annotated[str, Form(max_length=MAX_PASSWORD)],
    csrf: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    """The user's own password in place of one an administrator set, then logged in."""
    t = translator(lang_of(request, None))  # ?lang=, else the language cookie the login page set
    if not _login_csrf_ok(request, csrf):
        return _login_again(request, 403, "CSRF", next, change_for=username)
    if new_password != repeat:
        return _login_again(request, 400, t("password_mismatch"), next, change_for=username)
    try:
        user = change_password(conn, username=username, password=password, new_password=new_password,
                               remote_addr=remote_addr(request))
    except (WeakPassword, PasswordNotChanged) as exc:
        conn.rollback()
        return _login_again(request, *_login_error(t, exc), next, change_for=username)
    except AuthError as exc:
        conn.commit()
        return _login_again(request, *_login_error(t, exc), next)
    return _logged_in(request, conn, user, next)


@router.post("/logout")
def logout(request: Request, p: CurrentPrincipal, conn: Conn) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        delete_session(conn, token=token, secret=request.app.state.settings.secret_key)
        conn.commit()
    resp = RedirectResponse("/login", 303)
    resp.delete_cookie(SESSION_COOKIE)
    return resp


def _clinician(request: Request, p: Principal) -> Response | None:
    if p.user.role.clinical:
        return None
    audit_role_refusal(request, p, "this needs a nurse or specialist")
    t = translator(p.lang)
    return render(request, p, "error.html", status=403, heading=t("forbidden"), message=t("forbidden_text"))


def _open(
    request: Request, p: Principal, conn: psycopg.Connection, patient_id: int, action: str, detail: str | None = None
) -> Patient | Response:
    """The patient, or a rendered 403/404 page (the refusal is already in the audit log)."""
    t = translator(p.lang)
    try:
        return open_patient(
            conn, user=p.user, patient_id=patient_id, action=action, detail=detail, remote_addr=remote_addr(request)
        )
    except (AccessDenied, PatientNotFound):
        # The same page for both (no oracle of which ids exist); both are in the audit log.
        return render(request, p, "error.html", status=403, heading=t("forbidden"), message=t("forbidden_text"))


# ---- worklist -------------------------------------------------------------------------------


@router.get("/worklist")
def worklist_page(
    request: Request, p: CurrentPrincipal, conn: Conn, green: GreenCacheDep, team: str | None = None
) -> Response:
    if (denied := _clinician(request, p)) is not None:
        return denied
    view = scoped_worklist(conn, user=p.user, green=green, team_key=team)
    detail = f"{len(view.rows)} patients" + (f", team {team}" if team else "")
    audit_overview(request, p, conn, action="worklist", detail=detail, patient_ids=worklist_shown(view))
    return render(request, p, "worklist.html", view=view, team=team)


@router.get("/worklist/rows")
def worklist_rows(
    request: Request, p: CurrentPrincipal, conn: Conn, green: GreenCacheDep, team: str | None = None
) -> Response:
    if (denied := _clinician(request, p)) is not None:
        return denied
    view = scoped_worklist(conn, user=p.user, green=green, team_key=team)
    audit_overview(request, p, conn, action="worklist refresh", detail=f"{len(view.rows)} patients",
                   patient_ids=worklist_shown(view))
    return render(request, p, "worklist_rows.html", view=view, team=team)


def _change_alert(
    request: Request,
    p: Principal,
    conn: psycopg.Connection,
    alert_id: int,
    *,
    action: str,
    heading: str,
    back: str,
    change: Callable[[], object],
) -> Response:
    """A clinician's change to one alert: scope check and audit row on the alert's patient, the
    change (alerting refuses a wrong one: 409), commit, then back to where the form was."""
    if (denied := _clinician(request, p)) is not None:
        return denied
    patient_id = alert_actions.alert_patient(conn, alert_id=alert_id)
    if patient_id is None:
        audit.record_refusal(conn, actor=p.user, action=action, detail=f"unknown alert id {alert_id}",
                             remote_addr=remote_addr(request))
        t = translator(p.lang)
        return render(request, p, "error.html", status=403, heading=t("forbidden"), message=t("forbidden_text"))
    opened = _open(request, p, conn, patient_id, action, detail=f"alert {alert_id}")
    if isinstance(opened, Response):
        return opened
    try:
        change()
    except AlertingError as exc:
        t = translator(p.lang)
        return render(request, p, "error.html", status=409, heading=t(heading), message=str(exc))
    conn.commit()
    return RedirectResponse(_safe_next(back) or "/worklist", 303)


@router.post("/alerts/{alert_id}/kvitter")
def kvitter(
    request: Request,
    p: CurrentPrincipal,
    conn: Conn,
    topics: TopicsDep,
    alert_id: int,
    note: Annotated[str, Form(max_length=2000)] = "",
    back: Annotated[str, Form()] = "",
) -> Response:
    return _change_alert(
        request,
        p,
        conn,
        alert_id,
        action="kvittering",
        heading="kvitter",
        back=back,
        change=lambda: alert_actions.acknowledge(conn, alert_id=alert_id, user=p.user, note=note, topics=topics),
    )


@router.post("/alerts/{alert_id}/resolve")
def resolve(
    request: Request,
    p: CurrentPrincipal,
    conn: Conn,
    config: Config,
    alert_id: int,
    note: Annotated[str, Form(min_length=1, max_length=2000)],
    back: Annotated[str, Form()] = "",
) -> Response:
    return _change_alert(
        request,
        p,
        conn,
        alert_id,
        action="resolve alert",
        heading="resolve",
        back=back,
        change=lambda: alert_actions.resolve(conn, alert_id=alert_id, user=p.user, note=note, config=config),
    )


def _local_time(value: str, tz: str) -> datetime | None:
    """A form's ``datetime-local`` (no zone: the clinician's wall clock) as an aware time."""
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return None
    return t.replace(tzinfo=ZoneInfo(tz)) if t.tzinfo is None else t


@router.post("/alerts/{alert_id}/snooze")
def snooze(
    request: Request,
    p: CurrentPrincipal,
    conn: Conn,
    config: Config,
    alert_id: int,
    until: Annotated[str, Form(max_length=40)],
    reason: Annotated[str, Form(min_length=1, max_length=2000)],
    back: Annotated[str, Form()] = "",
) -> Response:
    ends = _local_time(until, request.app.state.settings.timezone)
    if ends is None:
        t = translator(p.lang)
        return render(request, p, "error.html", status=400, heading=t("snooze"), message=t("bad_time", value=until))
    return _change_alert(
        request,
        p,
        conn,
        alert_id,
        action="snooze alert",
        heading="snooze",
        back=back,
        change=lambda: alert_actions.snooze(
            conn, alert_id=alert_id, user=p.user, until=ends, reason=reason, config=config
        ),
    )


@router.post("/worklist/kvitter-green")
def kvitter_all_green(
    request: Request,
    p: CurrentPrincipal,
    conn: Conn,
    green: GreenCacheDep,
    topics: TopicsDep,
    team: Annotated[str, Form()] = "",
) -> Response:
    if (denied := _clinician(request, p)) is not None:
        return denied
    n = acknowledge_all_green(conn, user=p.user, cache=green, topics=topics, remote_addr=remote_addr(request))
    conn.commit()
    log.info("%s acknowledged %d green rows", p.user.username, n)
    return RedirectResponse("/worklist" + (f"?team={team}" if team else ""), 303)


# ---- live events ----------------------------------------------------------------------------


SCOPE_REFRESH_S = 60.0


def _patients_in_scope(request: Request, p: Principal) -> frozenset[int]:
    """The citizens whose events this viewer may hear of (issue 12: the stream told a citizen or an
    admin the timing of other citizens' readings)."""
    if p.user.role is Role.CITIZEN:
        return frozenset({p.user.patient_id} if p.user.patient_id is not None else ())
    if not p.user.role.clinical:
        return frozenset()
    where, params = scope_clause(p.user)
    with request.app.state.runtime.pool.connection() as conn:
        return frozenset(int(r[0]) for r in conn.execute(f"SELECT p.id FROM patients p WHERE {where}", params))


@router.get("/events")
async def events(request: Request, p: CurrentPrincipal) -> Response:
    """Server-sent events: "alert" when an alert changed, "reading" when readings arrived, for the
    citizens in the viewer's scope only (the client re-reads its scoped rows). Admins get none."""
    if not (p.user.role.clinical or p.user.role is Role.CITIZEN):
        audit_role_refusal(request, p, "no live events for this role")
        raise HTTPException(403, "no live events for this role")
    hub = request.app.state.runtime.events
    scope = await run_in_threadpool(_patients_in_scope, request, p)
    scope_at = asyncio.get_running_loop().time()
    queue = hub.subscribe()

    async def stream() -> AsyncIterator[bytes]:
        nonlocal scope, scope_at
        # A stream lives at most SSE_LIFETIME_S, then the browser reconnects (and re-reads its rows):
        # an open stream would otherwise hold a server shutdown until every browser tab closes.
        loop = asyncio.get_running_loop()
        ends = loop.time() + SSE_LIFETIME_S
        try:
            yield b"retry: 2000\n: connected\n\n"
            while (left := ends - loop.time()) > 0:
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=min(15.0, left))
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield b": ping\n\n"
                    continue
                if loop.time() - scope_at > SCOPE_REFRESH_S:
                    scope, scope_at = await run_in_threadpool(_patients_in_scope, request, p), loop.time()
                if event.data.get("patient_id") not in scope:
                    continue
                name = "alert" if event.type.startswith("alert.") else "reading"
                yield f"event: {name}\ndata: {event.type}\n\n".encode()
        finally:
            hub.unsubscribe(queue)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


# ---- patients -------------------------------------------------------------------------------


@router.get("/patients")
def patients(request: Request, p: CurrentPrincipal, conn: Conn, q: str | None = None) -> Response:
    if (denied := _clinician(request, p)) is not None:
        return denied
    rows = clinical.list_patients(conn, user=p.user, search=q)
    audit_overview(request, p, conn, action="patient list", detail=f"{len(rows)} shown",
                   patient_ids=[r.id for r in rows])
    return render(request, p, "patients.html", patients=rows, q=q)


def _charts(
    conn: psycopg.Connection, *, patient_id: int, range_key: str, lang: str, tz: str, config: AlertingConfig
) -> list[dict[str, Any]]:
    from backend.web.charts import patient_charts

    now = datetime.now(UTC)
    tr = {
        k.value: clinical.trend(conn, patient_id=patient_id, kind=k, range_key=range_key, now=now, lang=lang, tz=tz)
        for k in clinical.TREND_KINDS
    }
    since = now - timedelta(days=clinical.RANGES[range_key])
    markers = [m.to_chart() for m in alert_markers(conn, patient_id=patient_id, since=since)]
    markers += [
        {"t": (r.measured_at or r.stored_at).timestamp(), "level": "rejected", "label": r.reason, "kind": r.kind,
         "component": ""}
        for r in clinical.rejected(conn, patient_id=patient_id, limit=500)
        if (r.measured_at or r.stored_at) >= since
    ]
    bands = [b.to_chart() for b in threshold_bands(conn, patient_id=patient_id, config=config)]
    return patient_charts(trends=tr, bands=bands, markers=markers)


@router.get("/patients/{patient_id}")
def patient_page(
    request: Request,
    p: CurrentPrincipal,
    conn: Conn,
    config: Config,
    patient_id: int,
    range: Annotated[str, Query(pattern="^(7d|30d|1y)$")] = "7d",
    all: bool = False,
) -> Response:
    """The patient page; the alert history shows what matters per alert, ``?all=1`` every transition."""
    if p.user.role is Role.CITIZEN and patient_id == p.user.patient_id:
        return RedirectResponse("/me", 303)  # the citizen's own pages are /me and /min-log, not the clinician's
    patient = _open(request, p, conn, patient_id, "patient page", detail=f"trends {range}")
    if isinstance(patient, Response):
        return patient
    lang = request.query_params.get("lang") or p.lang
    tz = request.app.state.settings.timezone
    ctx: dict[str, Any] = {
        "patient": patient,
        "range": range,
        "charts": _charts(conn, patient_id=patient_id, range_key=range, lang=lang, tz=tz, config=config),
        "current": patient_alerts(conn, patient_id=patient_id),
        "readings": clinical.readings(conn, patient_id=patient_id, limit=50),
        "rejected": clinical.rejected(conn, patient_id=patient_id, limit=50),
        "history_all": all,
        "messages": messages_for(conn, patient_id=patient_id, limit=10),
        "message_max": MESSAGE_MAX,
    }
    panels = patient_panels(conn, patient_id=patient_id, config=config)
    ctx.update({f.name: getattr(panels, f.name) for f in fields(panels)})
    rules = config.ruleset.by_id
    ctx.update(
        th_words=lambda rule_id, field: rule_field_words(rules.get(rule_id), field, lang),
        th_value=lambda v: value_text(v, lang) if v is not None else "–",
        rule_title=lambda rule_id: rules[rule_id].title if rule_id in rules else rule_id,
    )
    return render(request, p, "patient.html", **ctx)


EXPORT_MAX_DAYS = 3650


@router.get("/patients/{patient_id}/readings.csv")
def readings_export(
    request: Request,
    p: CurrentPrincipal,
    conn: Conn,
    patient_id: int,
    days: Annotated[int, Query(ge=1, le=EXPORT_MAX_DAYS)] = 365,
) -> Response:
    """The citizen's readings of the last ``days`` days as a spreadsheet (CSV), oldest first;
    audited ("readings export": the citizen's Min Log says who took them)."""
    from backend.web.export import readings_csv, readings_since

    if (denied := _clinician(request, p)) is not None:
        return denied
    patient = _open(request, p, conn, patient_id, "readings export", detail=f"{days} days")
    if isinstance(patient, Response):
        return patient
    since = datetime.now(UTC) - timedelta(days=days)
    lang = lang_of(request, p)
    body = readings_csv(readings_since(conn, patient_id=patient_id, since=since), lang=lang,
                        tz=request.app.state.settings.timezone)
    name = f"{_export_word(lang)}-{patient.external_ref}-{datetime.now(UTC):%Y-%m-%d}.csv"
    return Response(body.encode("utf-8"), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{_safe_filename(name)}"'})


def _export_word(lang: str) -> str:
    return "readings" if lang == "en" else "maalinger"


def _safe_filename(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


@router.get("/patients/{patient_id}/readings/{reading_id}")
def reading_page(request: Request, p: CurrentPrincipal, conn: Conn, patient_id: int, reading_id: UUID) -> Response:
    if p.user.role is Role.CITIZEN and patient_id == p.user.patient_id:
        return RedirectResponse("/me", 303)
    patient = _open(request, p, conn, patient_id, "reading detail", detail=str(reading_id))
    if isinstance(patient, Response):
        return patient
    detail = clinical.reading_detail(conn, patient_id=patient_id, reading_id=reading_id)
    if detail is None:
        raise HTTPException(404, "no such reading for this patient")
    return render(request, p, "reading.html", patient=patient, d=detail)


def _change_patient(
    request: Request,
    p: Principal,
    conn: psycopg.Connection,
    patient_id: int,
    *,
    action: str,
    detail: str,
    heading: str,
    section: str,
    change: Callable[[], str | None],
) -> Response:
    """A clinician's change on the patient page: scope check and audit row, the change (its
    error, if any, as a 400 page), commit, then back to the page's section."""
    if (denied := _clinician(request, p)) is not None:
        return denied
    patient = _open(request, p, conn, patient_id, action, detail=detail)
    if isinstance(patient, Response):
        return patient
    error = change()
    if error:
        t = translator(p.lang)
        return render(request, p, "error.html", status=400, heading=t(heading), message=error)
    conn.commit()
    return RedirectResponse(f"/patients/{patient_id}#{section}", 303)


@router.post("/patients/{patient_id}/thresholds")
def threshold_edit(
    request: Request,
    p: CurrentPrincipal,
    conn: Conn,
    config: Config,
    patient_id: int,
    rule_id: Annotated[str, Form(max_length=200)],
    field: Annotated[str, Form(max_length=100)],
    reason: Annotated[str, Form(max_length=2000)],
    value: Annotated[str, Form(max_length=50)] = "",
    action: Annotated[str, Form()] = "set",
) -> Response:
    return _change_patient(
        request,
        p,
        conn,
        patient_id,
        action="threshold change",
        detail=f"{rule_id}.{field}",
        heading="thresholds",
        section="thresholds",
        change=lambda: _threshold_change(
            conn, config, patient_id=patient_id, rule_id=rule_id, field=field, value=value, reason=reason,
            user=p.user, clear=(action == "clear"), lang=lang_of(request, p),
        ),
    )


def _threshold_change(
    conn: psycopg.Connection, config: AlertingConfig, *, patient_id: int, rule_id: str, field: str, value: str,
    reason: str, user: Any, clear: bool, lang: str,
) -> str | None:
    """The form's value checked in the reader's words (issue 13: "Not a number: 'abc'"), then saved
    by the service; a refusal the form could not foresee is logged and shown in words."""
    try:
        check_reason(reason, lang)
        typed = value
        if not clear:
            number = parse_value(value, lang)
            rule = config.ruleset.by_id.get(rule_id)
            if rule is not None:
                in_force = {th.field: th.value for th in threshold_rows(conn, patient_id=patient_id, config=config)
                            if th.rule_id == rule_id}
                check_value(rule, field, number, in_force, lang)
            typed = repr(number)
    except FormError as exc:
        return str(exc)
    error = edit_threshold(conn, patient_id=patient_id, rule_id=rule_id, field=field, value=typed, reason=reason,
                           user=user, config=config, clear=clear)
    if error:
        log.info("threshold change refused for patient %s (%s.%s): %s", patient_id, rule_id, field, error)
        t = translator(lang)
        return t("threshold_refused")
    return None


@router.post("/patients/{patient_id}/plan")
def plan_edit(
    request: Request,
    p: CurrentPrincipal,
    conn: Conn,
    topics: TopicsDep,
    config: Config,
    patient_id: int,
    kind: Annotated[str, Form(max_length=32)],
    times: Annotated[str, Form(max_length=200)] = "",
    grace_minutes: Annotated[int, Form(ge=0, le=1440)] = 120,
    action: Annotated[str, Form()] = "set",
) -> Response:
    return _change_patient(
        request,
        p,
        conn,
        patient_id,
        action="monitoring plan change",
        detail=f"{kind}: {times or action}",
        heading="monitoring_plan",
        section="plan",
        change=lambda: edit_plan(
            conn,
            topics=topics,
            config=config,
            patient_id=patient_id,
            kind=kind,
            times=times,
            grace_minutes=grace_minutes,
            user=p.user,
            remove=(action == "remove"),
        ),
    )


@router.post("/patients/{patient_id}/passive")
def passive_add(
    request: Request,
    p: CurrentPrincipal,
    conn: Conn,
    patient_id: int,
    starts: Annotated[str, Form()],
    ends: Annotated[str, Form()],
    reason: Annotated[str, Form(max_length=500)],
) -> Response:
    return _change_patient(
        request,
        p,
        conn,
        patient_id,
        action="passive interval",
        detail=f"{starts}..{ends}",
        heading="passive",
        section="passive",
        change=lambda: add_passive(
            conn,
            patient_id=patient_id,
            starts=starts,
            ends=ends,
            reason=reason,
            user=p.user,
            tz=request.app.state.settings.timezone,
        ),
    )


# ---- population -----------------------------------------------------------------------------


@router.get("/population")
def population(request: Request, p: CurrentPrincipal, conn: Conn) -> Response:
    if (denied := _clinician(request, p)) is not None:
        return denied
    view = population_view(conn, user=p.user, tz=request.app.state.settings.timezone)
    audit_overview(request, p, conn, action="population view", detail=f"{len(view.patients)} patients",
                   patient_ids=[r.patient_id for r in view.patients])
    from backend.population.service import MIN_DAYS, POINTS, Z_CAP

    return render(request, p, "population.html", view=view, points=POINTS, z_cap=Z_CAP, min_days=MIN_DAYS)


# ---- audit, Min Log, citizen ----------------------------------------------------------------


AUDIT_PAGE = 100
"""Rows per page of the admin's audit list (issue 13: it had no paging)."""


@router.get("/audit")
def audit_page(
    request: Request,
    p: CurrentPrincipal,
    conn: Conn,
    config: Config,
    patient_id: str | None = None,
    actor: str | None = None,
    refused: str | None = None,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> Response:
    t = translator(p.lang)
    if p.user.role is not Role.ADMIN:
        return render(request, p, "error.html", status=403, heading=t("forbidden"), message=t("forbidden"))
    pid = int(patient_id) if patient_id and patient_id.isdigit() else None
    # A page of AUDIT_PAGE rows, newest first; one more is read to know whether older ones follow.
    rows = audit.entries(conn, patient_id=pid, actor_prefix=actor or None, allowed=False if refused else None,
                         limit=AUDIT_PAGE + 1, offset=offset)
    older = offset + AUDIT_PAGE if len(rows) > AUDIT_PAGE else None
    newer = max(0, offset - AUDIT_PAGE) if offset > 0 else None
    rows = rows[:AUDIT_PAGE]
    kept = {k: v for k, v in request.query_params.items() if k in ("patient_id", "actor", "refused", "lang")}
    titles = {rule.id: rule.title for rule in config.ruleset.by_id.values()}
    rows = [replace(e, detail=threshold_words(e.detail, p.lang, titles) if e.action == "threshold change"
                    else programme_words(e.detail, p.lang))
            if e.detail else e for e in rows]
    return render(request, p, "audit.html", entries=rows, title=t("audit"), filters=True,
                  older_url=f"/audit?{urlencode({**kept, 'offset': older})}" if older is not None else None,
                  newer_url=f"/audit?{urlencode({**kept, 'offset': newer})}" if newer is not None else None)


@router.get("/min-log")
def min_log(
    request: Request, p: CurrentPrincipal, conn: Conn, offset: Annotated[int, Query(ge=0, le=10**9)] = 0
) -> Response:
    """Min Log: every look at the citizen's data, 50 a page, in the citizen's language (who by
    name, role and organisation, never an address; what; when; why)."""
    t = translator(p.lang)
    if p.user.role is not Role.CITIZEN or p.user.patient_id is None:
        return render(request, p, "error.html", status=403, heading=t("forbidden"), message=t("forbidden"))
    page = audit.min_log(conn, patient_id=p.user.patient_id, limit=50, offset=offset, lang=lang_of(request, p))
    return render(request, p, "min_log.html", page=page)


@router.get("/me")
def me(request: Request, p: CurrentPrincipal, conn: Conn, config: Config) -> Response:
    if p.user.role is not Role.CITIZEN or p.user.patient_id is None:
        return RedirectResponse(HOME[p.user.role], 303)
    patient = _open(request, p, conn, p.user.patient_id, "own readings")
    if isinstance(patient, Response):
        return patient
    from backend.web.citizen import team_contact
    from backend.web.render import lang_of

    contact = team_contact(conn, patient_id=patient.id, routing=config.routing, t=translator(lang_of(request, p)))
    messages = messages_for(conn, patient_id=patient.id, limit=10)
    mark_read(conn, patient_id=patient.id, now=datetime.now(UTC))
    conn.commit()
    return render(
        request, p, "me.html", patient=patient, readings=clinical.readings(conn, patient_id=patient.id, limit=30),
        contact=contact, messages=messages,
    )
