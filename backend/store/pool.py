"""The connection pool, opened by the app's lifespan (never at import)."""

from __future__ import annotations

from psycopg_pool import ConnectionPool


def open_pool(database_url: str, *, min_size: int = 2, max_size: int = 10, name: str = "nearcare") -> ConnectionPool:
    pool = ConnectionPool(
        database_url, min_size=min_size, max_size=max_size, name=name, open=False,
        kwargs={"autocommit": False},
    )
    pool.open(wait=True, timeout=30)
    return pool
