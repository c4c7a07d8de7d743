"""Kvittering of green readings against the real PostgreSQL and Mosquitto: which patients are
green, what "kvittér alle grønne" stores and audits, and the "seen" receipts each tablet gets."""

from __future__ import annotations

import queue
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from backend.review.service import RECEIPT_IDS, GreenCache, acknowledge_all_green, green_rows
from tests.backend.alerting._clinic import Clinic
from vitals.broker import parse_broker_url
from vitals.wire import Receipt, ReceiptStatus, TopicKind, Topics


class Broker:
    """One MQTT v5 connection: publishes as the backend does, and collects what arrives on the
    subscribed topics."""

    def __init__(self, url: str) -> None:
        b = parse_broker_url(url)
        self.received: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"review-test-{secrets.token_hex(3)}", protocol=mqtt.MQTTv5
        )
        if b.username:
            self.client.username_pw_set(b.username, b.password)
        self.client.on_message = lambda _c, _u, msg: self.received.put((msg.topic, msg.payload))
        self.subacks: queue.Queue[int] = queue.Queue()
        self.client.on_subscribe = lambda _c, _u, mid, _rc, _p: self.subacks.put(mid)
        self.client.connect(b.host, b.port, keepalive=30)
        self.client.loop_start()
        deadline = time.monotonic() + 30
        while not self.client.is_connected():
            assert time.monotonic() < deadline, f"no connection to {url}"
            time.sleep(0.02)

    def subscribe(self, topic: str) -> None:
        done = self.client.subscribe(topic, qos=1)
        assert done[0] == mqtt.MQTT_ERR_SUCCESS
        assert self.subacks.get(timeout=30) == done[1], "no SUBACK for the receipts topic"

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(10)

    def receipts(self, *, until_ids: int, timeout: float = 30) -> list[Receipt]:
        """Receipts until they name ``until_ids`` reading ids in all (or the timeout passes)."""
        out: list[Receipt] = []
        deadline = time.monotonic() + timeout
        while sum(len(r.ids) for r in out) < until_ids and time.monotonic() < deadline:
            try:
                _topic, payload = self.received.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            out.append(Receipt.model_validate_json(payload))
        return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def broker_client(mqtt_url: str) -> Iterator[Broker]:
    b = Broker(mqtt_url)
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def relay(mqtt_url: str, database_url: str) -> Iterator[Any]:
    """The outbox relay a backend process runs: sends what the committed reviews queued."""
    from backend.outbox import OutboxRelay
    from backend.publisher import MqttPublisher
    from vitals.broker import parse_broker_url

    publisher = MqttPublisher(broker=parse_broker_url(mqtt_url), role="test-review")
    publisher.start()
    assert publisher.wait_connected(30)
    try:
        yield OutboxRelay(database_url=database_url, publisher=publisher)
    finally:
        publisher.stop()


def _fresh_topics() -> Topics:
    return Topics(f"nearcare-review-{secrets.token_hex(4)}/v1")


def test_green_is_new_readings_without_an_open_alert_in_scope(db: Any) -> None:
    c = Clinic(db)
    green, alerting, acked, old = (c.patient() for _ in range(4))
    elsewhere = c.patient(municipality=f"Andenkommune-{c.tag}")
    for pid in (green, alerting, acked, elsewhere):
        c.reading(pid)
    c.reading(old, at=datetime.now(UTC) - timedelta(days=4))  # older than the green window
    c.alert(alerting, severity="yellow", team_key=c.nurse_team[1])
    c.alert(acked, severity="yellow", team_key=c.nurse_team[1], state="acknowledged")
    rows = green_rows(db, user=c.nurse())
    # An acknowledged alert is no longer open: its patient's new readings are green here (the
    # worklist lists the patient once, under the alert).
    assert {g.patient_id for g in rows} == {green, acked}
    assert all(g.readings == 1 for g in rows)
    assert [g.patient_id for g in green_rows(db, user=c.specialist())] == []


