"""Property-based: schemathesis over the OpenAPI schema of the live app finds no server error.

Each operation runs a few generated examples with a nurse's token (an admin's for /admin
paths). The login endpoint is left out: generated wrong passwords would trip the per-address
rate limit for the rest of the session; it has its own tests."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.backend.web._support import api_token

EXAMPLES_PER_OPERATION = 12


def test_no_server_error_on_any_operation(live: Any, world: Any, client: Any) -> None:
    tokens = {"nurse": api_token(client, world.nurse), "admin": api_token(client, world.admin)}
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    operations = [r.ok() for r in schema.get_all_operations()]
    operations = [op for op in operations if op.path != "/api/v1/auth/token"]
    assert len(operations) >= 20
    exercised: list[str] = []
    for op in operations:
        headers = {"Authorization": f"Bearer {tokens['admin'] if '/admin' in op.path else tokens['nurse']}"}

        @given(case=op.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def run(case: Any) -> None:
            case.call_and_validate(headers=headers, checks=[not_a_server_error])  # noqa: B023

        run()
        exercised.append(f"{op.method.upper()} {op.path}")
    assert len(exercised) == len(operations)
