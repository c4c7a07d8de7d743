"""What-if in the API (``POST …/thresholds/what-if``), on the patient page (``/patients/{id}/what-if``),
and for a programme: its settings page (``/programmes/{programme}/thresholds``: every threshold of
the programme's rules, the packaged default and the value in force, each with a what-if link) and
its what-if page (``/programmes/{programme}/what-if``).

Changing a programme default (issue 11 item 5) is an admin's or a specialist's matter: an admin
runs the programmes, a specialist (speciallæge) answers for them clinically. A nurse, whose
changes are the personal thresholds of the citizens in her scope, and a citizen are refused (403,
audited). The change is saved from the programme's what-if page, after its figures ("Gem som
programstandard", with a reason), or by ``PUT /api/v1/programmes/{programme}/thresholds/{rule_id}/{field}``;
``DELETE`` on the same path (with a reason) returns the field to the packaged default. Both are
written to ``alert_threshold_audit`` and shown on the settings page. The rules engine reads the
programme changes again at most ``ThresholdCache``'s TTL (5 s) later."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, get_args

from fastapi import APIRouter, Depends, Form, HTTPException, Path, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from alert_rules.model import Programme
from backend.accounts.access import PatientNotFound, open_patient
from backend.accounts.deps import Conn, CurrentPrincipal, Principal, audit_role_refusal, remote_addr, require_role
from backend.accounts.model import AccessDenied, Role
from backend.alerting.errors import InvalidThreshold
from backend.alerting.thresholds import (
    ProgrammeThreshold,
    programme_changes,
    programme_thresholds,
    reset_programme_default,
    set_programme_default,
    threshold_audit,
)
from backend.alerting.views.thresholds import thresholds
from backend.api.deps import ERRORS, ClinicianPrincipal, Config, open_patient_or_refuse
from backend.web.i18n import translator
from backend.web.render import lang_of, render
from backend.web.threshold_form import (
    FormError,
    check_reason,
    check_value,
    field_words,
    parse_value,
    rule_field_words,
    value_text,
)
from backend.whatif import changes_from, what_if

api = APIRouter(prefix="/api/v1", tags=["what-if"])
pages = APIRouter(include_in_schema=False)
log = logging.getLogger(__name__)

PROGRAMMES: tuple[str, ...] = get_args(Programme)
EDITORS = (Role.ADMIN, Role.SPECIALIST)
"""Who changes a programme default (module docstring)."""
READERS = (Role.NURSE, Role.SPECIALIST, Role.ADMIN)
"""Who reads a programme's thresholds and what-if counts: they hold no citizen's data."""
ProgrammeEditor = Annotated[Principal, Depends(require_role(*EDITORS))]
ProgrammeReader = Annotated[Principal, Depends(require_role(*READERS))]


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
def programme_what_if(p: ProgrammeReader, conn: Conn, config: Config, programme: Programme,
                      body: WhatIfIn) -> WhatIfOut:
    """The same for a programme default: every active citizen of the programme, last 90 days (a
    citizen's own override of the same field still wins). Counts only: clinicians and admins."""
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
    request: Request, p: CurrentPrincipal, conn: Conn, config: Config, programme: Programme,
    rule_id: Annotated[str | None, Query(max_length=100)] = None,
    field: Annotated[str | None, Query(max_length=50)] = None,
    value: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    """The same for a programme default, over every active citizen of the programme (counts only:
    an admin, who changes programme defaults, sees it too). After the figures, an admin or a
    specialist saves the proposed value as the programme default, with a reason."""
    lang = lang_of(request, p)
    t = translator(lang)
    if not _may_see_programme(p):
        audit_role_refusal(request, p, "this needs a nurse, specialist or admin")
        return render(request, p, "error.html", status=403, heading=t("forbidden"), message=t("forbidden_text"))
    rows = [{"rule_id": r.id, "field": f} for r in config.ruleset.rules_for(programme)
            for f in r.default_thresholds()]
    result = error = proposal = None
    if rule_id and field and value:
        try:
            number = float(value.replace(",", "."))
            if not math.isfinite(number):
                raise ValueError(value)
            changes = changes_from([(rule_id, field, number)], config)
            result = what_if(conn, config=config, changes=changes, now=datetime.now(UTC), programme=programme)
        except ValueError:
            error = f"{value!r} is not a number"
        except InvalidThreshold as exc:
            error = str(exc)
        else:
            rule = config.ruleset.by_id.get(rule_id)
            words = rule_field_words(rule, field, lang)
            proposal = {"title": rule.title if rule is not None else rule_id, "label": words.label,
                        "unit": words.unit, "value": value_text(number, lang), "raw": repr(number)}
    savable = proposal is not None and listed(config, programme, rule_id or "", field or "") is not None
    return render(request, p, "whatif.html", patient=None, programme=programme, rows=rows, rule_id=rule_id,
                  field=field, value=value, result=result, error=error, proposal=proposal,
                  may_change=savable and _may_change_programme(p))


def _may_see_programme(p: Any) -> bool:
    """A programme's thresholds and its what-if counts hold no citizen's data: clinicians and admins."""
    return bool(p.user.role in READERS)


def _may_change_programme(p: Any) -> bool:
    return bool(p.user.role in EDITORS)


@pages.get("/programmes/{programme}/thresholds")
def programme_thresholds_page(request: Request, p: CurrentPrincipal, conn: Conn, config: Config,
                              programme: Programme) -> Response:
    """A programme's settings: each threshold of its rules, the packaged default, the value in
    force (a programme change, else the default) with who changed it and why, a link to what a new
    value would have raised, and the programme's threshold changes (who, when, old → new, why)."""
    lang = lang_of(request, p)
    t = translator(lang)
    if not _may_see_programme(p):
        audit_role_refusal(request, p, "this needs a nurse, specialist or admin")
        return render(request, p, "error.html", status=403, heading=t("forbidden"), message=t("forbidden_text"))
    rules = config.ruleset.by_id
    rows = []
    for th in programme_thresholds(conn, programme=programme, config=config):
        rule = rules[th.rule_id]
        measurement = getattr(rule, "measurement", None)
        words = field_words(th.field, rule_kind=rule.kind, kind=measurement.value if measurement else None,
                            component=getattr(rule, "component_name", None), lang=lang)
        rows.append({"rule_id": th.rule_id, "title": th.rule_title, "field": th.field, "label": words.label,
                     "unit": words.unit, "default": value_text(th.default_value, lang),
                     "value": value_text(th.value, lang), "changed": th.changed, "set_by": th.set_by,
                     "set_at": th.set_at, "reason": th.reason, "raw": f"{th.value:g}"})
    audit = []
    for c in threshold_audit(conn, programme=programme):
        words = rule_field_words(rules.get(c.rule_id), c.field, lang)
        audit.append({"at": c.at, "by": c.actor, "title": rules[c.rule_id].title if c.rule_id in rules else c.rule_id,
                      "label": words.label, "unit": words.unit,
                      "old": value_text(c.old_value, lang) if c.old_value is not None else "–",
                      "new": value_text(c.new_value, lang) if c.new_value is not None else "–", "reason": c.reason})
    return render(request, p, "programme_thresholds.html", programme=programme, programmes=PROGRAMMES, rows=rows,
                  audit=audit, may_change=_may_change_programme(p))


@pages.post("/programmes/{programme}/thresholds")
def programme_threshold_edit(
    request: Request, p: CurrentPrincipal, conn: Conn, config: Config, programme: Programme,
    rule_id: Annotated[str, Form(max_length=200)],
    field: Annotated[str, Form(max_length=100)],
    reason: Annotated[str, Form(max_length=2000)] = "",
    value: Annotated[str, Form(max_length=50)] = "",
    action: Annotated[Literal["set", "reset"], Form()] = "set",
) -> Response:
    """Save a programme default (from the what-if page) or return it to the packaged default (from
    the settings page); CSRF as every form. Back to the settings page, at the changed row."""
    lang = lang_of(request, p)
    t = translator(lang)
    if not _may_change_programme(p):
        audit_role_refusal(request, p, "changing a programme default needs an admin or a specialist")
        return render(request, p, "error.html", status=403, heading=t("forbidden"),
                      message=t("programme_change_forbidden"))
    error = _programme_change(conn, config, programme=programme, rule_id=rule_id, field=field, value=value,
                              reason=reason, by=_by(p), reset=action == "reset", lang=lang)
    if error:
        return render(request, p, "error.html", status=400, heading=t("programme_thresholds"), message=error)
    conn.commit()
    return RedirectResponse(f"/programmes/{programme}/thresholds#programme-threshold-audit", 303)


def _by(p: Principal) -> str:
    """As the patient page's changes name their author."""
    return f"{p.user.display_name} ({p.user.username})"


def _programme_change(conn: Any, config: Any, *, programme: str, rule_id: str, field: str, value: str, reason: str,
                      by: str, reset: bool, lang: str) -> str | None:
    """The form checked in the reader's words (as the patient page's thresholds), then saved by the
    service; a refusal the form could not foresee is logged and shown in words."""
    t = translator(lang)
    rule = listed(config, programme, rule_id, field)
    if rule is None:
        return t("threshold_refused")
    try:
        check_reason(reason, lang)
        number = None
        if not reset:
            number = parse_value(value, lang)
            in_force = programme_changes(conn).get(programme, {}).get(rule_id, {})
            check_value(rule, field, number, in_force, lang)
    except FormError as exc:
        return str(exc)
    try:
        if number is None:
            reset_programme_default(conn, programme=programme, rule_id=rule_id, field=field, by=by,
                                    reason=reason.strip(), config=config)
        else:
            set_programme_default(conn, programme=programme, rule_id=rule_id, field=field, value=number, by=by,
                                  reason=reason.strip(), config=config)
    except InvalidThreshold as exc:
        log.info("programme default change refused (%s %s.%s): %s", programme, rule_id, field, exc)
        return t("threshold_refused")
    return None


def listed(config: Any, programme: str, rule_id: str, field: str) -> Any | None:
    """Pure: the rule when ``rule_id.field`` is one of the thresholds the programme's settings page
    lists (a rule of the programme, a field its rule file sets), else None."""
    rule = next((r for r in config.ruleset.rules_for(programme) if r.id == rule_id), None)
    return rule if rule is not None and field in rule.default_thresholds() else None


# The programme defaults in the API.

RuleId = Annotated[str, Path(min_length=1, max_length=100, description="A rule of the programme: copd.spo2.absolute")]
FieldName = Annotated[str, Path(min_length=1, max_length=50, description="One of the rule's threshold fields: red_low")]
Reason = Annotated[str, StringConstraints(pattern=r"^[^\x00]*[^\x00\s][^\x00]*$", min_length=3, max_length=2000)]


class ProgrammeDefaultIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: float = Field(ge=-1e6, le=1e6, description="The new programme default: finite, inside the measured"
                                                       " component's plausible range, and in order with the"
                                                       " rule's other limits")
    reason: Reason = Field(description="Why (required; kept in the threshold audit)")


class ProgrammeResetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Reason = Field(description="Why the field returns to the packaged default (kept in the audit)")


class ProgrammeThresholdOut(BaseModel):
    model_config = ConfigDict(frozen=True)
    programme: str
    rule_id: str
    rule_title: str
    field: str
    value: float = Field(description="In force for every citizen of the programme without their own override")
    default_value: float = Field(description="The packaged default (the rule file)")
    changed: bool = Field(description="The programme has its own value (else the packaged default is in force)")
    set_by: str | None
    set_at: datetime | None
    reason: str | None


class ProgrammeChangeOut(BaseModel):
    model_config = ConfigDict(frozen=True)
    at: datetime
    actor: str
    rule_id: str
    field: str
    old_value: float | None
    new_value: float | None = Field(description="null: the rule file no longer has the field")
    reason: str


_PROGRAMME_READ: dict[int | str, dict[str, Any]] = {
    401: {"description": "Not logged in"},
    403: {"description": "A citizen: a programme's thresholds are for clinicians and admins (audited)"},
}
_PROGRAMME_CHANGE: dict[int | str, dict[str, Any]] = {
    400: {"description": "A value the rule cannot take, or a reason missing (said in words)"},
    401: {"description": "Not logged in"},
    403: {"description": "Neither an admin nor a specialist (audited)"},
    404: {"description": "No such threshold in this programme (rule or field)"},
}


def _out(th: ProgrammeThreshold) -> ProgrammeThresholdOut:
    return ProgrammeThresholdOut.model_validate(th, from_attributes=True)


def _one(conn: Any, config: Any, programme: str, rule_id: str, field: str) -> ProgrammeThreshold | None:
    return next((th for th in programme_thresholds(conn, programme=programme, config=config)
                 if th.rule_id == rule_id and th.field == field), None)


@api.get("/programmes/{programme}/thresholds", response_model=list[ProgrammeThresholdOut],
         responses=_PROGRAMME_READ)
def programme_threshold_list(p: ProgrammeReader, conn: Conn, config: Config,
                             programme: Programme) -> list[ProgrammeThresholdOut]:
    """Every threshold of the programme's rules: the packaged default, the value in force, and who
    changed it, when and why."""
    return [_out(th) for th in programme_thresholds(conn, programme=programme, config=config)]


@api.get("/programmes/{programme}/thresholds/audit", response_model=list[ProgrammeChangeOut],
         responses=_PROGRAMME_READ)
def programme_threshold_changes(p: ProgrammeReader, conn: Conn, programme: Programme) -> list[ProgrammeChangeOut]:
    """The programme's default changes and resets, newest first."""
    return [ProgrammeChangeOut(at=c.at, actor=c.actor, rule_id=c.rule_id, field=c.field, old_value=c.old_value,
                               new_value=c.new_value, reason=c.reason)
            for c in threshold_audit(conn, programme=programme)]


@api.put("/programmes/{programme}/thresholds/{rule_id}/{field}", response_model=ProgrammeThresholdOut,
         responses=_PROGRAMME_CHANGE)
def set_programme_threshold(p: ProgrammeEditor, conn: Conn, config: Config, programme: Programme, rule_id: RuleId,
                            field: FieldName, body: ProgrammeDefaultIn) -> ProgrammeThresholdOut:
    """Change a programme default, with a reason: it reaches every citizen of the programme without
    their own override of the field (see the what-if first). Admins and specialists."""
    if listed(config, programme, rule_id, field) is None:
        raise HTTPException(404, f"programme {programme} has no threshold {rule_id}.{field}")
    return _saved(conn, config, programme, rule_id, field, lambda: set_programme_default(
        conn, programme=programme, rule_id=rule_id, field=field, value=body.value, by=_by(p),
        reason=body.reason.strip(), config=config))


@api.delete("/programmes/{programme}/thresholds/{rule_id}/{field}", response_model=ProgrammeThresholdOut,
            responses={**_PROGRAMME_CHANGE, 409: {"description": "The field follows the packaged default already"},
                       400: {"description": "The packaged value does not fit the programme's other changes of the"
                                            " rule (said in words)"}})
def reset_programme_threshold(p: ProgrammeEditor, conn: Conn, config: Config, programme: Programme, rule_id: RuleId,
                              field: FieldName, body: ProgrammeResetIn) -> ProgrammeThresholdOut:
    """Return a programme default to the packaged default (the rule file), with a reason.
    Admins and specialists."""
    found = _one(conn, config, programme, rule_id, field)
    if found is None:
        raise HTTPException(404, f"programme {programme} has no threshold {rule_id}.{field}")
    if not found.changed:
        raise HTTPException(409, f"{rule_id}.{field} follows the packaged default already")
    return _saved(conn, config, programme, rule_id, field, lambda: reset_programme_default(
        conn, programme=programme, rule_id=rule_id, field=field, by=_by(p), reason=body.reason.strip(),
        config=config))


def _saved(conn: Any, config: Any, programme: str, rule_id: str, field: str,
           change: Callable[[], None]) -> ProgrammeThresholdOut:
    """Make the change (a refusal in words is a 400), commit, and answer with the threshold as it is now."""
    try:
        change()
    except InvalidThreshold as exc:
        raise HTTPException(400, str(exc)) from None
    conn.commit()
    found = _one(conn, config, programme, rule_id, field)
    assert found is not None
    return _out(found)
