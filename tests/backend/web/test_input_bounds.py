"""Issue 12, findings 1, 2, 5 and 7 against the live backend: no input can silence a citizen's
alarms or break a page. Each bad input is sent the way an agent or a clinician would send it,
then a fresh red reading must still open a red alert."""

from __future__ import annotations

import json
import secrets
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import psycopg
import pytest

from backend.embedded import wait_for
from tests.backend.web._support import World, api_token, build_world, open_alert_id, web_login
from vitals.wire import Receipt, parse_receipt


def _envelope(agent_id: str, *, measured_at: str, spo2: float = 95.0, mid: uuid.UUID | None = None) -> bytes:
    now = datetime.now(UTC)
    return json.dumps({
        "schema": "1.0",
        "agent_id": agent_id,
        "sent_at": now.isoformat(),
        "measurements": [{
            "id": str(mid or uuid.uuid4()),
            "kind": "spo2",
            "values": {"spo2": spo2},
            "unit": "%",
            "measured_at": measured_at,
            "device_clock_trusted": True,
            "received_at": now.isoformat(),
            "device": {"address": "AA:BB:CC:DD:EE:01"},
        }],
    }).encode()


class _Agent:
    """A hand-driven agent on the shared broker: publishes raw payloads, collects receipts."""

    def __init__(self, live: Any, agent_id: str) -> None:
        s = live.app.state.settings
        self.topics = s.topics
        self.agent_id = agent_id
        self.receipts: list[Receipt] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.connect(s.broker.host, s.broker.port)
        self.client.loop_start()
        wait_for(self.client.is_connected, what="test agent connected", timeout=30)
        self.client.subscribe(self.topics.receipts(agent_id), qos=1)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.receipts.append(parse_receipt(msg.payload))

    def receipt_for(self, mid: uuid.UUID) -> Receipt:
        def find() -> Receipt | None:
            with self._lock:
                return next((r for r in self.receipts if mid in r.ids), None)

        wait_for(lambda: find() is not None, what=f"a receipt for {mid}", timeout=30)
        found = find()
        assert found is not None
        return found

    def send(self, payload: bytes, kind: str = "measurements") -> None:
        topic = self.topics.for_agent(self.agent_id, kind)
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def fresh(live: Any) -> Iterator[tuple[World, psycopg.Connection]]:
    with psycopg.connect(live.app.state.settings.database_url, autocommit=True) as conn:
        yield build_world(conn), conn


def _red_reading_opens_a_red_alert(agent: _Agent, conn: psycopg.Connection, w: World) -> None:
    mid = uuid.uuid4()
    agent.send(_envelope(w.agent_id, measured_at=datetime.now(UTC).isoformat(), spo2=80.0, mid=mid))
    assert agent.receipt_for(mid).status.value == "stored"
    open_alert_id(conn, w.patient_id, "red", timeout=30)


def test_a_year_10000_reading_is_a_dead_letter_and_the_citizens_alarms_still_work(
    live: Any, client: httpx.Client, fresh: tuple[World, psycopg.Connection]
) -> None:
    w, conn = fresh
    agent = _Agent(live, w.agent_id)
    try:
        # Finding 1: 9999-12-31T23:59:59-14:00 is year 10000 in UTC.
        outcomes = {}
        for at in ("9999-12-31T23:59:59-14:00", "9999-12-31T23:59:59Z", "2100-06-01T00:00:00Z",
                   "1970-01-01T00:00:00Z", "0001-01-01T00:00:00Z"):
            mid = uuid.uuid4()
            agent.send(_envelope(w.agent_id, measured_at=at, mid=mid))
            r = agent.receipt_for(mid)
            outcomes[at] = r.status.value
            assert r.status.value == "dead_letter", (at, r)
        rows = conn.execute(
            "SELECT field, reason FROM dead_letters WHERE agent_id = %s ORDER BY id", (w.agent_id,)
        ).fetchall()
        assert len(rows) == 5 and {f for f, _ in rows} == {"measurements.0.measured_at"}, rows
        # An hour ahead of the receipt, a year after 2000 but long ago: held with the reason,
        # shown to clinicians as rejected, never fed to the rules.
        ahead, old = uuid.uuid4(), uuid.uuid4()
        agent.send(_envelope(w.agent_id, measured_at=(datetime.now(UTC) + timedelta(hours=1)).isoformat(), mid=ahead))
        assert agent.receipt_for(ahead).status.value == "held"
        agent.send(_envelope(w.agent_id, measured_at="2001-01-01T00:00:00Z", mid=old))
        assert agent.receipt_for(old).status.value == "held"
        reasons = dict(conn.execute(
            "SELECT id, reason FROM rejected_readings WHERE id = ANY(%s)", ([ahead, old],)).fetchall())
        assert reasons[ahead].startswith("future_time:") and reasons[old].startswith("too_old:")
        stored = conn.execute("SELECT count(*) FROM measurements WHERE patient_id = %s", (w.patient_id,)).fetchone()
        assert stored == (0,)

        # Every page of the citizen still answers.
        web_login(client, w.nurse)
        for path in (f"/patients/{w.patient_id}", "/patients", f"/api/v1/patients/{w.patient_id}/readings",
                     f"/api/v1/patients/{w.patient_id}/fhir", f"/api/v1/patients/{w.patient_id}/rejected"):
            assert client.get(path, headers={"accept": "text/html"}).status_code == 200, path
        rejected = client.get(f"/api/v1/patients/{w.patient_id}/rejected").json()
        assert {r["reason"].split(":")[0] for r in rejected} == {"future_time", "too_old"}

        _red_reading_opens_a_red_alert(agent, conn, w)
    finally:
        agent.close()


