"""Jinja2 rendering with the screen words, local time and the CSRF token in every context."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from backend.accounts.deps import Principal
from backend.web.i18n import (
    component_words,
    flag_words,
    kind_words,
    lookup,
    number,
    pick_lang,
    reading_words,
    translator,
)

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
LANG_COOKIE = "nearcare_lang"

_env = Environment(
    loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True
)


def _tojson_safe(value: Any) -> str:
    # For <script type="application/json">: no "</" can close the element early.
    return json.dumps(value, default=str).replace("</", "<\\/")


_env.filters["json_script"] = _tojson_safe


def lang_of(request: Request, principal: Principal | None) -> str:
    return pick_lang(
        request.query_params.get("lang"), principal.user.lang if principal else None, request.cookies.get(LANG_COOKIE)
    )


def render(request: Request, principal: Principal | None, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    lang = lang_of(request, principal)
    tz = ZoneInfo(request.app.state.settings.timezone)

    def local(t: datetime | None, fmt: str = "%d-%m-%Y %H:%M") -> str:
        return t.astimezone(tz).strftime(fmt) if t else "–"

    ctx.setdefault("now", datetime.now(UTC))
    html = _env.get_template(name).render(
        request=request,
        p=principal,
        user=principal.user if principal else None,
        csrf=principal.csrf if principal else ctx.pop("csrf", ""),
        t=translator(lang),
        lang=lang,
        other_lang="en" if lang == "da" else "da",
        local=local,
        num=lambda v, d=None: number(v, lang, d),
        reading_words=lambda kind, components, detail=False: reading_words(kind, components, lang, detail=detail),
        flag=lambda code: flag_words(code, lang),
        kind_name=lambda kind: kind_words(kind, lang),
        component_name=lambda kind, component: component_words(kind, component, lang),
        unit_of=lambda component: lookup(lang, f"cunit_{component}") or "",
        path=request.url.path,
        **ctx,
    )
    resp = HTMLResponse(html, status_code=status)
    if request.query_params.get("lang") in ("da", "en"):
        resp.set_cookie(LANG_COOKIE, request.query_params["lang"], samesite="lax", httponly=True)
    return resp
