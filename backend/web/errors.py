"""Real error pages for people (issue 13: ``/patients/abc`` answered raw JSON, a 2,001-character
note a raw English 422). A browser's request (it accepts text/html, outside ``/api``) gets the
error page in the reader's language; the API and machines keep FastAPI's JSON answers."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend.web.i18n import N_, translator

_HEADINGS = {400: N_("bad_request"), 401: N_("login"), 403: N_("forbidden"), 404: N_("not_found"),
             405: N_("bad_request"), 409: N_("conflict"), 413: N_("too_large"), 422: N_("bad_request"),
             429: N_("rate_limited_short")}
_TEXTS = {400: N_("bad_request_text"), 403: N_("forbidden_text"), 404: N_("not_found_text"),
          405: N_("bad_request_text"), 409: N_("conflict_text"), 413: N_("too_large_text"),
          422: N_("bad_request_text"), 429: N_("rate_limited_text")}


def wants_page(request: Request) -> bool:
    """A person's browser, not the API or a machine."""
    if request.url.path.startswith(("/api/", "/healthz", "/readyz", "/metrics", "/events")):
        return False
    return "text/html" in request.headers.get("accept", "")


def _page(request: Request, status: int, headers: dict[str, str] | None = None) -> Response:
    from backend.web.render import lang_of, render

    t = translator(lang_of(request, None))
    heading = t(_HEADINGS[status]) if status in _HEADINGS else t("error")
    message = t(_TEXTS[status]) if status in _TEXTS else t("error_text")
    resp = render(request, None, "error.html", status=status, heading=heading, message=message, back="/")
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


async def _call(handler: Callable[..., Any], request: Request, exc: Exception) -> Response:
    result = handler(request, exc)
    if inspect.isawaitable(result):
        result = await result
    assert isinstance(result, Response)
    return result


def install(app: FastAPI) -> None:
    """After :func:`backend.web.security.install`: machines keep whatever handler was there (its
    422 renders NaN and infinity), people get a page."""
    prior_http = app.exception_handlers.get(StarletteHTTPException)
    prior_validation = app.exception_handlers.get(RequestValidationError)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if wants_page(request) and exc.status_code >= 400:
            return _page(request, exc.status_code, dict(exc.headers or {}))
        if prior_http is not None:
            return await _call(prior_http, request, exc)
        return await http_exception_handler(request, exc)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        if wants_page(request):
            return _page(request, 404 if request.method == "GET" else 400)
        if prior_validation is not None:
            return await _call(prior_validation, request, exc)
        return await request_validation_exception_handler(request, exc)

    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