def test_a_status_from_year_9999_is_not_applied_and_later_statuses_are(
    live: Any, fresh: tuple[World, psycopg.Connection]
) -> None:
    # Finding 5: a status at year 9999 froze the agent "online" for good.
    w, conn = fresh
    agent = _Agent(live, w.agent_id)
    try:
        def status(state: str, at: str) -> bytes:
            return json.dumps({"schema": "1.0", "agent_id": w.agent_id, "state": state, "at": at}).encode()

        far = (datetime.now(UTC) + timedelta(days=30)).isoformat()
        agent.send(status("online", "9999-12-31T23:59:59Z"), "status")
        agent.send(status("online", far), "status")
        wait_for(lambda: conn.execute("SELECT count(*) FROM dead_letters WHERE agent_id = %s AND field = 'at'",
                                      (w.agent_id,)).fetchone() == (2,), what="two status dead letters", timeout=30)
        assert conn.execute("SELECT status_at FROM agents WHERE id = %s", (w.agent_id,)).fetchone() == (None,)
        agent.send(status("offline", datetime.now(UTC).isoformat()), "status")
        wait_for(lambda: conn.execute("SELECT online, status_at IS NOT NULL FROM agents WHERE id = %s",
                                      (w.agent_id,)).fetchone() == (False, True), what="offline applied", timeout=30)
    finally:
        agent.close()


