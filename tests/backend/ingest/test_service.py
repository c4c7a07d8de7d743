"""The live consumer against the real broker and database."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from vitals.wire import parse_receipt


def test_readings_are_stored_attributed_acknowledged_and_receipted(
    settings: Any, topics: Any, make_home: Callable[..., Any], make_envelope: Callable[..., Any],
    start_ingest: Callable[..., Any], publisher: Any, db_count: Callable[..., int], wait: Callable[..., Any],
) -> None:
    home = make_home()
    receipts: list[Any] = []
    got = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        receipts.append(parse_receipt(msg.payload))
        got.set()

    publisher.client.on_message = on_message
    publisher.client.subscribe(topics.receipts(home.agent_id), qos=1)
    start_ingest(settings)

    env = make_envelope(home.agent_id, 3)
    publisher.publish(topics.measurements(home.agent_id), env)
    wait(lambda: db_count("SELECT count(*) FROM measurements WHERE agent_id = %s", (home.agent_id,)) == 3)
    assert db_count("SELECT count(*) FROM measurements WHERE agent_id = %s AND patient_id = %s"
                    " AND components = '{\"spo2\": 95.0}'::jsonb AND value = 95", (home.agent_id, home.patient_id)) == 3
    # Handed to the rules in the same transaction: one inbox row per new reading.
    inbox = [m["id"] for m in env["measurements"]]
    assert db_count("SELECT count(*) FROM rules_inbox WHERE measurement_id = ANY(%s::uuid[]) AND patient_id = %s",
                    (inbox, home.patient_id)) == 3
    wait(lambda: got.is_set(), what="receipt")
    assert receipts[0].status == "stored"
    assert [str(i) for i in receipts[0].ids] == [m["id"] for m in env["measurements"]]

    # The same envelope again: one row each, nothing handed to the rules twice, receipt again.
    got.clear()
    publisher.publish(topics.measurements(home.agent_id), env)
    wait(lambda: got.is_set(), what="second receipt")
    assert db_count("SELECT count(*) FROM measurements WHERE agent_id = %s", (home.agent_id,)) == 3
    assert db_count("SELECT count(*) FROM rules_inbox WHERE measurement_id = ANY(%s::uuid[])", (inbox,)) == 3
    assert db_count("SELECT count(*) FROM agents WHERE id = %s AND last_seen_at IS NOT NULL", (home.agent_id,)) == 1
    body = json.loads(receipts[-1].to_json())
    assert body["status"] == "stored"


def test_held_dead_lettered_and_status_are_all_kept(
    settings: Any, topics: Any, make_home: Callable[..., Any], make_envelope: Callable[..., Any],
    start_ingest: Callable[..., Any], publisher: Any, db_count: Callable[..., int], wait: Callable[..., Any],
    database_url: str,
) -> None:
    import psycopg

    home = make_home()
    start_ingest(settings)

    implausible = make_envelope(home.agent_id, 1, value=140.0)
    unknown_device = make_envelope(home.agent_id, 1, address="AA:AA:AA:AA:AA:AA")
    publisher.publish(topics.measurements(home.agent_id), implausible)
    publisher.publish(topics.measurements(home.agent_id), unknown_device)
    publisher.publish(topics.measurements(home.agent_id), b"not json at all")
    # Statuses are dated near their receipt (an "online" one more than a day old is not applied).
    from datetime import UTC, datetime, timedelta

    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    status = {"schema": "1.0", "agent_id": home.agent_id, "state": "online", "at": t0.isoformat(),
              "version": "0.3.1", "spool_depth": 4}
    publisher.publish(topics.status(home.agent_id), status)

    wait(lambda: db_count("SELECT count(*) FROM rejected_readings WHERE agent_id = %s", (home.agent_id,)) == 2)
    wait(lambda: db_count("SELECT count(*) FROM dead_letters WHERE agent_id = %s", (home.agent_id,)) == 1)
    wait(lambda: db_count("SELECT count(*) FROM agents WHERE id = %s AND online AND spool_depth = 4", (home.agent_id,)))
    with psycopg.connect(database_url) as conn:
        reasons = dict(conn.execute(
            "SELECT id::text, reason FROM rejected_readings WHERE agent_id = %s", (home.agent_id,)).fetchall())
        dl = conn.execute("SELECT payload, reason, field, topic FROM dead_letters WHERE agent_id = %s",
                          (home.agent_id,)).fetchone()
        agent = conn.execute("SELECT version, status_at FROM agents WHERE id = %s", (home.agent_id,)).fetchone()
    assert db_count("SELECT count(*) FROM rejected_readings WHERE agent_id = %s AND components->>'spo2' = '140.0'"
                    " AND envelope->'device'->>'address' = %s", (home.agent_id, home.address)) == 1
    assert reasons[implausible["measurements"][0]["id"]] == "implausible_value: spo2 140 outside 50–100 %"
    assert reasons[unknown_device["measurements"][0]["id"]].startswith("unknown_device:")
    assert dl is not None and bytes(dl[0]) == b"not json at all" and dl[2] == "payload" and "not JSON" in dl[1]
    assert dl[3] == topics.measurements(home.agent_id)
    assert agent is not None and agent[0] == "0.3.1"
    held_ids = [implausible["measurements"][0]["id"], unknown_device["measurements"][0]["id"]]
    assert db_count("SELECT count(*) FROM rules_inbox WHERE measurement_id = ANY(%s::uuid[])",
                    (held_ids,)) == 0  # held readings never reach the rules
    assert db_count("SELECT count(*) FROM measurements WHERE agent_id = %s", (home.agent_id,)) == 0

    # An older status (out of order) does not overwrite a newer one; the LWT "offline" does.
    publisher.publish(topics.status(home.agent_id),
                      {**status, "at": (t0 - timedelta(hours=1)).isoformat(), "spool_depth": 9})
    publisher.publish(topics.status(home.agent_id), {"schema": "1.0", "agent_id": home.agent_id, "state": "offline",
                                                     "at": (t0 + timedelta(minutes=5)).isoformat()})
    wait(lambda: db_count("SELECT count(*) FROM agents WHERE id = %s AND NOT online", (home.agent_id,)))
    assert db_count("SELECT spool_depth FROM agents WHERE id = %s", (home.agent_id,)) == 4
    # The out-of-order one is on record with the reason it was not applied (issue 12).
    assert db_count("SELECT count(*) FROM dead_letters WHERE agent_id = %s AND field = 'at'"
                    " AND reason LIKE 'online status time %% is older than the newest applied status %%'",
                    (home.agent_id,)) == 1


def test_new_enrolment_and_rebinding_take_effect_at_once(
    settings: Any, topics: Any, make_home: Callable[..., Any], make_envelope: Callable[..., Any],
    start_ingest: Callable[..., Any], publisher: Any, db_count: Callable[..., int], wait: Callable[..., Any],
    database_url: str,
) -> None:
    import secrets

    import psycopg

    from backend import registry

    start_ingest(settings)
    tag = secrets.token_hex(4)
    early = make_envelope(f"late-{tag}", 1)
    publisher.publish(topics.measurements(f"late-{tag}"), early)
    wait(lambda: db_count("SELECT count(*) FROM dead_letters WHERE agent_id = %s", (f"late-{tag}",)) == 1)

    with psycopg.connect(database_url, autocommit=True) as conn:
        p1 = registry.create_patient(conn, external_ref=f"late-{tag}", name="A", programme="copd",
                                     municipality="Aarhus")
        p2 = registry.create_patient(conn, external_ref=f"next-{tag}", name="B", programme="copd",
                                     municipality="Aarhus")
        registry.enrol_agent(conn, agent_id=f"late-{tag}", patient_id=p1.id)
        registry.register_device(conn, agent_id=f"late-{tag}", address="5C:F8:21:0A:11:22")
    first = make_envelope(f"late-{tag}", 1)
    publisher.publish(topics.measurements(f"late-{tag}"), first)
    wait(lambda: db_count("SELECT count(*) FROM measurements WHERE patient_id = %s", (p1.id,)) == 1, timeout=3)

    with psycopg.connect(database_url, autocommit=True) as conn:
        registry.bind_agent(conn, agent_id=f"late-{tag}", patient_id=p2.id)
    publisher.publish(topics.measurements(f"late-{tag}"), make_envelope(f"late-{tag}", 1))
    wait(lambda: db_count("SELECT count(*) FROM measurements WHERE patient_id = %s", (p2.id,)) == 1, timeout=3)
    assert db_count("SELECT count(*) FROM measurements WHERE patient_id = %s", (p1.id,)) == 1


def test_database_connection_lost_mid_run_loses_nothing(
    settings: Any, topics: Any, make_home: Callable[..., Any], make_envelope: Callable[..., Any],
    start_ingest: Callable[..., Any], publisher: Any, db_count: Callable[..., int], wait: Callable[..., Any],
    database_url: str,
) -> None:
    import psycopg

    home = make_home()
    service = start_ingest(settings)
    ids: list[str] = []
    assert service._conn is not None
    writer_pid = service._conn.info.backend_pid
    for i in range(40):
        env = make_envelope(home.agent_id, 5)
        ids += [m["id"] for m in env["measurements"]]
        publisher.publish(topics.measurements(home.agent_id), env, wait=False)
        if i == 20:
            # Cut the writer's connection under it: the batch must be retried, not dropped.
            with psycopg.connect(database_url, autocommit=True) as conn:
                row = conn.execute("SELECT pg_terminate_backend(%s)", (writer_pid,)).fetchone()
                assert row is not None and row[0] is True
    wait(lambda: db_count("SELECT count(*) FROM measurements WHERE agent_id = %s", (home.agent_id,)) == 200)
    assert db_count("SELECT count(DISTINCT id) FROM measurements WHERE id = ANY(%s::uuid[])", (ids,)) == 200
    assert service.ready() == (True, "ok")
    assert service._conn is not None and service._conn.info.backend_pid != writer_pid


def test_broker_outage_shows_in_readiness_and_ingest_comes_back(
    own_broker: Callable[..., Any], make_publisher: Callable[..., Any], database_url: str, topics: Any,
    make_home: Callable[..., Any], make_envelope: Callable[..., Any], start_ingest: Callable[..., Any],
    db_count: Callable[..., int], wait: Callable[..., Any],
) -> None:
    import secrets

    from backend.settings import Settings

    home = make_home()
    broker = own_broker()
    settings = Settings(database_url=database_url, mqtt_url=broker.url, topic_root=topics.root,
                        ingest_group=f"g{secrets.token_hex(3)}", demo=True)
    service = start_ingest(settings)
    broker.stop()
    wait(lambda: service.ready() == (False, "broker unreachable"), what="not ready without the broker")
    broker.start()
    wait(lambda: service.ready() == (True, "ok"), timeout=40, what="ready again")
    make_publisher(broker.url).publish(topics.measurements(home.agent_id), make_envelope(home.agent_id, 2))
    wait(lambda: db_count("SELECT count(*) FROM measurements WHERE agent_id = %s", (home.agent_id,)) == 2)
