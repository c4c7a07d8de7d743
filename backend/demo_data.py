"""Demo teams, patients, agents and users, and the simulated citizens.

Later parts (alerting, web accounts, the simulator) extend ``seed`` and ``simulation``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from backend.settings import Settings


def seed(settings: Settings, *, citizens: int = 12) -> list[str]:
    """Create the demo data; return the login lines to print."""
    lines: list[str] = []
    _seed_teams(settings)
    _seed_cohort(settings, citizens=citizens)
    lines += _seed_accounts(settings)
    _seed_alerting(settings)
    return lines


def _seed_alerting(settings: Settings) -> None:
    from datetime import UTC, datetime, timedelta

    import psycopg

    from backend.alerting.config import load_config
    from backend.alerting.demo import seed_alerting

    # The plans start where the replayed days start (issue 13: planned from the seed on, the
    # adherence-gap citizen's missed slots lay before the plan existed and no blue alarm came).
    # 36 h is the missed-measurement check's look-back.
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        seed_alerting(conn, config=load_config(settings.alert_rules_dir), topics=settings.topics,
                      now=datetime.now(UTC) - timedelta(hours=36))


def _seed_teams(settings: Settings) -> None:
    """The region's teams (backend/registry/demo.py), before anything that refers to them."""
    import psycopg

    from backend.registry.demo import seed_teams

    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        seed_teams(conn)


def _seed_cohort(settings: Settings, *, citizens: int) -> None:
    """The simulated citizens as patients, each with an enrolled agent and registered devices
    (the same deterministic cohort the simulation publishes for)."""
    import psycopg

    from backend.registry import service as registry
    from backend.registry.demo import DEMO_DEPARTMENTS
    from backend.registry.errors import RegistryConflict
    from edge_agent.simulate import demo_cohort

    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        for profile in demo_cohort(citizens):
            try:
                patient = registry.create_patient(
                    conn,
                    external_ref=profile.agent_id.replace("agent", "borger"),
                    name=profile.name,
                    programme=profile.programme,
                    municipality=profile.municipality,
                    department=DEMO_DEPARTMENTS[profile.programme],
                )
            except RegistryConflict:
                continue  # seeded by an earlier demo run on the same database
            registry.enrol_agent(conn, agent_id=profile.agent_id, patient_id=patient.id)
            for device in profile.devices:
                registered = registry.register_device(
                    conn, agent_id=profile.agent_id, address=device.address, model=device.model,
                    manufacturer=device.manufacturer,
                )
                if device.user_index is not None:
                    registry.map_device_user(
                        conn, device_id=registered.id, user_index=device.user_index, patient_id=patient.id
                    )


def _seed_accounts(settings: Settings) -> list[str]:
    import psycopg

    from backend.accounts.demo import seed_accounts

    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        return seed_accounts(conn, demo=settings.demo)


@contextlib.contextmanager
def simulation(
    settings: Settings, *, citizens: int, speed: float, screen_port: int | None = None
) -> Iterator[None]:
    from edge_agent.simulate import running_simulation

    with running_simulation(
        broker_url=settings.mqtt_url, topics=settings.topics, citizens=citizens, speed=speed,
        screen_port=screen_port, screen_agent="demo-agent-001",
    ):
        yield
