"""Issue 12, "done when": hypothesis sends arbitrary envelopes, statuses and threshold edits at a
live backend (the real broker, ingest, rules and API) and checks the invariants after each step:
no server error, and a fresh red reading is evaluated (no evaluation failure) and leaves a red
alert open for the citizen.

The threshold edits that could legitimately stop SpO2 80 % from being red (a valid lower red
limit on the SpO2 rule) are left out; every other rule and field gets arbitrary numbers, and the
SpO2 rule gets only values that must be refused (NaN, infinities, numbers beyond any range)."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.embedded import wait_for
from tests.backend.web._support import api_token, build_world
from tests.backend.web.test_input_bounds import _Agent

KINDS = {"spo2": ("%", ["spo2"]), "pulse": ("/min", ["pulse"]), "weight": ("kg", ["weight"]),
         "blood_pressure": ("mm[Hg]", ["systolic", "diastolic", "mean_arterial"])}

times = st.builds(
    lambda d, offset: d.replace(tzinfo=timezone(timedelta(minutes=offset))).isoformat(),
    st.one_of(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
              st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1))),
    st.integers(min_value=-14 * 60 + 1, max_value=14 * 60 - 1),
)
numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6).map(float))


@st.composite
def envelopes(draw: Any, agent_id: str) -> bytes:
    kind = draw(st.sampled_from(sorted(KINDS)))
    unit, comps = KINDS[kind]
    measurement = {
        "id": str(uuid.uuid4()), "kind": kind, "unit": unit,
        "values": {c: draw(numbers) for c in comps},
        "measured_at": draw(times), "received_at": draw(times),
        "device_clock_trusted": draw(st.booleans()),
        "device": {"address": "AA:BB:CC:DD:EE:01"},
    }
    env = {"schema": "1.0", "agent_id": agent_id, "sent_at": draw(times), "measurements": [measurement]}
    text = json.dumps(env)  # NaN and Infinity as JSON extensions: a careless client sends them
    if draw(st.booleans()):
        return text.encode()
    return draw(st.sampled_from([text[: len(text) // 2].encode(), b"\x00\xff", b"[]", b"{}", text.encode() * 2]))


@st.composite
def statuses(draw: Any, agent_id: str) -> bytes:
    return json.dumps({"schema": "1.0", "agent_id": agent_id, "state": draw(st.sampled_from(["online", "offline"])),
                       "at": draw(times), "spool_depth": draw(st.integers(0, 10**6))}).encode()


def _raw_number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)


threshold_edits = st.one_of(
    st.tuples(st.sampled_from(["copd.pulse.absolute", "copd.spo2.baseline", "copd.spo2.trend", "copd.news2",
                               "copd.pulse.baseline"]),
              st.sampled_from(["red_low", "yellow_low", "yellow_high", "red_high", "k", "days", "min_days",
                               "min_sd", "delta", "window_hours", "yellow", "red"]),
              numbers),
    st.tuples(st.just("copd.spo2.absolute"), st.sampled_from(["red_low", "yellow_low", "red_high"]),
              st.sampled_from([math.nan, math.inf, -math.inf, -1e308, 1e308, -1.0, 1e6])),
)


@pytest.fixture(scope="module")
def citizen(live: Any) -> Iterator[tuple[Any, psycopg.Connection, _Agent, str]]:
    with psycopg.connect(live.app.state.settings.database_url, autocommit=True) as conn:
        w = build_world(conn)
        agent = _Agent(live, w.agent_id)
        with httpx.Client(base_url=live.url, timeout=30) as c:
            token = api_token(c, w.nurse)
        try:
            yield w, conn, agent, token
        finally:
            agent.close()


def _red_reading_opens_a_red_alert(agent: _Agent, conn: psycopg.Connection, w: Any) -> None:
    mid = uuid.uuid4()
    now = datetime.now(UTC).isoformat()
    agent.send(json.dumps({"schema": "1.0", "agent_id": w.agent_id, "sent_at": now, "measurements": [{
        "id": str(mid), "kind": "spo2", "unit": "%", "values": {"spo2": 80.0}, "measured_at": now,
        "received_at": now, "device_clock_trusted": True, "device": {"address": "AA:BB:CC:DD:EE:01"}}]}).encode())
    assert agent.receipt_for(mid).status.value == "stored"
    wait_for(lambda: conn.execute("SELECT 1 FROM reading_evaluations WHERE measurement_id = %s", (mid,)).fetchone(),
             what="the red reading evaluated", timeout=30)
    assert conn.execute("SELECT count(*) FROM alert_evaluation_failures WHERE patient_id = %s",
                        (w.patient_id,)).fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM alerts WHERE patient_id = %s AND severity = 'red' AND state = 'open'",
                        (w.patient_id,)).fetchone()[0] >= 1


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(data=st.data())
def test_arbitrary_input_never_silences_the_citizens_alarms(live: Any, citizen: Any, data: Any) -> None:
    w, conn, agent, token = citizen
    for _ in range(data.draw(st.integers(1, 3))):
        step = data.draw(st.sampled_from(["envelope", "status", "threshold"]))
        if step == "envelope":
            agent.send(data.draw(envelopes(w.agent_id)))
        elif step == "status":
            agent.send(data.draw(statuses(w.agent_id)), "status")
        else:
            rule_id, field, value = data.draw(threshold_edits)
            body = (f'{{"rule_id": "{rule_id}", "field": "{field}", "value": {_raw_number(value)},'
                    ' "reason": "hypothesis"}')
            with httpx.Client(base_url=live.url, timeout=30) as c:
                r = c.put(f"/api/v1/patients/{w.patient_id}/thresholds", content=body,
                          headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
            assert r.status_code < 500, (body, r.status_code, r.text)
    _red_reading_opens_a_red_alert(agent, conn, w)
    with httpx.Client(base_url=live.url, timeout=30) as c:
        h = {"authorization": f"Bearer {token}"}
        for path in (f"/api/v1/patients/{w.patient_id}/readings", f"/api/v1/patients/{w.patient_id}/fhir",
                     f"/api/v1/patients/{w.patient_id}/thresholds", "/api/v1/patients"):
            assert c.get(path, headers=h).status_code == 200, path
