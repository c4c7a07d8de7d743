from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt

from backend.embedded import wait_for
from edge_agent.spool import Spool
from edge_agent.uplink import Uplink, envelope_json
from vitals.broker import parse_broker_url
from vitals.wire import AgentState, Receipt, parse_envelope, parse_status


def _uplink(spool: Spool, agent_id: str, broker, topics, **kw) -> Uplink:
    return Uplink(agent_id=agent_id, broker=broker, topics=topics, spool=spool, version="9.9.9",
                  reconnect_min_s=kw.pop("reconnect_min_s", 0.2), reconnect_max_s=kw.pop("reconnect_max_s", 1.0),
                  **kw)


def _publish(broker, topic: str, payload: bytes, retain: bool = False) -> None:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.connect(broker.host, broker.port)
    c.loop_start()
    c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)
    c.disconnect()
    c.loop_stop()


def test_envelope_json_is_a_valid_envelope(make_measurement, agent_id, topics) -> None:
    ms = [make_measurement(), make_measurement()]
    payload = envelope_json(agent_id, [m.model_dump_json() for m in ms], datetime.now(UTC))
    env = parse_envelope(payload, topic=topics.measurements(agent_id), topics=topics)
    assert env.measurements == tuple(ms)


def _receipt(broker, topics, agent_id: str, status: str, ids, reason: str | None = None) -> None:
    """What the backend sends after its commit (the real one is tested end to end elsewhere)."""
    _publish(broker, topics.receipts(agent_id), Receipt(agent_id=agent_id, status=status, ids=tuple(ids),
                                                        at=datetime.now(UTC), reason=reason).to_json())


def test_spooled_readings_reach_the_broker_and_leave_the_spool_only_on_the_backends_receipt(
    tmp_path: Path, broker, topics, agent_id, make_measurement, collect
) -> None:
    col = collect(broker, f"{topics.root}/agents/{agent_id}/#")
    spool = Spool(tmp_path / "s.sqlite")
    ms = [make_measurement(80 + i % 20) for i in range(120)]
    spool.append_many(ms)
    up = _uplink(spool, agent_id, broker, topics, batch_size=50).start()
    try:
        assert up.wait_sent(15), f"{spool.fill().unsent} readings not sent"
        assert col.wait_for(lambda: len(set(col.measurement_ids())) == 120, 10)
        assert col.measurement_ids() == [m.id for m in ms]  # oldest first, in batches of <= 50
        for env in col.payloads("/measurements"):
            assert len(parse_envelope(env).measurements) <= 50
        assert spool.depth == 120, "a PUBACK is not storage: every reading waits for its receipt"
        _receipt(broker, topics, agent_id, "stored", [m.id for m in ms[:100]])
        _receipt(broker, topics, agent_id, "held", [m.id for m in ms[100:]], reason="implausible_value: test")
        assert up.wait_drained(15), f"spool still holds {spool.depth}"
        online = [parse_status(p) for p in col.payloads("/status")]
        assert online and online[0].state is AgentState.ONLINE and online[0].version == "9.9.9"
        assert online[0].spool_capacity == spool.capacity
    finally:
        up.stop()
    # A clean stop leaves a retained "offline" status behind.
    late = collect(broker, topics.status(agent_id))
    assert late.wait_for(lambda: bool(late.payloads()), 5)
    assert parse_status(late.payloads()[-1]).state is AgentState.OFFLINE


def test_a_reading_with_no_receipt_is_sent_again_under_the_same_id_until_one_comes(
    tmp_path: Path, broker, topics, agent_id, make_measurement, collect
) -> None:
    col = collect(broker, topics.measurements(agent_id))
    spool = Spool(tmp_path / "s.sqlite")
    ms = [make_measurement() for _ in range(5)]
    spool.append_many(ms)
    up = _uplink(spool, agent_id, broker, topics, resend_after_s=0.3, resend_max_s=0.6).start()
    try:
        # Nobody answers (the broker dropped them, a worker died holding them…): they come again.
        assert col.wait_for(lambda: all(col.measurement_ids().count(m.id) >= 3 for m in ms), 20), (
            f"sent {len(col.measurement_ids())} times in all")
        assert set(col.measurement_ids()) == {m.id for m in ms}  # never a new id
        assert up.resent >= 10 and spool.depth == 5
        _receipt(broker, topics, agent_id, "stored", [m.id for m in ms])
        assert up.wait_drained(10)
    finally:
        up.stop()


def test_receipts_and_plan_are_recorded_and_garbage_is_ignored(
    tmp_path: Path, broker, topics, agent_id, make_measurement, caplog
) -> None:
    spool = Spool(tmp_path / "s.sqlite")
    m = make_measurement()
    plan = (b'{"schema":"1.0","agent_id":"%s","issued_at":"2026-01-01T00:00:00Z",'
            b'"measurements":[{"kind":"spo2","times":["08:00"]}]}' % agent_id.encode())
    _publish(broker, topics.config(agent_id), plan, retain=True)
    up = _uplink(spool, agent_id, broker, topics).start()
    try:
        assert up.wait_connected(10)
        wait_for(lambda: spool.plan() is not None, timeout=10, what="the retained plan in the spool")
        assert spool.plan() is not None and spool.plan().measurements[0].kind.value == "spo2"
        _publish(broker, topics.receipts(agent_id), b"{not json")
        _publish(broker, topics.receipts(agent_id), b'{"schema":"1.0","agent_id":"%s","status":"lost"}'
                 % agent_id.encode())
        _publish(broker, topics.receipts(agent_id),
                 b'{"schema":"1.0","agent_id":"%s","status":"seen","ids":["%s"],"at":"2026-01-02T10:00:00Z",'
                 b'"by":"Sygeplejerske Hansen"}' % (agent_id.encode(), str(m.id).encode()))
        wait_for(lambda: spool.receipts_for(m.id), timeout=10, what="the seen receipt in the spool")
        assert set(spool.receipts_for(m.id)) == {"seen"}
        assert "malformed receipt" in caplog.text
        assert up.connected and up.connects == 1  # the garbage cost no reconnect
    finally:
        up.stop()
        _publish(broker, topics.config(agent_id), b"", retain=True)