def test_kvitter_all_green_stores_audits_and_tells_each_tablet(db: Any, broker_client: Broker, relay: Any) -> None:
    c = Clinic(db)
    topics = _fresh_topics()
    broker_client.subscribe(topics.wildcard(TopicKind.RECEIPTS))
    few, many, alerting = c.patient(), c.patient(), c.patient()
    few_ids = {c.reading(few, at=datetime.now(UTC) - timedelta(hours=h)) for h in (1, 2, 3)}
    # More readings than one receipt carries: two receipts.
    db.execute(
        """INSERT INTO measurements (id, measured_at, patient_id, agent_id, kind, value, components, unit,
                                     device_clock_trusted, agent_received_at)
           SELECT gen_random_uuid(), now() - g * interval '1 minute', %s, %s, 'pulse', 70, '{"pulse": 70}',
                  '/min', true, now() FROM generate_series(1, %s) g""",
        (many, c.agent(many), RECEIPT_IDS + 1),
    )
    c.reading(alerting)
    c.alert(alerting, severity="red", team_key=c.nurse_team[1])
    nurse = c.nurse()
    cache = GreenCache(ttl_s=3600)
    assert {g.patient_id for g in cache.rows(db, user=nurse)} == {few, many}

    n = acknowledge_all_green(db, user=nurse, cache=cache, topics=topics, remote_addr="::1")
    assert n == 2
    assert cache.rows(db, user=nurse) == []  # the cache was dropped, not served stale
    reviews = dict(
        db.execute(
            "SELECT patient_id, seen_by FROM reading_reviews WHERE patient_id = ANY(%s)", ([few, many, alerting],)
        ).fetchall()
    )
    assert reviews == {few: nurse.username, many: nurse.username}
    log = dict(
        db.execute(
            "SELECT patient_id, readings FROM reading_review_log WHERE patient_id = ANY(%s)", ([few, many],)
        ).fetchall()
    )
    assert log == {few: 3, many: RECEIPT_IDS + 1}
    audited = db.execute(
        "SELECT patient_id, detail, remote_addr FROM audit_log WHERE action = 'kvittering (green)'"
        " AND patient_id = ANY(%s) ORDER BY patient_id",
        ([few, many],),
    ).fetchall()
    assert [(r[0], r[1], r[2]) for r in audited] == sorted(
        [(few, "3 readings", "::1"), (many, f"{RECEIPT_IDS + 1} readings", "::1")]
    )

    # The receipts were queued with the review; a relay sends them (this one, or another process
    # relaying from the same session database first: either way they reach the broker).
    relay.relay(db)
    receipts = broker_client.receipts(until_ids=3 + RECEIPT_IDS + 1)
    by_agent: dict[str, list[Receipt]] = {}
    for r in receipts:
        by_agent.setdefault(r.agent_id, []).append(r)
    assert set(by_agent) == {c.agent(few), c.agent(many)}
    assert {i for r in by_agent[c.agent(few)] for i in r.ids} == few_ids
    assert sorted(len(r.ids) for r in by_agent[c.agent(many)]) == [1, RECEIPT_IDS]
    assert all(r.status is ReceiptStatus.SEEN and r.by == nurse.display_name for r in receipts)

    # Seen through the newest reading: only a newer one makes the patient green again.
    assert green_rows(db, user=nurse) == []
    c.reading(few)
    assert [g.patient_id for g in green_rows(db, user=nurse)] == [few]


def test_the_review_and_its_receipts_commit_together(db: Any) -> None:
    c = Clinic(db)
    pid = c.patient()
    c.reading(pid)
    n = acknowledge_all_green(db, user=c.specialist(), cache=GreenCache(), topics=_fresh_topics())
    assert n == 0  # the patient is not referred to the specialist's department
    n = acknowledge_all_green(db, user=c.nurse(), cache=GreenCache(), topics=_fresh_topics())
    assert n == 1
    assert db.execute("SELECT seen_by FROM reading_reviews WHERE patient_id = %s", (pid,)).fetchone() == (
        c.nurse().username,
    )
    # A rolled-back review queues nothing: the tablet never hears "seen" for a review that is not stored.
    c.reading(pid)
    topics = _fresh_topics()
    with pytest.raises(RuntimeError), db.transaction():
        assert acknowledge_all_green(db, user=c.nurse(), cache=GreenCache(), topics=topics) == 1
        raise RuntimeError("the request failed after the review")
    assert db.execute("SELECT count(*) FROM mqtt_outbox WHERE topic LIKE %s", (topics.root + "/%",)).fetchone() == (0,)
    assert acknowledge_all_green(db, user=c.nurse(), cache=GreenCache(), topics=topics) == 1
    assert db.execute("SELECT count(*) FROM mqtt_outbox WHERE topic LIKE %s", (topics.root + "/%",)).fetchone() == (1,)


def test_kvitter_all_green_never_marks_a_citizen_with_an_unresolved_alert_and_takes_the_shown_rows(db: Any) -> None:
    """Issue 13: 54 readings of citizens shown as yellow (their yellow alerts kvitteret) were
    marked seen by "kvittér alle grønne"; and the page's rows are the ones acted on."""
    c = Clinic(db)
    green, other_green, acked = (c.patient() for _ in range(3))
    for pid in (green, other_green, acked):
        c.reading(pid)
    c.alert(acked, severity="yellow", team_key=c.nurse_team[1], state="acknowledged")
    n = acknowledge_all_green(db, user=c.nurse(), cache=GreenCache(), topics=_fresh_topics(),
                              patient_ids={green, acked})
    assert n == 1
    seen = {r[0] for r in db.execute("SELECT patient_id FROM reading_reviews WHERE patient_id = ANY(%s)",
                                      ([green, other_green, acked],))}
    assert seen == {green}
    assert acknowledge_all_green(db, user=c.nurse(), cache=GreenCache(), topics=_fresh_topics()) >= 1
    assert db.execute("SELECT 1 FROM reading_reviews WHERE patient_id = %s", (acked,)).fetchone() is None
