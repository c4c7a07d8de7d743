"""Fixtures the web tests share (the world and the live app come from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest


@pytest.fixture
def forget_failed_logins(live: Any) -> Iterator[None]:
    """The per-address limit counts every failed login from 127.0.0.1 in the session's database:
    the failures a test makes on purpose are removed afterwards, so later tests can log in."""
    with psycopg.connect(live.app.state.settings.database_url, autocommit=True) as conn:
        row = conn.execute("SELECT coalesce(max(id), 0) FROM login_attempts").fetchone()
        yield
        conn.execute("DELETE FROM login_attempts WHERE id > %s AND NOT ok", (row[0] if row else 0,))
