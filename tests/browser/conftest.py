from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from tests.backend.web._support import LiveServer, World, build_world


@pytest.fixture(scope="module")
def module_settings(database_url: str, mqtt_url: str, topics: Any) -> Any:
    from backend.settings import Settings

    return Settings(
        database_url=database_url,
        mqtt_url=mqtt_url,
        topic_root=topics.root,
        ingest_group=f"ingest-{secrets.token_hex(3)}",
        demo=True,
        pool_min_size=1,
        pool_max_size=4,
    )


@pytest.fixture(scope="module")
def world(database_url: str) -> World:
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        return build_world(conn)


@pytest.fixture(scope="module")
def live(module_settings: Any, world: World) -> Iterator[LiveServer]:
    with LiveServer(module_settings) as server:
        yield server


@pytest.fixture
def client(live: LiveServer) -> Iterator[Any]:
    import httpx

    with httpx.Client(base_url=live.url, follow_redirects=False, timeout=30) as c:
        yield c
