"""Demo teams, patients, agents and users, and the simulated citizens.

Later parts (alerting, web accounts, the simulator) extend ``seed`` and ``simulation``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from backend.settings import Settings


def seed(settings: Settings) -> list[str]:
    """Create the demo data; return the login lines to print."""
    return []


@contextlib.contextmanager
def simulation(settings: Settings, *, citizens: int, speed: float) -> Iterator[None]:
    yield
