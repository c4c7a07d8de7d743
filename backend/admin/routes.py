"""Admin pages (/admin) and the admin JSON API (/api/v1/admin), plus the tablet's enrolment
redemption (/api/v1/enrolment/redeem)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, HTTPException, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field, StringConstraints

from backend import registry
from backend.accounts.deps import Admin, Conn, remote_addr
from backend.accounts.store import MAX_PASSWORD, MIN_PASSWORD
from backend.admin import service
from backend.admin.credentials import CredentialError, CredentialStore
from backend.admin.devices import KNOWN_MODELS
from backend.admin.errors import AdminConflict, AdminForbidden, AdminNotFound
from backend.admin.settings import AdminSettings, credential_store
from backend.web.i18n import N_, translator
from backend.web.render import lang_of, render

log = logging.getLogger(__name__)
pages = APIRouter(include_in_schema=False)
api = APIRouter(
    prefix="/api/v1",
    tags=["admin"],
    responses={
        400: {"description": "Refused (a rule of the action, or a NUL byte in the request)"},
        401: {"description": "Not logged in"},
        403: {"description": "Not an admin (audited), or not for this admin (approving one's own account)"},
        404: {"description": "No such user, device, agent, team or citizen"},
        409: {"description": "Clashes with what is (a name taken, already approved or removed)"},
    },
)

_REFUSED: dict[int | str, dict[str, Any]] = {400: {"description": "Refused"}}
AgentId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Name = Annotated[str, StringConstraints(pattern=r"^[^\x00]*[^\x00\s][^\x00]*$", max_length=200)]


def _store(request: Request) -> CredentialStore:
    # Tests and embedders may set app.state.credential_store; otherwise from NEARCARE_ settings.
    store = getattr(request.app.state, "credential_store", None)
    return store if store is not None else credential_store(request.app.state.settings)


def _agent_broker_url(request: Request) -> str:
    return AdminSettings().agent_broker_url or request.app.state.settings.broker.redacted()


# ---- pages ------------------------------------------------------------------------------------


def _page(request: Request, p: Any, conn: Any, status: int = 200, **extra: Any) -> Response:
    # Fields typed into a refused form are shown again (issue 13: they were cleared after an error).
    return render(request, p, "admin.html", status=status, o=service.overview(conn), models=KNOWN_MODELS,
                  form=extra.pop("form", {}), **extra)


@pages.get("/admin")
def admin_page(request: Request, p: Admin, conn: Conn) -> Response:
    return _page(request, p, conn)


def _words(request: Request, p: Any) -> Any:
    return translator(lang_of(request, p))


def _do(request: Request, p: Any, conn: Any, fn: Any, done: str, *, form: dict[str, Any] | None = None,
        **params: Any) -> Response:
    """Run an admin action in one transaction; the page again with what happened in the admin's
    language, or the refusal with the typed fields kept."""
    t = _words(request, p)
    try:
        with conn.transaction():
            result = fn()
        conn.commit()
    except registry.RegistryNotFound as exc:
        conn.rollback()
        return _page(request, p, conn, status=400, error=t("admin_not_found", what=str(exc)), form=form or {})
    except service.AdminError as exc:
        conn.rollback()
        error = t(exc.key, **exc.params) if exc.key else str(exc)
        return _page(request, p, conn, status=400, error=error, form=form or {})
    except (CredentialError, registry.RegistryError) as exc:
        conn.rollback()
        return _page(request, p, conn, status=400, error=str(exc), form=form or {})
    return _page(request, p, conn, message=t(done, **params), result=result)


@pages.post("/admin/agents")
def admin_enrol(
    request: Request,
    p: Admin,
    conn: Conn,
    agent_id: Annotated[str, Form(max_length=64)],
    patient_ref: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    def go() -> service.Enrolment:
        pid = service.patient_id_by_ref(conn, patient_ref) if patient_ref else None
        return service.enrol_agent(
            conn,
            agent_id=agent_id.strip(),
            by=p.user,
            credentials=_store(request),
            secret=request.app.state.settings.secret_key,
            patient_id=pid,
            remote_addr=remote_addr(request),
        )

    return _do(request, p, conn, go, N_("admin_done_enrolled"), form={"enrol": {"agent_id": agent_id,
                                                                            "patient_ref": patient_ref}})


@pages.post("/admin/agents/bind")
def admin_bind(
    request: Request,
    p: Admin,
    conn: Conn,
    agent_id: Annotated[str, Form(max_length=64)],
    patient_ref: Annotated[str, Form(max_length=200)],
) -> Response:
    def go() -> Any:
        return service.bind_agent(conn, agent_id=agent_id.strip(), patient_ref=patient_ref, by=p.user,
                                  remote_addr=remote_addr(request))

    return _do(request, p, conn, go, N_("admin_done_bound"), form={"bind": {"agent_id": agent_id,
                                                                        "patient_ref": patient_ref}})


@pages.post("/admin/devices")
def admin_device(
    request: Request,
    p: Admin,
    conn: Conn,
    agent_id: Annotated[str, Form(max_length=64)],
    address: Annotated[str, Form(max_length=64)],
    model: Annotated[str, Form(max_length=128)] = "",
    serial: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    return _do(
        request,
        p,
        conn,
        lambda: service.register_device(conn, agent_id=agent_id.strip(), address=address, model=model,
                                        serial=serial.strip() or None, by=p.user, remote_addr=remote_addr(request)),
        N_("admin_done_device_registered"),
        form={"device": {"agent_id": agent_id, "address": address, "model": model, "serial": serial}},
    )


@pages.post("/admin/devices/{device_id}")
def admin_device_edit(
    request: Request,
    p: Admin,
    conn: Conn,
    device_id: Annotated[int, Path(ge=1, lt=2**62)],
    address: Annotated[str, Form(max_length=64)],
    model: Annotated[str, Form(max_length=128)],
    serial: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    return _do(
        request,
        p,
        conn,
        lambda: service.update_device(conn, device_id=device_id, address=address, model=model,
                                      serial=serial.strip() or None, by=p.user, remote_addr=remote_addr(request)),
        N_("admin_done_device_changed"),
    )


@pages.post("/admin/devices/{device_id}/remove")
def admin_device_remove(
    request: Request, p: Admin, conn: Conn, device_id: Annotated[int, Path(ge=1, lt=2**62)]
) -> Response:
    return _do(request, p, conn,
               lambda: service.remove_device(conn, device_id=device_id, by=p.user, remote_addr=remote_addr(request)),
               N_("admin_done_device_removed"))


@pages.post("/admin/teams")
def admin_team(
    request: Request,
    p: Admin,
    conn: Conn,
    key: Annotated[str, Form(max_length=64)],
    name: Annotated[str, Form(max_length=200)],
    sector: Annotated[str, Form(pattern="^(municipal|hospital)$")],
    municipality: Annotated[str, Form(max_length=200)] = "",
    department: Annotated[str, Form(max_length=200)] = "",
    phone: Annotated[str, Form(max_length=50)] = "",
) -> Response:
    return _do(
        request,
        p,
        conn,
        lambda: service.create_team(
            conn,
            key=key,
            name=name,
            sector=sector,
            municipality=municipality or None,
            department=department or None,
            phone=phone or None,
            by=p.user,
            remote_addr=remote_addr(request),
        ),
        N_("admin_done_team_created"),
        form={"team": {"key": key, "name": name, "sector": sector, "municipality": municipality,
                       "department": department, "phone": phone}},
    )


@pages.post("/admin/places")
def admin_place(
    request: Request,
    p: Admin,
    conn: Conn,
    kind: Annotated[str, Form(pattern="^(municipality|department)$")],
    name: Annotated[str, Form(min_length=1, max_length=200)],
) -> Response:
    fn = (
        (lambda: service.add_municipality(conn, name=name))
        if kind == "municipality"
        else (lambda: service.add_department(conn, name=name))
    )
    return _do(request, p, conn, fn, N_("admin_done_place_added"), name=name)


@pages.post("/admin/users")
def admin_user(
    request: Request,
    p: Admin,
    conn: Conn,
    username: Annotated[str, Form(max_length=64)],
    display_name: Annotated[str, Form(max_length=200)],
    role: Annotated[str, Form(max_length=20)],
    password: Annotated[str, Form(max_length=MAX_PASSWORD)],
    team_key: Annotated[str, Form(max_length=64)] = "",
    patient_ref: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    return _do(
        request,
        p,
        conn,
        lambda: service.create_account(
            conn,
            username=username,
            display_name=display_name,
            role=role,
            password=password,
            team_key=team_key or None,
            patient_ref=patient_ref or None,
            by=p.user,
            remote_addr=remote_addr(request),
        ),
        N_("admin_done_user_created"),
        username=username,
        # Never the password: it is typed again.
        form={"user": {"username": username, "display_name": display_name, "role": role, "team_key": team_key,
                       "patient_ref": patient_ref}},
    )


ROLE_WORDS = (N_("role_nurse"), N_("role_specialist"), N_("role_citizen"), N_("role_admin"))
"""The admin page names roles by ``t('role_' ~ role)``."""

UserPath = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_.@-]{1,63}$")]


@pages.post("/admin/users/{username}/approve")
def admin_user_approve(request: Request, p: Admin, conn: Conn, username: UserPath) -> Response:
    """Four-eyes: a second admin lets an account another admin created log in."""
    return _do(request, p, conn,
               lambda: service.approve_user(conn, username=username, by=p.user, remote_addr=remote_addr(request)),
               N_("admin_done_user_approved"), username=username)


@pages.post("/admin/users/{username}/active")
def admin_user_active(
    request: Request, p: Admin, conn: Conn, username: UserPath, active: Annotated[str, Form(pattern="^(true|false)$")]
) -> Response:
    on = active == "true"
    return _do(request, p, conn,
               lambda: service.set_user_active(conn, username=username, active=on, by=p.user,
                                               remote_addr=remote_addr(request)),
               N_("admin_done_user_activated") if on else N_("admin_done_user_deactivated"), username=username)


@pages.post("/admin/users/{username}/password")
def admin_user_password(
    request: Request, p: Admin, conn: Conn, username: UserPath, password: Annotated[str, Form(max_length=MAX_PASSWORD)]
) -> Response:
    return _do(request, p, conn,
               lambda: service.reset_password(conn, username=username, password=password, by=p.user,
                                              remote_addr=remote_addr(request)),
               N_("admin_done_password_reset"), username=username)


@pages.post("/admin/users/{username}/unlock")
def admin_user_unlock(request: Request, p: Admin, conn: Conn, username: UserPath) -> Response:
    return _do(request, p, conn,
               lambda: service.unlock_login(conn, username=username, by=p.user, remote_addr=remote_addr(request)),
               N_("admin_done_unlocked"), username=username)


# ---- JSON -------------------------------------------------------------------------------------


class EnrolIn(BaseModel):
    agent_id: AgentId
    patient_ref: Name | None = None


class EnrolOut(BaseModel):
    agent_id: str
    code: str = Field(description="One-time enrolment code; shown only in this answer")
    expires_at: Any


class RedeemIn(BaseModel):
    agent_id: AgentId
    code: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9 -]{4,40}$")]


class RedeemOut(BaseModel):
    agent_id: str
    mqtt_username: str
    mqtt_password: str
    broker_url: str
    topic_root: str


def _api(conn: Any, fn: Any) -> Any:
    try:
        with conn.transaction():
            out = fn()
        conn.commit()
        return out
    except (registry.RegistryNotFound, AdminNotFound) as exc:
        raise HTTPException(404, str(exc)) from exc
    except (registry.RegistryConflict, AdminConflict) as exc:
        raise HTTPException(409, str(exc)) from exc
    except AdminForbidden as exc:
        raise HTTPException(403, str(exc)) from exc
    except (service.AdminError, registry.RegistryError) as exc:
        raise HTTPException(400, str(exc)) from exc
    except CredentialError as exc:
        raise HTTPException(503, str(exc)) from exc


@api.post(
    "/admin/agents",
    response_model=EnrolOut,
    responses={400: {"description": "Refused"}, 503: {"description": "Broker unavailable"}},
)
def api_enrol(request: Request, p: Admin, conn: Conn, body: EnrolIn) -> Any:
    """Enrol an agent: its MQTT account on the broker and a one-time enrolment code."""

    def go() -> Any:
        pid = service.patient_id_by_ref(conn, body.patient_ref) if body.patient_ref else None
        e = service.enrol_agent(
            conn,
            agent_id=body.agent_id,
            by=p.user,
            credentials=_store(request),
            secret=request.app.state.settings.secret_key,
            patient_id=pid,
            remote_addr=remote_addr(request),
        )
        return EnrolOut(agent_id=e.agent_id, code=e.code, expires_at=e.expires_at)

    return _api(conn, go)


@api.post(
    "/enrolment/redeem",
    response_model=RedeemOut,
    tags=["enrolment"],
    responses={403: {"description": "Unknown, used or expired code"}, 429: {"description": "Too many wrong codes"}},
)
def api_redeem(request: Request, conn: Conn, body: RedeemIn) -> Any:
    """The tablet trades its one-time code for its MQTT credentials (once). Wrong codes are
    limited per agent and per address (429), and every redeem is audited."""
    settings = request.app.state.settings
    addr = remote_addr(request)
    try:
        service.check_redeem_rate(conn, agent_id=body.agent_id, remote_addr=addr)
    except service.RedeemRateLimited as exc:
        conn.rollback()
        raise HTTPException(429, str(exc), headers={"Retry-After": str(exc.retry_after_s)}) from exc
    try:
        creds = _api(
            conn,
            lambda: service.redeem_enrolment(
                conn,
                agent_id=body.agent_id,
                code=body.code,
                credentials=_store(request),
                secret=settings.secret_key,
                broker_url=_agent_broker_url(request),
                topic_root=settings.topic_root,
            ),
        )
    except HTTPException as exc:
        service.record_redeem(conn, agent_id=body.agent_id, remote_addr=addr, ok=False, reason=str(exc.detail))
        conn.commit()
        raise
    service.record_redeem(conn, agent_id=body.agent_id, remote_addr=addr, ok=True)
    conn.commit()
    return RedeemOut(
        agent_id=creds.agent_id,
        mqtt_username=creds.mqtt_username,
        mqtt_password=creds.mqtt_password,
        broker_url=creds.broker_url,
        topic_root=creds.topic_root,
    )


class BindIn(BaseModel):
    patient_ref: Name


class BoundOut(BaseModel):
    agent_id: str
    patient_id: int | None


class DeviceOut(BaseModel):
    id: int
    agent_id: str
    address: str


class TeamOut(BaseModel):
    id: int
    key: str


class AccountOut(BaseModel):
    id: int
    username: str
    role: str


class OverviewTeam(BaseModel):
    key: str
    name: str
    sector: str
    municipality: str | None
    department: str | None
    phone: str | None


class OverviewUser(BaseModel):
    username: str
    display_name: str
    role: str
    team: str | None
    patient_ref: str | None
    active: bool
    approved: bool = Field(description="False until a second admin approves the account (four-eyes)")
    failures: int = Field(description="Wrong passwords in a row (login delay after three)")


class OverviewAgent(BaseModel):
    id: str
    patient_ref: str | None
    active: bool
    online: bool
    last_seen_at: datetime | None = Field(description="Last contact of any kind (a status heartbeat counts)")
    last_reading_at: datetime | None = Field(description="When its newest reading arrived")
    version: str | None
    devices: int


class OverviewDevice(BaseModel):
    id: int
    agent_id: str
    address: str
    model: str | None
    manufacturer: str | None
    serial: str | None
    battery_low: bool
    last_reading_at: datetime | None


class OverviewOut(BaseModel):
    """Names and places only: no readings, no alerts."""

    teams: list[OverviewTeam]
    users: list[OverviewUser]
    agents: list[OverviewAgent]
    devices: list[OverviewDevice]
    municipalities: list[str]
    departments: list[str]


@api.put(
    "/admin/agents/{agent_id}/patient",
    response_model=BoundOut,
    responses={400: {"description": "Refused"}, 404: {"description": "Unknown"}},
)
def api_bind(request: Request, p: Admin, conn: Conn, agent_id: AgentId, body: BindIn) -> Any:
    """Bind an agent to a citizen (audited with before and after; the citizen's Min Log shows it)."""

    agent = _api(conn, lambda: service.bind_agent(conn, agent_id=agent_id, patient_ref=body.patient_ref, by=p.user,
                                                  remote_addr=remote_addr(request)))
    return {"agent_id": agent.id, "patient_id": agent.patient_id}


MacAddress = Annotated[str, StringConstraints(pattern=r"^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}$")]


ModelName = Literal["A&D UA-651BLE", "A&D UC-352BLE", "Nonin 3230", "Nonin WristOx2 3150"]
"""The known models (backend/admin/devices.py::KNOWN_MODELS; a test keeps the two the same)."""


class DeviceIn(BaseModel):
    address: MacAddress = Field(description="Bluetooth address, AA:BB:CC:DD:EE:FF")
    model: ModelName = Field(description="A model the edge agent reads")
    manufacturer: Name | None = Field(default=None, description="Ignored: it follows from the model")
    serial: Name | None = None


class DeviceEditIn(BaseModel):
    address: MacAddress = Field(description="Bluetooth address, AA:BB:CC:DD:EE:FF")
    model: ModelName = Field(description="A model the edge agent reads")
    serial: Name | None = None


class DeviceStateOut(BaseModel):
    agent_id: str
    address: str
    model: str | None
    manufacturer: str | None
    serial: str | None
    removed: bool


@api.post(
    "/admin/agents/{agent_id}/devices",
    response_model=DeviceOut,
    responses={400: {"description": "Refused"}, 404: {"description": "Unknown"}},
)
def api_device(request: Request, p: Admin, conn: Conn, agent_id: AgentId, body: DeviceIn) -> Any:
    """Register a BLE device on an agent: a Bluetooth address and a known model (audited)."""
    d = _api(conn, lambda: service.register_device(conn, agent_id=agent_id, address=body.address, model=body.model,
                                                   serial=body.serial, by=p.user, remote_addr=remote_addr(request)))
    return {"id": d.id, "agent_id": d.agent_id, "address": d.address}


DeviceId = Annotated[int, Path(ge=1, lt=2**62)]


@api.put("/admin/devices/{device_id}", response_model=DeviceStateOut, responses=_REFUSED)
def api_device_edit(request: Request, p: Admin, conn: Conn, device_id: DeviceId, body: DeviceEditIn) -> Any:
    """Correct a device's address, model or serial number (audited with before and after)."""
    return _api(conn, lambda: service.update_device(conn, device_id=device_id, address=body.address,
                                                    model=body.model, serial=body.serial, by=p.user,
                                                    remote_addr=remote_addr(request)))


@api.post("/admin/devices/{device_id}/remove", response_model=DeviceStateOut, responses=_REFUSED)
def api_device_remove(request: Request, p: Admin, conn: Conn, device_id: DeviceId) -> Any:
    """Take a device off its gateway (never deleted; its new readings are held as unknown)."""
    return _api(conn, lambda: service.remove_device(conn, device_id=device_id, by=p.user,
                                                    remote_addr=remote_addr(request)))


class _TeamBase(BaseModel):
    key: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{1,63}$")]
    name: Name
    phone: Annotated[str, StringConstraints(pattern=r"^[0-9 +()-]{0,30}$")] | None = None


class MunicipalTeamIn(_TeamBase):
    sector: Literal["municipal"]
    municipality: Name
    department: Name | None = None


class HospitalTeamIn(_TeamBase):
    sector: Literal["hospital"]
    department: Name
    municipality: Name | None = None


TeamIn = Annotated[MunicipalTeamIn | HospitalTeamIn, Field(discriminator="sector")]
"""A municipal team covers a municipality, a hospital team a department (in the schema, so a
well-formed request is one the service can do)."""


@api.post("/admin/teams", response_model=TeamOut, responses={400: {"description": "Refused"}})
def api_team(request: Request, p: Admin, conn: Conn, body: TeamIn) -> Any:
    t = _api(
        conn,
        lambda: service.create_team(
            conn,
            key=body.key,
            name=body.name,
            sector=body.sector,
            municipality=body.municipality,
            department=body.department,
            phone=body.phone,
            by=p.user,
            remote_addr=remote_addr(request),
        ),
    )
    return {"id": t.id, "key": t.key}


class _UserBase(BaseModel):
    username: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.@-]{1,63}$")]
    display_name: Name
    password: Annotated[str, StringConstraints(min_length=MIN_PASSWORD, max_length=MAX_PASSWORD,
                                               pattern=r"^[^\x00]*$")]
    lang: Annotated[str, StringConstraints(pattern="^(da|en)$")] = "da"