def test_unreachable_broker_is_retried_visibly_not_fatal(tmp_path: Path, agent_id, topics, caplog) -> None:
    spool = Spool(tmp_path / "s.sqlite")
    broker = parse_broker_url("mqtt://127.0.0.1:1")
    up = _uplink(spool, agent_id, broker, topics, reconnect_min_s=0.1, reconnect_max_s=0.2).start()
    try:
        wait_for(lambda: up.attempts >= 3, timeout=5, what="three connection attempts")
        assert up.attempts >= 3 and up.connects == 0
        assert "cannot reach broker" in caplog.text and "reconnecting in" in caplog.text
    finally:
        up.stop()


def test_broker_outage_then_everything_drains_oldest_first(
    tmp_path: Path, private_broker, topics, agent_id, make_measurement, collect
) -> None:
    broker = parse_broker_url(private_broker.url)
    col = collect(broker, topics.measurements(agent_id))
    spool = Spool(tmp_path / "s.sqlite")
    before = [make_measurement() for _ in range(30)]
    spool.append_many(before)
    up = _uplink(spool, agent_id, broker, topics, reconnect_min_s=1.5, reconnect_max_s=3.0).start()
    assert up.wait_sent(10)
    assert col.wait_for(lambda: len(set(col.measurement_ids())) == 30, 5)
    col.close()
    # The broker acknowledged them, but no receipt came before it went away (restarted, the
    # broker forgets the backend's shared subscription and drops what it acknowledged).

    first = private_broker.proc
    private_broker.stop()
    if first is not None and first.stderr is not None:
        first.stderr.close()  # the shared fixture leaves this pipe open (ResourceWarning under -W error)
    during = [make_measurement() for _ in range(300)]
    for m in during:  # readings keep coming while the broker is away
        spool.append(m)
    attempts = up.attempts
    # The uplink has failed at least once more and now backs off >= 3 s.
    wait_for(lambda: up.attempts > attempts + 1, timeout=10, what="two more failed attempts", interval=0.02)
    assert spool.depth == 330 and spool.fill().unsent == 300 and not up.connected
    private_broker.start()
    col2 = collect(broker, topics.measurements(agent_id))
    try:
        assert up.wait_sent(20), f"{spool.fill().unsent} readings not sent"
        assert col2.wait_for(lambda: len(set(col2.measurement_ids())) == 330, 10)
        got = list(dict.fromkeys(col2.measurement_ids()))
        # The new connection sends the unconfirmed ones again first, then the rest, oldest first.
        assert got == [m.id for m in before + during]
        assert up.connects == 2
        _receipt(broker, topics, agent_id, "stored", [m.id for m in before + during])
        assert up.wait_drained(20), f"{spool.depth} readings left"
    finally:
        up.stop()


def test_the_care_teams_newest_message_is_kept_and_garbage_ignored(
    tmp_path: Path, broker, topics, agent_id, caplog
) -> None:
    """Issue 13: the backend's retained message to the citizen reaches the spool; an older one or
    one addressed to another tablet does not replace it."""

    def message(mid: int, text: str, to: str = agent_id) -> bytes:
        return (b'{"schema":"1.0","agent_id":"%s","id":%d,"text":"%s","at":"2026-01-02T08:00:00Z",'
                b'"by":"Anne Hansen, sygeplejerske"}' % (to.encode(), mid, text.encode()))

    spool = Spool(tmp_path / "s.sqlite")
    _publish(broker, topics.messages(agent_id), message(5, "Husk vaegten"), retain=True)
    up = _uplink(spool, agent_id, broker, topics).start()
    try:
        assert up.wait_connected(10)
        wait_for(lambda: spool.team_message() is not None, timeout=10, what="the team's message in the spool")
        got = spool.team_message()
        assert got is not None and got.id == 5 and got.text == "Husk vaegten"
        _publish(broker, topics.messages(agent_id), b"{not json")
        _publish(broker, topics.messages(agent_id), message(9, "Til en anden", to="another-agent"))
        _publish(broker, topics.messages(agent_id), message(4, "Aeldre"))
        _publish(broker, topics.messages(agent_id), message(6, "Nyere"))
        wait_for(lambda: spool.team_message().id == 6, timeout=10, what="the newer message in the spool")
        assert spool.team_message().text == "Nyere"
        assert "malformed team message" in caplog.text and "addressed to agent another-agent" in caplog.text
        assert up.connected and up.connects == 1
    finally:
        up.stop()
        _publish(broker, topics.messages(agent_id), b"", retain=True)
