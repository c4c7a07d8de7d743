"""Third-party PHD gateways' bearer tokens (``POST /fhir/phd``, :mod:`backend.fhir.upload`), and
the admin page that issues, lists and revokes them (``/admin/gateways``).

A token is shown once, when it is issued; only its SHA-256 is kept (``phd_gateways``, migrations
0506 and 0510). Each token acts as one of nearcare's agents (the registry's attribution applies
to what it uploads) and is bound to the gateway's EUI-64 system id, which its Bundles' PhgDevice
must carry. Issuing and revoking are recorded in ``admin_audit`` (the token never is).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import RedirectResponse, Response

from backend.accounts.deps import Admin, Conn, remote_addr
from backend.admin.service import record_admin
from backend.fhir.export import FhirExportError
from backend.fhir.upload import _digest
from backend.web.render import render


class GatewayError(FhirExportError):
    """A gateway token that cannot be issued or revoked as asked; ``key`` names the screen words."""

    def __init__(self, key: str, text: str) -> None:
        super().__init__(text)
        self.key = key


@dataclass(frozen=True, slots=True)
class Gateway:
    id: int
    agent_id: str
    sysid: str
    label: str | None
    issued_at: datetime
    issued_by: str | None
    revoked_at: datetime | None
    revoked_by: str | None


@dataclass(frozen=True, slots=True)
class Issued:
    gateway: Gateway
    token: str
    """Shown once; nearcare keeps only its hash."""


_COLUMNS = "id, agent_id, sysid, label, created_at, issued_by, revoked_at, revoked_by"


def normalise_sysid(text: str) -> str:
    """An EUI-64 as the PHD IG writes it: eight upper-case hex bytes joined by dashes."""
    digits = re.sub(r"[\s:.-]", "", text)
    if not re.fullmatch(r"[0-9A-Fa-f]{16}", digits):
        raise GatewayError("gateway_bad_sysid",
                           "the system id is an EUI-64: 16 hex digits, e.g. FE-ED-AB-EE-DE-AD-BE-EF")
    return "-".join(digits[i:i + 2].upper() for i in range(0, 16, 2))


def issue(conn: psycopg.Connection[Any], *, agent_id: str, sysid: str, label: str | None = None,
          issued_by: str | None = None) -> Issued:
    """A new token for the gateway ``sysid`` acting as ``agent_id``."""
    sid = normalise_sysid(sysid)
    if conn.execute("SELECT 1 FROM agents WHERE id = %s", (agent_id,)).fetchone() is None:
        raise GatewayError("gateway_no_agent", f"no agent {agent_id!r}: enrol the gateway as an agent first")
    token = secrets.token_urlsafe(32)
    row = conn.execute(
        f"INSERT INTO phd_gateways (token_sha256, agent_id, sysid, label, issued_by) VALUES (%s, %s, %s, %s, %s)"
        f" RETURNING {_COLUMNS}",
        (_digest(token), agent_id, sid, (label or "").strip() or None, issued_by),
    ).fetchone()
    assert row is not None
    return Issued(Gateway(*row), token)


def gateways(conn: psycopg.Connection[Any], *, limit: int = 500) -> list[Gateway]:
    """Every token, live ones first, newest first."""
    rows = conn.execute(f"SELECT {_COLUMNS} FROM phd_gateways ORDER BY revoked_at IS NOT NULL, created_at DESC"
                        " LIMIT %s", (limit,)).fetchall()
    return [Gateway(*r) for r in rows]


def revoke(conn: psycopg.Connection[Any], *, gateway_id: int, revoked_by: str | None = None) -> Gateway | None:
    """End a token at once (its next upload is answered 401); None if there is no live token
    with that id."""
    row = conn.execute(
        f"UPDATE phd_gateways SET revoked_at = now(), revoked_by = %s WHERE id = %s AND revoked_at IS NULL"
        f" RETURNING {_COLUMNS}",
        (revoked_by, gateway_id),
    ).fetchone()
    return Gateway(*row) if row else None


# -- the admin page -----------------------------------------------------------------------------

pages = APIRouter(include_in_schema=False)


def _page(request: Request, p: Any, conn: Any, status: int = 200, **extra: Any) -> Response:
    return render(request, p, "gateways.html", status=status, rows=gateways(conn), **extra)


@pages.get("/admin/gateways")
def gateways_page(request: Request, p: Admin, conn: Conn, revoked: int | None = None) -> Response:
    return _page(request, p, conn, revoked=revoked)


@pages.post("/admin/gateways")
def gateways_issue(request: Request, p: Admin, conn: Conn,
                   agent_id: Annotated[str, Form(max_length=64)],
                   sysid: Annotated[str, Form(max_length=40)],
                   label: Annotated[str, Form(max_length=200)] = "") -> Response:
    try:
        with conn.transaction():
            made = issue(conn, agent_id=agent_id, sysid=sysid, label=label, issued_by=p.user.username)
            g = made.gateway
            record_admin(conn, by=p.user, action="phd gateway issued", remote_addr=remote_addr(request),
                         after={"gateway_id": g.id, "agent_id": g.agent_id, "sysid": g.sysid, "label": g.label})
        conn.commit()
    except GatewayError as exc:
        return _page(request, p, conn, status=400, error_key=exc.key,
                     form={"agent_id": agent_id, "sysid": sysid, "label": label})
    return _page(request, p, conn, issued=made)


@pages.post("/admin/gateways/{gateway_id}/revoke")
def gateways_revoke(request: Request, p: Admin, conn: Conn,
                    gateway_id: Annotated[int, Path(ge=1, le=2**62)]) -> Response:
    with conn.transaction():
        g = revoke(conn, gateway_id=gateway_id, revoked_by=p.user.username)
        if g is not None:
            record_admin(conn, by=p.user, action="phd gateway revoked", remote_addr=remote_addr(request),
                         before={"gateway_id": g.id, "agent_id": g.agent_id, "sysid": g.sysid, "label": g.label},
                         after={"gateway_id": g.id, "revoked": True})
    conn.commit()
    if g is None:
        return _page(request, p, conn, status=404, error_key="gateway_not_live")
    return RedirectResponse(f"/admin/gateways?revoked={gateway_id}", status_code=303)
