"""Liveness and readiness: /healthz fails while the database is unreachable, /readyz also
while any service (ingest's broker connection, the scheduler) is not ready."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter(tags=["health"])


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


@router.get("/healthz")
def healthz(request: Request) -> JSONResponse:
    ok, word = _db_ok(request)
    return JSONResponse({"status": "ok" if ok else "fail", "database": word}, status_code=200 if ok else 503)


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    ok, word = _db_ok(request)
    checks = {"database": word}
    runtime = getattr(request.app.state, "runtime", None)
    for service in getattr(runtime, "services", []):
        s_ok, s_word = service.ready()
        checks[service.name] = s_word
        ok = ok and s_ok
    return JSONResponse({"status": "ok" if ok else "fail", "checks": checks}, status_code=200 if ok else 503)
