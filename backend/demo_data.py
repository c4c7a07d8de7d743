"""Demo teams, patients, agents and users, and the simulated citizens.

Later parts (alerting, web accounts, the simulator) extend ``seed`` and ``simulation``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from backend.settings import Settings


def seed(settings: Settings) -> list[str]:
    """Create the demo data; return the login lines to print."""
    lines: list[str] = []
    lines += _seed_accounts(settings)
    return lines


def _seed_accounts(settings: Settings) -> list[str]:
    import psycopg

    from backend.accounts.demo import seed_accounts

    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        return seed_accounts(conn, demo=settings.demo)


@contextlib.contextmanager
def simulation(settings: Settings, *, citizens: int, speed: float) -> Iterator[None]:
    from edge_agent.simulate import running_simulation

    with running_simulation(broker_url=settings.mqtt_url, topics=settings.topics, citizens=citizens, speed=speed):
        yield
