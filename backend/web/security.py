"""The HTTP edge every route shares: NUL bytes refused, a request body cap, security headers.

A pure ASGI middleware (no Starlette ``BaseHTTPMiddleware``: the event stream must keep flowing).

- **NUL bytes** (PostgreSQL text cannot hold them; a NUL in a form field was a 500 on 12 fields,
  the unauthenticated login among them) in the path, the query string or a form or JSON body are
  refused with 400 before any route runs.
- **Body cap**: a body larger than :data:`MAX_BODY` is refused with 413, by its
  ``Content-Length`` at once, else while it streams in (nothing is read whole before the check).
- **Headers**: a strict Content-Security-Policy (scripts and styles from this origin only, no
  inline script, ``frame-ancestors 'none'``), ``X-Frame-Options: DENY``, ``X-Content-Type-Options:
  nosniff``, ``Referrer-Policy: no-referrer``, and ``Cache-Control: no-store`` on every response
  to an authenticated request (a session cookie or a bearer token), so no shared or back-button
  cache keeps a citizen's data.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from backend.accounts.deps import SESSION_COOKIE

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY = 1024 * 1024
"""The largest request body (1 MiB): the biggest legitimate one, an admin form or a threshold
change, is a few kilobytes."""

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
)

# An escaped NUL in JSON: \u0000 after an even number of backslashes (so "\\u0000", a
# backslash followed by the text u0000, is not one).
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000", re.IGNORECASE)


def has_nul(*, path: str, query: bytes, content_type: str, body: bytes) -> bool:
    """Pure: does this request carry a NUL byte anywhere a route would read it?"""
    if "\x00" in path or b"\x00" in query or b"%00" in query.lower():
        return True
    if b"\x00" in body:
        return True
    if "application/x-www-form-urlencoded" in content_type:
        return b"%00" in body.lower()
    if "json" in content_type:
        return _JSON_NUL.search(body) is not None
    return False


_SESSION = SESSION_COOKIE.encode()


def _authenticated(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"authorization" or (name == b"cookie" and _SESSION in value):
            return True
    return False


async def _refuse(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    *SECURITY_HEADERS, (b"cache-control", b"no-store")],
    })
    await send({"type": "http.response.body", "body": body})


def _finite(value: Any) -> Any:
    """A validation error's echo of the input, with NaN and ±Infinity as strings (JSON has no
    such numbers: echoing them made the 422 itself a 500)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(status_code=422, content={"detail": jsonable_encoder(_finite(list(exc.errors())))})


def install(app: FastAPI) -> None:
    """The shared HTTP edge on an app: the middleware and a 422 that can always be rendered."""
    app.add_middleware(SecurityMiddleware)
    app.add_exception_handler(RequestValidationError, _validation_error)


class SecurityMiddleware:
    def __init__(self, app: ASGIApp, *, max_body: int = MAX_BODY) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", ()))
        content_type = headers.get(b"content-type", b"").decode("latin-1").lower()
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            await _refuse(send, 413, f"request body larger than {self.max_body} bytes")
            return
        # Read the body (bounded) so that it can be checked, then hand it on unchanged.
        chunks: list[bytes] = []
        size = 0
        more = scope.get("method") not in ("GET", "HEAD", "OPTIONS", "DELETE") or length not in (None, b"0")
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await _refuse(send, 413, f"request body larger than {self.max_body} bytes")
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if has_nul(path=scope.get("path", ""), query=scope.get("query_string", b""),
                   content_type=content_type, body=body):
            await _refuse(send, 400, "NUL bytes are not allowed in a request")
            return

        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        no_store = _authenticated(scope)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", ())}
                extra = [h for h in SECURITY_HEADERS if h[0] not in names]
                if no_store or b"set-cookie" in names:
                    extra = [h for h in extra if h[0] != b"cache-control"]
                    hdrs = [h for h in message.get("headers", ()) if h[0].lower() != b"cache-control"]
                    message["headers"] = [*hdrs, *extra, (b"cache-control", b"no-store")]
                else:
                    message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        await self.app(scope, replay, send_with_headers)
