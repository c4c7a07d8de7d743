"""Agent A cannot get a reading stored as agent B.

At ingest: the topic's agent must equal the payload's, and the patient comes from the registry,
never from the payload. At the broker: a per-agent password file and ACL stop A from publishing
on B's topic at all, which is the only thing that stops A sending B's id on B's topic.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
from collections.abc import Callable
from typing import Any

import psycopg

from backend.settings import Settings


def _ids(env: dict[str, Any]) -> list[str]:
    return [m["id"] for m in env["measurements"]]


def _nowhere(database_url: str, ids: list[str]) -> bool:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM measurements WHERE id = ANY(%(ids)s::uuid[]))"
            " + (SELECT count(*) FROM rejected_readings WHERE id = ANY(%(ids)s::uuid[]))",
            {"ids": ids},
        ).fetchone()
    return row is not None and row[0] == 0


def test_topic_and_payload_must_name_the_same_agent(
    settings: Any, topics: Any, make_home: Callable[..., Any], make_envelope: Callable[..., Any],
    start_ingest: Callable[..., Any], publisher: Any, db_count: Callable[..., int], wait: Callable[..., Any],
    database_url: str,
) -> None:
    a, b = make_home(prefix="a"), make_home(prefix="b")
    start_ingest(settings)
    b_id_on_a_topic = make_envelope(b.agent_id, 1)
    a_id_on_b_topic = make_envelope(a.agent_id, 1)
    publisher.publish(topics.measurements(a.agent_id), b_id_on_a_topic)
    publisher.publish(topics.measurements(b.agent_id), a_id_on_b_topic)
    marker = make_envelope(b.agent_id, 1)
    publisher.publish(topics.measurements(b.agent_id), marker)
    wait(lambda: db_count("SELECT count(*) FROM measurements WHERE id = %s::uuid", (_ids(marker)[0],)) == 1)
    wait(lambda: db_count("SELECT count(*) FROM dead_letters WHERE agent_id = ANY(%s) AND field = 'agent_id'",
                          ([a.agent_id, b.agent_id],)) == 2)
    assert _nowhere(database_url, _ids(b_id_on_a_topic) + _ids(a_id_on_b_topic))
    # Only B's own reading reached B's patient, attributed by the registry.
    assert db_count("SELECT count(*) FROM measurements WHERE patient_id = %s", (b.patient_id,)) == 1
    assert db_count("SELECT count(*) FROM measurements WHERE patient_id = %s", (a.patient_id,)) == 0


def test_broker_acl_stops_a_publishing_on_bs_topic_even_with_bs_id(
    own_broker: Callable[..., Any], make_publisher: Callable[..., Any], database_url: str, topics: Any,
    make_home: Callable[..., Any], make_envelope: Callable[..., Any], start_ingest: Callable[..., Any],
    db_count: Callable[..., int], wait: Callable[..., Any], tmp_path: Any,
) -> None:
    a, b = make_home(prefix="acl-a"), make_home(prefix="acl-b")
    pw = {name: secrets.token_urlsafe(12) for name in ("ingest", a.agent_id, b.agent_id)}
    passwd = tmp_path / "passwd"
    binary = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    for i, (user, password) in enumerate(pw.items()):
        subprocess.run([binary, "-b", *(["-c"] if i == 0 else []), str(passwd), user, password], check=True)
    root = topics.root
    acl = (
        f"user ingest\ntopic read {root}/agents/+/measurements\ntopic read {root}/agents/+/status\n"
        f"topic write {root}/agents/+/receipts\ntopic write {root}/agents/+/config\n"
        f"topic read $share/#\n\n"
        # The deploy/ pattern: each agent only under its own id (%u is the MQTT username).
        f"pattern write {root}/agents/%u/measurements\npattern readwrite {root}/agents/%u/status\n"
        f"pattern read {root}/agents/%u/receipts\npattern read {root}/agents/%u/config\n"
    )
    broker = own_broker(
        "allow_anonymous false\npassword_file {dir}/passwd\nacl_file {dir}/acl\n",
        files={"acl": acl, "passwd": passwd.read_text()},
    )
    host_port = broker.url.removeprefix("mqtt://")
    settings = Settings(database_url=database_url, mqtt_url=f"mqtt://ingest:{pw['ingest']}@{host_port}",
                        topic_root=root, ingest_group=f"g{secrets.token_hex(3)}", demo=True)
    start_ingest(settings)
    agent_a = make_publisher(broker.url, username=a.agent_id, password=pw[a.agent_id])
    agent_b = make_publisher(broker.url, username=b.agent_id, password=pw[b.agent_id])

    def attempt_as_a(topic: str, payload: dict[str, Any]) -> None:
        # Each forgery from a fresh connection: Mosquitto may drop the connection of a client
        # whose QoS 1 publish it refused, and then the PUBACK wait ends in "not connected".
        # The message was sent either way; what matters is that nothing of it gets stored.
        forger = make_publisher(broker.url, username=a.agent_id, password=pw[a.agent_id])
        with contextlib.suppress(RuntimeError):
            forger.publish(topic, payload)

    forged = make_envelope(b.agent_id, 1)  # A, on B's topic, with B's id in the payload
    attempt_as_a(topics.measurements(b.agent_id), forged)
    mixed = make_envelope(a.agent_id, 1)  # A, on B's topic, with its own id
    attempt_as_a(topics.measurements(b.agent_id), mixed)
    own_a, own_b = make_envelope(a.agent_id, 1), make_envelope(b.agent_id, 1)
    agent_a.publish(topics.measurements(a.agent_id), own_a)
    agent_b.publish(topics.measurements(b.agent_id), own_b)

    wait(lambda: db_count("SELECT count(*) FROM measurements WHERE id = ANY(%s::uuid[])",
                          (_ids(own_a) + _ids(own_b),)) == 2, what="both agents' own readings")
    assert db_count("SELECT patient_id FROM measurements WHERE id = %s::uuid", (_ids(own_a)[0],)) == a.patient_id
    assert db_count("SELECT patient_id FROM measurements WHERE id = %s::uuid", (_ids(own_b)[0],)) == b.patient_id
    assert _nowhere(database_url, _ids(forged) + _ids(mixed))
    # The broker dropped them: they never reached ingest, not even as dead letters.
    assert db_count("SELECT count(*) FROM dead_letters WHERE agent_id = ANY(%s)", ([a.agent_id, b.agent_id],)) == 0
    assert db_count("SELECT count(*) FROM measurements WHERE patient_id = %s", (b.patient_id,)) == 1