class ClinicianUserIn(_UserBase):
    role: Literal["nurse", "specialist"]
    team_key: Name = Field(description="The team the clinician belongs to")


class CitizenUserIn(_UserBase):
    role: Literal["citizen"]
    patient_ref: Name = Field(description="The citizen's own patient record")


class AdminUserIn(_UserBase):
    role: Literal["admin"]


UserIn = Annotated[ClinicianUserIn | CitizenUserIn | AdminUserIn, Field(discriminator="role")]
"""A clinician belongs to a team, a citizen account to the citizen's record (in the schema)."""


@api.post("/admin/users", response_model=AccountOut, responses={400: {"description": "Refused"}})
def api_user(request: Request, p: Admin, conn: Conn, body: UserIn) -> Any:
    """Create an account. It cannot log in until a different admin approves it (four-eyes:
    ``POST /admin/users/{username}/approve``)."""
    u = _api(
        conn,
        lambda: service.create_account(
            conn,
            username=body.username,
            display_name=body.display_name,
            role=body.role,
            password=body.password,
            team_key=body.team_key if isinstance(body, ClinicianUserIn) else None,
            patient_ref=body.patient_ref if isinstance(body, CitizenUserIn) else None,
            lang=body.lang,
            by=p.user,
            remote_addr=remote_addr(request),
        ),
    )
    return {"id": u.id, "username": u.username, "role": u.role.value}


