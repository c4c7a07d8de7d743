"""Kvittér alle grønne over the JSON API (the web's form posts to ``/worklist/kvitter-green``)."""

from __future__ import annotations

import threading
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.datastructures import State

from backend.accounts.deps import Conn, remote_addr
from backend.api.deps import ERRORS, ClinicianPrincipal, TopicsDep
from backend.review import service
from backend.review.schemas import GreenReviewOut

router = APIRouter(tags=["review"])
_cache_lock = threading.Lock()


def green_cache_of(state: State) -> service.GreenCache:
    """The app's one green-row cache (made on first use)."""
    with _cache_lock:
        cache = getattr(state, "green_cache", None)
        if not isinstance(cache, service.GreenCache):
            cache = service.GreenCache()
            state.green_cache = cache
        return cache


def green_cache(request: Request) -> service.GreenCache:
    return green_cache_of(request.app.state)


GreenCacheDep = Annotated[service.GreenCache, Depends(green_cache)]


@router.post("/worklist/green/acknowledge", response_model=GreenReviewOut, responses=ERRORS)
def acknowledge_all_green(
    request: Request,
    p: ClinicianPrincipal,
    conn: Conn,
    cache: GreenCacheDep,
    topics: TopicsDep,
) -> GreenReviewOut:
    """Kvittér alle grønne: every green patient in your scope is marked seen (audited per
    patient), and each citizen's tablet is told "seen"."""
    n = service.acknowledge_all_green(conn, user=p.user, cache=cache, topics=topics, remote_addr=remote_addr(request))
    conn.commit()
    return GreenReviewOut(patients=n, reviewed_by=p.user.username)
