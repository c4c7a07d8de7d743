"""Issue 12, "done when": schemathesis over every operation (login, refresh and revoke included),
authenticated as each role (citizen, nurse, specialist, admin): no server error.

The wrong passwords that the login examples send are removed from ``login_attempts`` afterwards,
so the per-address limit does not lock the rest of the session's tests out (the limit itself is
tested in tests/backend/web/test_login_security.py)."""

from __future__ import annotations

from typing import Any

import psycopg
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.backend.web._support import api_token

EXAMPLES_PER_OPERATION = 6
ROLES = ("citizen", "nurse", "specialist", "admin")


def test_no_server_error_on_any_operation_as_any_role(live: Any, world: Any, client: Any) -> None:
    users = {"citizen": world.citizen, "nurse": world.nurse, "specialist": world.specialist, "admin": world.admin}
    tokens = {role: api_token(client, users[role]) for role in ROLES}
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    operations = [r.ok() for r in schema.get_all_operations()]
    assert any(op.path == "/api/v1/auth/token" for op in operations)
    with psycopg.connect(live.app.state.settings.database_url, autocommit=True) as conn:
        before = conn.execute("SELECT coalesce(max(id), 0) FROM login_attempts").fetchone()
        try:
            exercised = 0
            for role in ROLES:
                headers = {"Authorization": f"Bearer {tokens[role]}"}
                for op in operations:
                    if op.path == "/api/v1/auth/revoke":
                        continue  # it would end the token the other examples use; tested on its own

                    @given(case=op.as_strategy())
                    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None,
                              suppress_health_check=list(HealthCheck), database=None)
                    def run(case: Any) -> None:
                        case.call_and_validate(headers=headers, checks=[not_a_server_error])  # noqa: B023

                    run()
                    exercised += 1
            assert exercised == len(ROLES) * (len(operations) - 1)
        finally:
            conn.execute("DELETE FROM login_attempts WHERE id > %s AND NOT ok", (before[0] if before else 0,))
            conn.execute("DELETE FROM login_throttle WHERE failures > 0")
