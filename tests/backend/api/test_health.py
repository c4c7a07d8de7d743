"""Liveness and readiness answer with their documented bodies, 503 while not healthy."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx


def test_not_started_is_503_with_the_reason(settings: Any) -> None:
    from backend.app import create_app

    async def ask() -> tuple[httpx.Response, httpx.Response]:
        # The ASGI app without its lifespan: no pool yet.
        transport = httpx.ASGITransport(app=create_app(settings))
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as c:
            return await c.get("/healthz"), await c.get("/readyz")

    health, ready = asyncio.run(ask())
    assert health.status_code == 503 and health.json() == {"status": "fail", "database": "starting"}
    assert ready.status_code == 503 and ready.json() == {"status": "fail", "checks": {"database": "starting"}}


def test_a_running_app_is_healthy(client: Any) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok", "database": "ok"}
    ready = client.get("/readyz").json()
    assert ready["checks"]["database"] == "ok" and set(ready) == {"status", "checks"}
