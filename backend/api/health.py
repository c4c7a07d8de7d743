"""Liveness and readiness: /healthz fails while the database is unreachable, /readyz also
while any service (ingest's broker connection, the scheduler) is not ready."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

router = APIRouter(tags=["health"])


class HealthOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    status: str = Field(description='"ok" or "fail" (then with HTTP 503)')
    database: str


class ReadyOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    status: str = Field(
        description='"ok"; "degraded" (HTTP 200) while some citizens\' readings cannot be evaluated;'
        ' or "fail" (then with HTTP 503)'
    )
    checks: dict[str, str] = Field(description="A short word per part: the database and each service")


_FAILED: dict[int | str, dict[str, object]] = {503: {"description": "Not healthy (the body says why)"}}


def _db_ok(request: Request) -> tuple[bool, str]:
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is None:
        return False, "starting"
    try:
        with runtime.pool.connection(timeout=2) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # any failure means "not healthy"; the reason is reported
        return False, f"database: {type(exc).__name__}"
    return True, "ok"


@router.get("/healthz", response_model=HealthOut, responses=_FAILED)
def healthz(request: Request, response: Response) -> HealthOut:
    ok, word = _db_ok(request)
    response.status_code = 200 if ok else 503
    return HealthOut(status="ok" if ok else "fail", database=word)


@router.get("/readyz", response_model=ReadyOut, responses=_FAILED)
def readyz(request: Request, response: Response) -> ReadyOut:
    ok, word = _db_ok(request)
    checks = {"database": word}
    runtime = getattr(request.app.state, "runtime", None)
    for service in getattr(runtime, "services", []):
        s_ok, s_word = service.ready()
        checks[service.name] = s_word
        ok = ok and s_ok
    degraded = ok and _evaluations(runtime, checks)
    response.status_code = 200 if ok else 503
    return ReadyOut(status=("degraded" if degraded else "ok") if ok else "fail", checks=checks)


def _evaluations(runtime: Any, checks: dict[str, str]) -> bool:
    """Readings the alert rules could not evaluate: the process serves, but some citizens'
    alarms may be silent, so it says so (also as the metric
    ``nearcare_alert_evaluation_failed_patients``)."""
    from backend.alerting.failures import summary

    try:
        with runtime.pool.connection(timeout=2) as conn:
            s = summary(conn)
    except Exception as exc:
        checks["evaluations"] = f"unknown: {type(exc).__name__}"
        return True
    if s.readings:
        checks["evaluations"] = f"degraded: {s.readings} readings of {s.patients} citizens not evaluated"
        return True
    checks["evaluations"] = "ok"
    return False
