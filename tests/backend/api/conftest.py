from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="module")
def live_state(tmp_path_factory: Any) -> dict[str, object]:
    """The API tests enrol agents: a password-file credential store instead of the broker's."""
    from backend.admin.credentials import PasswordFileCredentials

    return {"credential_store": PasswordFileCredentials(tmp_path_factory.mktemp("mosq") / "passwd")}
