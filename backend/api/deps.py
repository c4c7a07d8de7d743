"""Request dependencies the domain routers (JSON) and the web pages share: the scoped patient
(scope check and audit row, or an HTTP error), the clinician gate, and what a change needs from
the running process (the alerting configuration and the topics).

Each is an ``Annotated`` type, so a route names what it needs in its signature. Nothing here
connects at import time.
"""

from __future__ import annotations

from typing import Annotated, Any

import psycopg
from fastapi import Depends, HTTPException, Request

from backend.accounts.access import Patient, PatientNotFound, open_patient
from backend.accounts.deps import CurrentPrincipal, Principal, audit_role_refusal, remote_addr
from backend.accounts.model import AccessDenied
from backend.alerting.config import AlertingConfig
from backend.alerting.views.worklist import GREEN_SHOWN, WorklistView
from backend.roles import Runtime
from vitals.wire import Topics

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Not logged in"},
    403: {"description": "Outside your scope, or no such record: the two answer the same (audited)"},
    404: {"description": "No such resource"},
}
NOT_YOURS = "outside your scope, or no such record"
"""The one answer to an id the caller may not see and to an id that does not exist (no oracle)."""
"""The refusals every patient-scoped JSON operation documents."""


def open_patient_or_refuse(
    request: Request,
    p: Principal,
    conn: psycopg.Connection,
    patient_id: int,
    action: str,
    detail: str | None = None,
) -> Patient:
    """The patient after the scope check and its audit row; a refusal and an unknown patient are
    the same 403 (both audited), so an id's existence is not given away."""
    try:
        return open_patient(
            conn, user=p.user, patient_id=patient_id, action=action, detail=detail, remote_addr=remote_addr(request)
        )
    except (AccessDenied, PatientNotFound) as exc:
        raise HTTPException(403, NOT_YOURS) from exc


def worklist_shown(view: WorklistView, *, green_limit: int = GREEN_SHOWN) -> list[int]:
    """The citizens a worklist response shows (its rows and the green rows it lists): each gets
    a Min Log row for the look (issue 12)."""
    return [r.patient_id for r in view.rows] + [g.patient_id for g in view.green[:green_limit]]


def clinician(request: Request, p: CurrentPrincipal) -> Principal:
    """A nurse or a specialist (a 403 for anyone else, audited)."""
    if not p.user.role.clinical:
        audit_role_refusal(request, p, "this needs a nurse or specialist")
        raise HTTPException(403, "this needs a nurse or specialist")
    return p


ClinicianPrincipal = Annotated[Principal, Depends(clinician)]


def runtime(request: Request) -> Runtime:
    found: Runtime = request.app.state.runtime
    return found


def alerting_config(request: Request) -> AlertingConfig:
    """The rules and routing this process evaluates with (``NEARCARE_ALERT_RULES_DIR``, read once
    at start): what the screens show and edit is the very object the engine uses."""
    config: AlertingConfig = request.app.state.runtime.config
    return config


def topics(request: Request) -> Topics:
    found: Topics = request.app.state.settings.topics
    return found


RuntimeDep = Annotated[Runtime, Depends(runtime)]
Config = Annotated[AlertingConfig, Depends(alerting_config)]
TopicsDep = Annotated[Topics, Depends(topics)]
