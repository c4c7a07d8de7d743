"""The live consumer against the real broker and database."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from backend.readings import StoredReading
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
    service = start_ingest(settings)
    seen: list[StoredReading] = []
    service.runtime.readings_sinks.append(seen.extend)

    env = make_envelope(home.agent_id, 3)
    publisher.publish(topics.measurements(home.agent_id), env)
    wait(lambda: db_count("SELECT count(*) FROM measurements WHERE agent_id = %s", (home.agent_id,)) == 3)
    assert db_count("SELECT count(*) FROM measurements WHERE agent_id = %s AND patient_id = %s",
                    (home.agent_id, home.patient_id)) == 3
    wait(lambda: len(seen) == 3, what="sink")
    assert [r.patient_id for r in seen] == [home.patient_id] * 3
    assert [str(r.id) for r in seen] == [m["id"] for m in env["measurements"]]
    wait(lambda: got.is_set(), what="receipt")
    assert receipts[0].status == "stored"
    assert [str(i) for i in receipts[0].ids] == [m["id"] for m in env["measurements"]]

    # The same envelope again: one row each, nothing handed to the rules twice, receipt again.
    got.clear()
    publisher.publish(topics.measurements(home.agent_id), env)
    wait(lambda: got.is_set(), what="second receipt")
    assert db_count("SELECT count(*) FROM measurements WHERE agent_id = %s", (home.agent_id,)) == 3
    assert len(seen) == 3
    assert db_count("SELECT count(*) FROM agents WHERE id = %s AND last_seen_at IS NOT NULL", (home.agent_id,)) == 1
    body = json.loads(receipts[-1].to_json())
    assert body["status"] == "stored"
