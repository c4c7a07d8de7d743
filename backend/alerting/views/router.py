"""The JSON API of the alerting views: the worklist, a clinician's change to one alert, a
patient's alert history and thresholds. Included under ``/api/v1`` by :mod:`backend.api.v1`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, HTTPException, Path, Request

from backend import audit
from backend.accounts.deps import Conn, CurrentPrincipal, Principal, audit_overview, remote_addr
from backend.alerting.errors import AlertingError
from backend.alerting.views import actions
from backend.alerting.views.history import history_rows
from backend.alerting.views.schemas import (
    AcknowledgedOut,
    HistoryRowOut,
    ResolvedOut,
    SnoozedOut,
    ThresholdOut,
    WorklistOut,
)
from backend.alerting.views.thresholds import edit_threshold, thresholds
from backend.alerting.views.worklist import worklist as scoped_worklist
from backend.api.deps import (
    ERRORS,
    NOT_YOURS,
    ClinicianPrincipal,
    Config,
    TopicsDep,
    open_patient_or_refuse,
    worklist_shown,
)
from backend.api.schemas import AcknowledgeIn, ResolveIn, ShortText, SnoozeIn, ThresholdIn
from backend.review.router import GreenCacheDep

router = APIRouter(tags=["alerts"])
PatientId = Annotated[int, Path(ge=1, le=2**62)]
AlertId = Annotated[int, Path(ge=1, le=2**62)]
ALERT_CHANGE: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    404: {"description": "No such alert"},
    409: {"description": "Refused by the alert's state"},
}


@router.get("/worklist", response_model=WorklistOut, responses=ERRORS)
def worklist(
    request: Request, p: ClinicianPrincipal, conn: Conn, green: GreenCacheDep, team: ShortText | None = None
) -> WorklistOut:
    """One row per patient: worst open severity first, then oldest; then the green patients."""
    view = scoped_worklist(conn, user=p.user, green=green, team_key=team)
    audit_overview(request, p, conn, action="api worklist", detail=f"{len(view.rows)} patients",
                   patient_ids=worklist_shown(view))
    return WorklistOut.of(view)


def _change_alert(
    request: Request,
    p: Principal,
    conn: psycopg.Connection,
    alert_id: int,
    *,
    action: str,
    change: Callable[[], object],
) -> None:
    """Scope check and audit row on the alert's patient, the change (alerting's refusal is a
    409), commit."""
    patient_id = actions.alert_patient(conn, alert_id=alert_id)
    if patient_id is None:
        audit.record_refusal(conn, actor=p.user, action=action, detail=f"unknown alert id {alert_id}",
                             remote_addr=remote_addr(request))
        raise HTTPException(403, NOT_YOURS)
    open_patient_or_refuse(request, p, conn, patient_id, action, detail=f"alert {alert_id}")
    try:
        change()
    except AlertingError as exc:
        raise HTTPException(409, str(exc)) from exc
    conn.commit()


@router.post("/alerts/{alert_id}/acknowledge", response_model=AcknowledgedOut, responses=ALERT_CHANGE)
def acknowledge(
    request: Request,
    p: ClinicianPrincipal,
    conn: Conn,
    alert_id: AlertId,
    body: AcknowledgeIn,
    topics: TopicsDep,
) -> AcknowledgedOut:
    """Kvittér an alert with a note."""
    _change_alert(
        request,
        p,
        conn,
        alert_id,
        action="api kvittering",
        change=lambda: actions.acknowledge(conn, alert_id=alert_id, user=p.user, note=body.note, topics=topics),
    )
    return AcknowledgedOut(alert_id=alert_id, acknowledged_by=p.user.username)


@router.post("/alerts/{alert_id}/resolve", response_model=ResolvedOut, responses=ALERT_CHANGE)
def resolve(
    request: Request, p: ClinicianPrincipal, conn: Conn, config: Config, alert_id: AlertId, body: ResolveIn
) -> ResolvedOut:
    """Afslut an alert by hand, with a note."""
    _change_alert(
        request,
        p,
        conn,
        alert_id,
        action="api resolve alert",
        change=lambda: actions.resolve(conn, alert_id=alert_id, user=p.user, note=body.note, config=config),
    )
    return ResolvedOut(alert_id=alert_id, resolved_by=p.user.username)


@router.post("/alerts/{alert_id}/snooze", response_model=SnoozedOut, responses=ALERT_CHANGE)
def snooze(
    request: Request, p: ClinicianPrincipal, conn: Conn, config: Config, alert_id: AlertId, body: SnoozeIn
) -> SnoozedOut:
    """Udsæt an alert until a time (with its zone), with a reason: no escalation until then."""
    _change_alert(
        request,
        p,
        conn,
        alert_id,
        action="api snooze alert",
        change=lambda: actions.snooze(
            conn, alert_id=alert_id, user=p.user, until=body.until, reason=body.reason, config=config
        ),
    )
    return SnoozedOut(alert_id=alert_id, snoozed_until=body.until, snoozed_by=p.user.username)


@router.get("/patients/{patient_id}/alerts", response_model=list[HistoryRowOut], responses=ERRORS)
def alert_history(request: Request, p: CurrentPrincipal, conn: Conn, patient_id: PatientId) -> list[HistoryRowOut]:
    """Every transition of every alert of the patient, newest first."""
    open_patient_or_refuse(request, p, conn, patient_id, "api alert history")
    return [HistoryRowOut.model_validate(r) for r in history_rows(conn, patient_id=patient_id)]


@router.get("/patients/{patient_id}/thresholds", response_model=list[ThresholdOut], responses=ERRORS)
def patient_thresholds(
    request: Request, p: CurrentPrincipal, conn: Conn, config: Config, patient_id: PatientId
) -> list[ThresholdOut]:
    """Every adjustable threshold of the patient: in force, default, and the override's reason."""
    open_patient_or_refuse(request, p, conn, patient_id, "api thresholds")
    return [ThresholdOut.model_validate(t) for t in thresholds(conn, patient_id=patient_id, config=config)]


@router.put(
    "/patients/{patient_id}/thresholds",
    response_model=list[ThresholdOut],
    responses={**ERRORS, 400: {"description": "Refused change"}},
)
def set_threshold(
    request: Request,
    p: ClinicianPrincipal,
    conn: Conn,
    config: Config,
    patient_id: PatientId,
    body: ThresholdIn,
) -> list[ThresholdOut]:
    """Set (or, with value null, clear) a personal threshold. A reason is required."""
    open_patient_or_refuse(request, p, conn, patient_id, "threshold change", detail=f"{body.rule_id}.{body.field}")
    error = edit_threshold(
        conn,
        patient_id=patient_id,
        rule_id=body.rule_id,
        field=body.field,
        value="" if body.value is None else str(body.value),
        reason=body.reason,
        user=p.user,
        config=config,
        clear=body.value is None,
    )
    if error:
        raise HTTPException(400, error)
    conn.commit()
    return [ThresholdOut.model_validate(t) for t in thresholds(conn, patient_id=patient_id, config=config)]
