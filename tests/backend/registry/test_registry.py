"""Registry service functions against the real database."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import psycopg
import pytest

from backend import registry
from backend.registry import RegistryConflict, RegistryNotFound


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database_url, autocommit=True) as c:
        yield c


def _tag() -> str:
    return secrets.token_hex(4)


def test_team_patient_agent_device_and_user_slots(conn: psycopg.Connection) -> None:
    t = _tag()
    team = registry.create_team(conn, key=f"aarhus-{t}", name="Aarhus sygepleje", sector="municipal",
                                municipality="Aarhus")
    assert registry.get_team_by_key(conn, key=f"aarhus-{t}") == team
    p1 = registry.create_patient(conn, external_ref=f"p1-{t}", name="Karen", programme="copd", municipality="Aarhus")
    p2 = registry.create_patient(conn, external_ref=f"p2-{t}", name="Jens", programme="heart_failure",
                                 municipality="Aarhus", department="AUH Hjerte")
    assert registry.get_patient(conn, patient_id=p1.id) == p1
    assert registry.get_patient_by_ref(conn, external_ref=f"p2-{t}") == p2

    agent = registry.enrol_agent(conn, agent_id=f"tablet-{t}")
    assert agent.patient_id is None and agent.active and agent.mqtt_username == f"tablet-{t}"
    agent = registry.bind_agent(conn, agent_id=agent.id, patient_id=p1.id)
    assert agent.patient_id == p1.id
    assert registry.list_agents(conn, patient_id=p1.id) == [agent]

    dev = registry.register_device(conn, agent_id=agent.id, address="5c-f8-21-0b-33-44", model="UC-352BLE")
    assert dev.address == "5C:F8:21:0B:33:44"
    again = registry.register_device(conn, agent_id=agent.id, address="5C:F8:21:0B:33:44", firmware="2.0")
    assert again.id == dev.id and again.model == "UC-352BLE" and again.firmware == "2.0"
    assert registry.list_devices(conn, agent_id=agent.id) == [again]

    registry.map_device_user(conn, device_id=dev.id, user_index=1, patient_id=p1.id)
    registry.map_device_user(conn, device_id=dev.id, user_index=2, patient_id=p2.id)
    assert registry.list_device_users(conn, device_id=dev.id) == {1: p1.id, 2: p2.id}
    registry.unmap_device_user(conn, device_id=dev.id, user_index=2)
    assert registry.list_device_users(conn, device_id=dev.id) == {1: p1.id}

    snap = registry.load_snapshot(conn)
    assert snap.agents[agent.id].patient_id == p1.id
    assert snap.device(agent.id, "5c:f8:21:0b:33:44") is not None
    assert snap.device_users[(dev.id, 1)] == p1.id
    assert dev.id in snap.multi_user_devices

    registry.deactivate_agent(conn, agent_id=agent.id)
    assert registry.get_agent(conn, agent_id=agent.id).active is False


def test_every_attribution_change_moves_the_registry_version(conn: psycopg.Connection) -> None:
    t = _tag()
    p = registry.create_patient(conn, external_ref=f"v-{t}", name="X", programme="copd", municipality="Aarhus")
    v0 = registry.registry_version(conn)
    a = registry.enrol_agent(conn, agent_id=f"v-{t}")
    v1 = registry.registry_version(conn)
    assert v1 > v0
    registry.bind_agent(conn, agent_id=a.id, patient_id=p.id)
    v2 = registry.registry_version(conn)
    assert v2 > v1
    d = registry.register_device(conn, agent_id=a.id, address="AA:BB:CC:00:11:22")
    v3 = registry.registry_version(conn)
    assert v3 > v2
    registry.map_device_user(conn, device_id=d.id, user_index=3, patient_id=p.id)
    v4 = registry.registry_version(conn)
    assert v4 > v3
    # Status and last-seen updates do not: they come with every message.
    conn.execute("UPDATE agents SET online = true, last_seen_at = now() WHERE id = %s", (a.id,))
    assert registry.registry_version(conn) == v4
    assert registry.load_snapshot(conn).version == v4


def test_refusals_are_clear(conn: psycopg.Connection) -> None:
    t = _tag()
    with pytest.raises(RegistryConflict):
        registry.create_patient(conn, external_ref=f"x-{t}", name="X", programme="asthma", municipality="Aarhus")
    p = registry.create_patient(conn, external_ref=f"x-{t}", name="X", programme="copd", municipality="Aarhus")
    with pytest.raises(RegistryConflict):
        registry.create_patient(conn, external_ref=f"x-{t}", name="Y", programme="copd", municipality="Aarhus")
    with pytest.raises(RegistryConflict):
        registry.enrol_agent(conn, agent_id="no spaces allowed")
    with pytest.raises(RegistryNotFound):
        registry.enrol_agent(conn, agent_id=f"x-{t}", patient_id=-1)
    registry.enrol_agent(conn, agent_id=f"x-{t}", patient_id=p.id)
    with pytest.raises(RegistryConflict):
        registry.enrol_agent(conn, agent_id=f"x-{t}")
    with pytest.raises(RegistryNotFound):
        registry.bind_agent(conn, agent_id=f"missing-{t}", patient_id=p.id)
    with pytest.raises(RegistryNotFound):
        registry.register_device(conn, agent_id=f"missing-{t}", address="AA:BB")
    with pytest.raises(RegistryNotFound):
        registry.get_agent(conn, agent_id=f"missing-{t}")
    with pytest.raises(RegistryConflict):
        registry.map_device_user(conn, device_id=1, user_index=256, patient_id=p.id)
    with pytest.raises(RegistryConflict):
        registry.create_team(conn, key=f"t-{t}", name="T", sector="private")


def test_functions_compose_inside_a_callers_transaction(database_url: str) -> None:
    t = _tag()
    with psycopg.connect(database_url) as conn:  # not autocommit: the caller commits
        p = registry.create_patient(conn, external_ref=f"tx-{t}", name="X", programme="hypertension",
                                    municipality="Aarhus")
        with pytest.raises(RegistryConflict):  # a failed step rolls back to its savepoint only
            registry.create_patient(conn, external_ref=f"tx-{t}", name="X", programme="copd", municipality="Aarhus")
        registry.enrol_agent(conn, agent_id=f"tx-{t}", patient_id=p.id)
        snap = registry.load_snapshot(conn)
        assert snap.agents[f"tx-{t}"].patient_id == p.id
        conn.commit()
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert registry.get_agent(conn, agent_id=f"tx-{t}").patient_id == p.id
