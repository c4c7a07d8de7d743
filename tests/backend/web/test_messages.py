"""A message from the care team to the citizen (issue 13), against the real app and broker:
stored, audited (the citizen's Min Log names the sender), shown on the citizen's page (read when
seen) and on the patient page, retained on the tablet's ``messages`` topic; refused texts come
back with the reason; only a clinician in scope may send."""

from __future__ import annotations

import queue
import time
from typing import Any

import psycopg

from backend.messages.service import MAX_LENGTH
from tests.backend.review.test_review import Broker
from tests.backend.web._support import web_login
from vitals.wire import Topics, parse_team_message


def _team_messages(broker: Broker, topic: str, *, want_id: int, timeout: float = 30) -> list[Any]:
    """Messages on ``topic`` until the one with ``want_id`` arrives (the retained one comes first)."""
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not any(m.id == want_id for m in out):
        try:
            got_topic, payload = broker.received.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            break
        if got_topic == topic and payload:
            out.append(parse_team_message(payload))
    return out


def test_nurse_sends_a_message_the_citizen_reads_it_on_page_tablet_and_min_log(
    client: Any, world: Any, db: psycopg.Connection, module_settings: Any, mqtt_url: str
) -> None:
    text = "Husk at veje dig i morgen tidlig.\nRing, hvis du får det værre."
    csrf = web_login(client, world.nurse)
    r = client.post(f"/patients/{world.patient_id}/message", data={"csrf": csrf, "body": f"  {text}  "})
    assert r.status_code == 303 and r.headers["location"] == f"/patients/{world.patient_id}#messages"
    row = db.execute(
        "SELECT id, body, sent_by_role, read_at FROM citizen_messages WHERE patient_id = %s ORDER BY id DESC LIMIT 1",
        (world.patient_id,),
    ).fetchone()
    assert row is not None and row[1] == text and row[2] == "nurse" and row[3] is None
    message_id = row[0]
    audit_rows = db.execute(
        "SELECT count(*) FROM audit_log WHERE patient_id = %s AND action = 'message to citizen' AND allowed",
        (world.patient_id,),
    ).fetchone()
    assert audit_rows is not None and audit_rows[0] >= 1
    page = client.get(f"/patients/{world.patient_id}", headers={"accept": "text/html"}).text
    assert "Husk at veje dig i morgen tidlig." in page and "Ikke læst endnu" in page

    # The tablet's topic holds it, retained (the outbox relay of the live app sends it).
    topics = Topics(module_settings.topic_root)
    topic = topics.messages(world.agent_id)
    broker = Broker(mqtt_url)
    try:
        broker.subscribe(topic)
        got = _team_messages(broker, topic, want_id=message_id)
        mine = [m for m in got if m.id == message_id]
        assert mine, f"no message {message_id} on {topic}: {got}"
        assert mine[0].text == text and mine[0].agent_id == world.agent_id and "sygeplejerske" in mine[0].by
    finally:
        broker.publish(topic, b"", retain=True)  # clear the retained message on the shared broker
        broker.client.loop_stop()
        broker.client.disconnect()

    client.cookies.clear()
    web_login(client, world.citizen)
    me = client.get("/me", headers={"accept": "text/html"}).text
    assert "Beskeder fra dit team" in me and "Husk at veje dig i morgen tidlig." in me and "sygeplejerske" in me
    read = db.execute("SELECT read_at FROM citizen_messages WHERE id = %s", (message_id,)).fetchone()
    assert read is not None and read[0] is not None
    assert "sendte dig en besked" in client.get("/min-log", headers={"accept": "text/html"}).text


def test_an_empty_or_too_long_message_is_refused_and_the_text_kept(client: Any, world: Any, db: Any) -> None:
    csrf = web_login(client, world.nurse)
    before = db.execute("SELECT count(*) FROM citizen_messages").fetchone()[0]
    r = client.post(f"/patients/{world.patient_id}/message", data={"csrf": csrf, "body": "   "},
                    headers={"accept": "text/html"})
    assert r.status_code == 400 and "Skriv en besked" in r.text
    long = "ord " * (MAX_LENGTH // 4 + 10)
    r = client.post(f"/patients/{world.patient_id}/message", data={"csrf": csrf, "body": long},
                    headers={"accept": "text/html"})
    assert r.status_code == 400 and "for lang" in r.text and long.strip()[:200] in r.text
    r = client.post(f"/patients/{world.patient_id}/message", data={"csrf": csrf, "body": "   "},
                    headers={"x-nearcare-fetch": "1"})
    assert r.status_code == 400 and r.json()["ok"] is False
    assert db.execute("SELECT count(*) FROM citizen_messages").fetchone()[0] == before


def test_only_a_clinician_in_scope_may_send(client: Any, world: Any, db: Any) -> None:
    before = db.execute("SELECT count(*) FROM citizen_messages").fetchone()[0]
    csrf = web_login(client, world.other_nurse)  # another municipality
    r = client.post(f"/patients/{world.patient_id}/message", data={"csrf": csrf, "body": "Hej"},
                    headers={"accept": "text/html"})
    assert r.status_code == 403 and "Hej" in r.text  # refused, the text kept
    client.cookies.clear()
    csrf = web_login(client, world.citizen)
    r = client.post(f"/patients/{world.patient_id}/message", data={"csrf": csrf, "body": "Hej"},
                    headers={"accept": "text/html"})
    assert r.status_code == 403
    assert db.execute("SELECT count(*) FROM citizen_messages").fetchone()[0] == before
    refused = db.execute(
        "SELECT count(*) FROM audit_log WHERE patient_id = %s AND action = 'message to citizen' AND NOT allowed",
        (world.patient_id,),
    ).fetchone()
    assert refused is not None and refused[0] >= 1
