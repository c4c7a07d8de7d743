"""Issue 2's round trip: a vitals envelope published on the real broker, received by the ingest
consumer of the real app, stored in the measurements table; the same envelope twice is one row."""

from __future__ import annotations

import secrets
import threading
import warnings
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
import psycopg

with warnings.catch_warnings():
    # This starlette asks for its httpx fork; the stock httpx client works the same here.
    warnings.filterwarnings("ignore", message=".*httpx2.*")
    from fastapi.testclient import TestClient

from backend import registry
from backend.app import create_app
from backend.embedded import wait_for
from vitals import Device, Envelope, Measurement, MeasurementKind, RawCharacteristic, new_measurement_id
from vitals.wire import Receipt, ReceiptStatus, parse_receipt


def test_envelope_over_the_broker_into_measurements_once(settings: Any, topics: Any, broker: Any,
                                                         database_url: str) -> None:
    tag = secrets.token_hex(4)
    agent_id = f"roundtrip-{tag}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        patient = registry.create_patient(conn, external_ref=f"rt-{tag}", name="Karen Jensen", programme="copd",
                                          municipality="Aarhus")
        registry.enrol_agent(conn, agent_id=agent_id, patient_id=patient.id)
        registry.register_device(conn, agent_id=agent_id, address="5C:F8:21:0A:11:22", model="UA-651BLE")
    at = datetime.now(UTC) - timedelta(minutes=2)
    reading = Measurement(
        id=new_measurement_id(), kind=MeasurementKind.BLOOD_PRESSURE,
        values={"systolic": 142.0, "diastolic": 91.0, "mean_arterial": 108.0}, unit="mm[Hg]",
        measured_at=at, device_clock_trusted=True, received_at=at + timedelta(seconds=20),
        device=Device(address="5C:F8:21:0A:11:22", model="UA-651BLE", manufacturer="A&D Medical"),
        quality=("body_movement",), raw=RawCharacteristic(characteristic="2a35", hex="1e8e005b006c00"),
    )
    envelope = Envelope(agent_id=agent_id, sent_at=datetime.now(UTC), measurements=(reading,))

    receipts: list[Receipt] = []
    got = threading.Event()
    agent = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        receipts.append(parse_receipt(msg.payload))
        got.set()

    agent.on_message = on_message
    agent.connect(broker.host, broker.port)
    agent.loop_start()
    try:
        wait_for(agent.is_connected, what="agent connected")
        agent.subscribe(topics.receipts(agent_id), qos=1)
        with TestClient(create_app(settings)) as client:
            wait_for(lambda: client.get("/readyz").status_code == 200, what="/readyz")

            def rows() -> int:
                with psycopg.connect(database_url) as conn:
                    r = conn.execute("SELECT count(*) FROM measurements WHERE id = %s", (reading.id,)).fetchone()
                return int(r[0]) if r else 0

            agent.publish(topics.measurements(agent_id), envelope.to_json(), qos=1).wait_for_publish(10)
            wait_for(lambda: rows() == 1, what="the reading stored")
            wait_for(got.is_set, what="the stored receipt")
            got.clear()
            agent.publish(topics.measurements(agent_id), envelope.to_json(), qos=1).wait_for_publish(10)
            wait_for(got.is_set, what="the second receipt")  # it went through ingest again
            assert rows() == 1

            with psycopg.connect(database_url) as conn:
                row = conn.execute(
                    "SELECT patient_id, agent_id, kind, value, components, unit, measured_at, quality, flags, "
                    "raw_characteristic, raw FROM measurements WHERE id = %s", (reading.id,)).fetchone()
            assert row is not None
            assert row[:4] == (patient.id, agent_id, "blood_pressure", 142.0)
            assert row[4] == {"systolic": 142.0, "diastolic": 91.0, "mean_arterial": 108.0}
            assert row[5:] == ("mm[Hg]", at, ["body_movement"], [], "2a35", bytes.fromhex("1e8e005b006c00"))
            assert [r.status for r in receipts] == [ReceiptStatus.STORED, ReceiptStatus.STORED]
            assert all(r.ids == (reading.id,) for r in receipts)

            metrics = client.get("/metrics").text
            assert 'nearcare_ingest_readings_total{outcome="stored"}' in metrics
            assert 'nearcare_ingest_readings_total{outcome="duplicate"}' in metrics
            assert client.get("/readyz").json()["checks"]["ingest"] == "ok"
    finally:
        agent.disconnect()
        agent.loop_stop()
