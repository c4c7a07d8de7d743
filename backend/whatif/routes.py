"""What-if in the API (``POST …/thresholds/what-if``), on the patient page (``/patients/{id}/what-if``),
and for a programme: its settings page (``/programmes/{programme}/thresholds``: every threshold of
the programme's rules, the packaged default and the value in force, each with a what-if link) and
its what-if page (``/programmes/{programme}/what-if``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from backend.accounts.access import PatientNotFound, open_patient
from backend.accounts.deps import Conn, CurrentPrincipal, audit_role_refusal, remote_addr
from backend.accounts.model import AccessDenied, Role
from backend.alerting.errors import InvalidThreshold
from backend.alerting.thresholds import programme_changes
from backend.alerting.views.thresholds import thresholds
from backend.api.deps import ERRORS, ClinicianPrincipal, Config, open_patient_or_refuse
from backend.web.i18n import translator
from backend.web.render import render
from backend.web.threshold_form import field_words, value_text
from backend.whatif import changes_from, what_if

api = APIRouter(prefix="/api/v1", tags=["what-if"])
pages = APIRouter(include_in_schema=False)


class ChangeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rule_id: str = Field(min_length=3, max_length=100)
    field: str = Field(min_length=1, max_length=50)
    value: float


class WhatIfIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    changes: list[ChangeIn] = Field(min_length=1, max_length=50)


class OutcomeOut(BaseModel):
    alerts: int
    alert_days: int
    red: int


class WhatIfOut(BaseModel):
    since: datetime
    until: datetime
    days: int
    citizens: int
    readings: int
    current: OutcomeOut
    proposed: OutcomeOut


def _run(conn: Any, config: Any, body: WhatIfIn, **who: Any) -> WhatIfOut:
    try:
        changes = changes_from([(c.rule_id, c.field, c.value) for c in body.changes], config)
        result = what_if(conn, config=config, changes=changes, now=datetime.now(UTC), **who)
    except InvalidThreshold as exc:
        raise HTTPException(400, str(exc)) from None
    return WhatIfOut.model_validate(result.as_json())


_REFUSED = {**ERRORS, 400: {"description": "A proposed value or field the rule cannot take (said in words)"}}


@api.post("/patients/{patient_id}/thresholds/what-if", response_model=WhatIfOut, responses=_REFUSED)
def patient_what_if(request: Request, p: ClinicianPrincipal, conn: Conn, config: Config, patient_id: int,
                    body: WhatIfIn) -> WhatIfOut:
    """What the proposed personal thresholds would have raised over the citizen's last 90 days,
    beside what the thresholds in force raised (the same replay production's rules run)."""
    open_patient_or_refuse(request, p, conn, patient_id, "api what-if")
    return _run(conn, config, body, patient_id=patient_id)


@api.post("/programmes/{programme}/thresholds/what-if", response_model=WhatIfOut, responses=_REFUSED)
def programme_what_if(p: ClinicianPrincipal, conn: Conn, config: Config,
                      programme: Literal["copd", "heart_failure", "hypertension"], body: WhatIfIn) -> WhatIfOut:
    """The same for a programme default: every active citizen of the programme, last 90 days (a
    citizen's own override of the same field still wins)."""
    return _run(conn, config, body, programme=programme)


@pages.get("/patients/{patient_id}/what-if")
def what_if_page(
    request: Request, p: CurrentPrincipal, conn: Conn, config: Config, patient_id: int,
    rule_id: Annotated[str | None, Query(max_length=100)] = None,
    field: Annotated[str | None, Query(max_length=50)] = None,
    value: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    t = translator(p.lang)
    if not p.user.role.clinical:
        audit_role_refusal(request, p, "this needs a nurse or specialist")
        return render(request, p, "error.html", status=403, heading=t("forbidden"), message=t("forbidden_text"))
    try:
        patient = open_patient(conn, user=p.user, patient_id=patient_id, action="what-if page",
                               detail=f"{rule_id}.{field}={value}", remote_addr=remote_addr(request))
    except (AccessDenied, PatientNotFound):
        return render(request, p, "error.html", status=403, heading=t("forbidden"), message=t("forbidden_text"))
    rows = thresholds(conn, patient_id=patient_id, config=config)
    result = error = None
    if rule_id and field and value:
        try:
            changes = changes_from([(rule_id, field, float(value.replace(",", ".")))], config)
            result = what_if(conn, config=config, changes=changes, now=datetime.now(UTC), patient_id=patient_id)
        except ValueError:
            error = f"{value!r} is not a number"
        except InvalidThreshold as exc:
            error = str(exc)
    return render(request, p, "whatif.html", patient=patient, rows=rows, rule_id=rule_id, field=field, value=value,
                  result=result, error=error)


@pages.get("/programmes/{programme}/what-if")
def programme_what_if_page(
    request: Request, p: CurrentPrincipal, conn: Conn, config: Config,
    programme: Literal["copd", "heart_failure", "hypertension"],
    rule_id: Annotated[str | None, Query(max_length=100)] = None,
    field: Annotated[str | None, Query(max_length=50)] = None,
    value: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    """The same for a programme default, over every active citizen of the programme (counts only:
    an admin, who changes programme defaults, sees it too)."""
    t = translator(p.lang)
    if not _may_see_programme(p):
        audit_role_refusal(request, p, "this needs a nurse, specialist or admin")
        return render(request, p, "error.html", status=403, heading=t("forbidden"), message=t("forbidden_text"))
    rows = [{"rule_id": r.id, "field": f} for r in config.ruleset.rules_for(programme)
            for f in r.default_thresholds()]
    result = error = None
    if rule_id and field and value:
        try:
            changes = changes_from([(rule_id, field, float(value.replace(",", ".")))], config)
            result = what_if(conn, config=config, changes=changes, now=datetime.now(UTC), programme=programme)
        except ValueError:
            error = f"{value!r} is not a number"
        except InvalidThreshold as exc:
            error = str(exc)
    return render(request, p, "whatif.html", patient=None, programme=programme, rows=rows, rule_id=rule_id,
                  field=field, value=value, result=result, error=error)


PROGRAMMES = ("copd", "heart_failure", "hypertension")


def _may_see_programme(p: Any) -> bool:
    """A programme's thresholds and its what-if counts hold no citizen's data: clinicians and admins."""
    return bool(p.user.role.clinical or p.user.role == Role.ADMIN)


@pages.get("/programmes/{programme}/thresholds")
def programme_thresholds_page(
    request: Request, p: CurrentPrincipal, conn: Conn, config: Config,
    programme: Literal["copd", "heart_failure", "hypertension"],
) -> Response:
    """A programme's settings: each threshold of its rules, the packaged default, the value in
    force (a programme change, else the default), and a link to what a new value would have raised."""
    t = translator(p.lang)
    if not _may_see_programme(p):
        audit_role_refusal(request, p, "this needs a nurse, specialist or admin")
        return render(request, p, "error.html", status=403, heading=t("forbidden"), message=t("forbidden_text"))
    changed = programme_changes(conn).get(programme, {})
    rows = []
    for rule in config.ruleset.rules_for(programme):
        measurement = getattr(rule, "measurement", None)
        for field, default in rule.default_thresholds().items():
            value = changed.get(rule.id, {}).get(field, default)
            words = field_words(field, rule_kind=rule.kind, kind=measurement.value if measurement else None,
                                component=getattr(rule, "component_name", None), lang=p.lang)
            rows.append({"rule_id": rule.id, "title": rule.title, "field": field, "label": words.label,
                         "unit": words.unit, "default": value_text(default, p.lang),
                         "value": value_text(value, p.lang), "changed": field in changed.get(rule.id, {}),
                         "raw": f"{value:g}"})
    return render(request, p, "programme_thresholds.html", programme=programme, programmes=PROGRAMMES, rows=rows)