@api.get("/admin/overview", response_model=OverviewOut)
def api_overview(p: Admin, conn: Conn) -> Any:
    """Teams, users, agents, devices, municipalities and departments (no clinical data)."""
    o = service.overview(conn)
    return {
        "teams": [
            dict(zip(("key", "name", "sector", "municipality", "department", "phone"), r, strict=True))
            for r in o["teams"]
        ],
        "users": o["users"],
        "agents": [{**a, "last_seen_at": a["last_contact_at"]} for a in o["agents"]],
        "devices": [
            dict(zip(("id", "agent_id", "address", "model", "manufacturer", "battery_low", "serial",
                      "last_reading_at"), r, strict=True))
            for r in o["devices"]
        ],
        "municipalities": o["municipalities"],
        "departments": o["departments"],
    }


# ---- accountability: deactivate, reset, unlock, and the admin audit -------------------------

Username = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_.@-]{1,63}$")]


class ActiveIn(BaseModel):
    active: bool


class PasswordIn(BaseModel):
    password: Annotated[str, StringConstraints(min_length=MIN_PASSWORD, max_length=MAX_PASSWORD,
                                               pattern=r"^[^\x00]*$")]


class UserStateOut(BaseModel):
    username: str
    display_name: str
    role: str
    team: str | None
    patient_id: int | None
    lang: str
    active: bool
    approved: bool
    approved_by: str | None