@pytest.mark.parametrize("value", ["NaN", "-Infinity", "Infinity", "-1e308", "1e308"])
def test_a_non_finite_or_absurd_threshold_is_refused_by_the_api_and_the_alarms_still_work(
    live: Any, client: httpx.Client, fresh: tuple[World, psycopg.Connection], value: str
) -> None:
    # Finding 2: NaN, -Infinity and -1e308 were accepted; every later reading failed evaluation.
    w, conn = fresh
    token = api_token(client, w.nurse)
    body = '{"rule_id": "copd.spo2.absolute", "field": "red_low", "value": ' + value + ', "reason": "test af grænse"}'
    r = client.put(f"/api/v1/patients/{w.patient_id}/thresholds", content=body,
                   headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
    assert r.status_code in (400, 422), r.text
    # Outside the plausible range of SpO2 (50–100 %), though finite: refused with the reason.
    r = client.put(f"/api/v1/patients/{w.patient_id}/thresholds",
                   json={"rule_id": "copd.spo2.absolute", "field": "red_low", "value": -5, "reason": "test af grænse"},
                   headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 400 and "plausible range" in r.text
    assert conn.execute("SELECT count(*) FROM alert_threshold_overrides WHERE patient_id = %s",
                        (w.patient_id,)).fetchone() == (0,)
    agent = _Agent(live, w.agent_id)
    try:
        _red_reading_opens_a_red_alert(agent, conn, w)
    finally:
        agent.close()


def test_the_threshold_form_refuses_nan_infinity_and_absurd_values(
    live: Any, client: httpx.Client, fresh: tuple[World, psycopg.Connection]
) -> None:
    w, conn = fresh
    csrf = web_login(client, w.nurse)
    for value in ("nan", "NaN", "-inf", "inf", "-1e308", "1e308", "-1"):
        r = client.post(f"/patients/{w.patient_id}/thresholds",
                        data={"csrf": csrf, "rule_id": "copd.spo2.absolute", "field": "red_low", "value": value,
                              "reason": "test af grænse"}, headers={"accept": "text/html"})
        assert r.status_code == 400, (value, r.status_code)
    assert conn.execute("SELECT count(*) FROM alert_threshold_overrides WHERE patient_id = %s",
                        (w.patient_id,)).fetchone() == (0,)
    # The patient page and its plots still render.
    assert client.get(f"/patients/{w.patient_id}", headers={"accept": "text/html"}).status_code == 200
    agent = _Agent(live, w.agent_id)
    try:
        _red_reading_opens_a_red_alert(agent, conn, w)
    finally:
        agent.close()


def test_snooze_and_passive_intervals_have_a_sane_maximum(
    live: Any, client: httpx.Client, fresh: tuple[World, psycopg.Connection]
) -> None:
    # Finding 7: a snooze or passive interval to year 9999 was a 500; a snooze of any length passed.
    w, conn = fresh
    agent = _Agent(live, w.agent_id)
    try:
        _red_reading_opens_a_red_alert(agent, conn, w)
    finally:
        agent.close()
    alert_id = open_alert_id(conn, w.patient_id)
    csrf = web_login(client, w.nurse)
    for until in ("9999-12-31T23:59", (datetime.now(UTC) + timedelta(days=8)).strftime("%Y-%m-%dT%H:%M")):
        r = client.post(f"/alerts/{alert_id}/snooze", data={"csrf": csrf, "until": until, "reason": "for længe"})
        assert r.status_code in (400, 409) and "7 days" in r.text, (until, r.status_code)
    token = api_token(client, w.nurse)
    for until in ("9999-12-31T23:59:59-14:00", (datetime.now(UTC) + timedelta(days=8)).isoformat()):
        r = client.post(f"/api/v1/alerts/{alert_id}/snooze", json={"until": until, "reason": "for længe"},
                        headers={"authorization": f"Bearer {token}"})
        assert r.status_code in (409, 422), (until, r.status_code, r.text)
    assert conn.execute("SELECT snoozed_until FROM alerts WHERE id = %s", (alert_id,)).fetchone() == (None,)
    today = datetime.now(UTC).date()
    too_long = (today + timedelta(days=400)).isoformat()
    for start, end in ((today.isoformat(), "9999-12-31"), (today.isoformat(), too_long), ("0001-01-01", "0001-01-02")):
        r = client.post(f"/patients/{w.patient_id}/passive",
                        data={"csrf": csrf, "starts": start, "ends": end, "reason": "ferie"},
                        headers={"accept": "text/html"})
        assert r.status_code == 400, (start, end, r.status_code)
    assert conn.execute("SELECT count(*) FROM passive_intervals WHERE patient_id = %s",
                        (w.patient_id,)).fetchone() == (0,)


NUL_FORMS = [
    ("/login", {"username": "a\x00b", "password": "x", "csrf": "x"}),
    ("/alerts/1/snooze", {"until": "2026-01-01T00:00", "reason": "a\x00b", "csrf": "x"}),
    ("/alerts/1/resolve", {"note": "a\x00", "csrf": "x"}),
]


@pytest.mark.parametrize(("path", "form"), NUL_FORMS)
def test_a_nul_byte_in_any_form_field_is_a_400(live: Any, client: httpx.Client, path: str,
                                               form: dict[str, str]) -> None:
    r = client.post(path, data=form)
    assert r.status_code == 400 and "NUL" in r.text


def test_a_nul_byte_in_json_query_or_path_is_a_400(live: Any, client: httpx.Client) -> None:
    r = client.post("/api/v1/auth/token", content=b'{"username": "a\\u0000", "password": "x"}',
                    headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert client.get("/patients?q=a%00b").status_code == 400
    assert client.get("/patients/%00").status_code == 400
    # A JSON string with an escaped backslash before u0000 is not a NUL.
    r = client.post("/api/v1/auth/token", content=b'{"username": "a\\\\u0000", "password": "x"}',
                    headers={"content-type": "application/json"})
    assert r.status_code == 401


def test_a_request_body_over_the_cap_is_refused(live: Any, client: httpx.Client) -> None:
    big = secrets.token_hex(600_000).encode()
    r = client.post("/api/v1/auth/token", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413