class AdminAuditOut(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    user_id: int | None
    patient_id: int | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None


@api.put("/admin/users/{username}/active", response_model=UserStateOut, responses=_REFUSED)
def api_user_active(request: Request, p: Admin, conn: Conn, username: Username, body: ActiveIn) -> Any:
    """Deactivate (or reactivate) a user: no login, sessions and tokens end. Users are never deleted."""
    return _api(
        conn,
        lambda: service.set_user_active(
            conn, username=username, active=body.active, by=p.user, remote_addr=remote_addr(request)
        ),
    )


@api.post("/admin/users/{username}/password", status_code=204, responses=_REFUSED)
def api_user_password(request: Request, p: Admin, conn: Conn, username: Username, body: PasswordIn) -> Response:
    """Reset a user's password (their sessions and tokens end)."""
    _api(
        conn,
        lambda: service.reset_password(
            conn, username=username, password=body.password, by=p.user, remote_addr=remote_addr(request)
        ),
    )
    return Response(status_code=204)


@api.post("/admin/users/{username}/approve", response_model=UserStateOut, responses=_REFUSED)
def api_user_approve(request: Request, p: Admin, conn: Conn, username: Username) -> Any:
    """Four-eyes: approve an account a different admin created; until then it cannot log in. The
    creating admin's own approval is refused (400)."""
    return _api(conn, lambda: service.approve_user(conn, username=username, by=p.user,
                                                   remote_addr=remote_addr(request)))


@api.post("/admin/users/{username}/unlock", status_code=204, responses=_REFUSED)
def api_user_unlock(request: Request, p: Admin, conn: Conn, username: Username) -> Response:
    """Clear an account's login delay."""
    _api(conn, lambda: service.unlock_login(conn, username=username, by=p.user, remote_addr=remote_addr(request)))
    return Response(status_code=204)


@api.get("/admin/audit", response_model=list[AdminAuditOut])
def api_admin_audit(
    p: Admin,
    conn: Conn,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> Any:
    """Every admin action with before and after, newest first."""
    return service.admin_audit(conn, limit=limit, offset=offset)
