"""10,000 malformed or fuzzed payloads into the live consumer: it keeps running, and every one
is in the dead letters, byte for byte, with a reason."""

from __future__ import annotations

import copy
import json
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import psycopg
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

N = 10_000
KINDS = {"spo2", "pulse", "weight", "blood_pressure", "temperature", "glucose", "respiration_rate"}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)


def _not_uuid(s: str) -> bool:
    try:
        uuid.UUID(s)
    except ValueError:
        return True
    return False


def _breakers(valid: dict[str, Any]) -> st.SearchStrategy[bytes]:
    """A valid envelope with one change that the contract must refuse."""

    def drop_top(key: str) -> bytes:
        e = copy.deepcopy(valid)
        del e[key]
        return json.dumps(e).encode()

    def set_top(kv: tuple[str, Any]) -> bytes:
        e = copy.deepcopy(valid)
        e[kv[0]] = kv[1]
        return json.dumps(e).encode()

    def set_m(kv: tuple[str, Any]) -> bytes:
        e = copy.deepcopy(valid)
        e["measurements"][0][kv[0]] = kv[1]
        return json.dumps(e).encode()

    def drop_m(key: str) -> bytes:
        e = copy.deepcopy(valid)
        del e["measurements"][0][key]
        return json.dumps(e).encode()

    required_m = ["id", "kind", "values", "unit", "measured_at", "device_clock_trusted", "received_at", "device"]
    return st.one_of(
        st.sampled_from(["schema", "agent_id", "sent_at", "measurements"]).map(drop_top),
        st.sampled_from(required_m).map(drop_m),
        st.tuples(st.just("schema"), st.sampled_from(["2.0", "0.9", "10.1", "1", "x.y", ""])).map(set_top),
        st.tuples(st.just("agent_id"), st.sampled_from(["someone-else", "other.agent"])).map(set_top),
        st.tuples(st.just("measurements"), st.just([])).map(set_top),
        st.tuples(st.text(min_size=1, max_size=8).filter(lambda k: k not in valid), json_values).map(set_top),
        st.tuples(st.just("id"), st.text(max_size=40).filter(_not_uuid)).map(set_m),
        st.tuples(st.just("kind"), st.text(max_size=12).filter(lambda k: k.strip() not in KINDS)).map(set_m),
        st.tuples(st.just("unit"), st.sampled_from(["kg", "mmHg", "", "percent"])).map(set_m),
        st.tuples(st.just("measured_at"), st.sampled_from(["2026-11-22T07:30:40", "yesterday", "", "1e9"])).map(set_m),
        st.tuples(st.just("values"), st.sampled_from([{}, {"spo2": "high"}, {"pulse": 60}, {"spo2": [1]}])).map(set_m),
        st.tuples(st.just("user_index"), st.sampled_from([-1, 256, "one", 1.5])).map(set_m),
    )


def test_ten_thousand_bad_payloads_all_become_dead_letters(
    settings: Any, topics: Any, make_home: Callable[..., Any], make_envelope: Callable[..., Any],
    start_ingest: Callable[..., Any], publisher: Any, db_count: Callable[..., int], wait: Callable[..., Any],
    database_url: str,
) -> None:
    home = make_home(prefix="fuzz")
    start_ingest(settings)
    topic = topics.measurements(home.agent_id)
    valid = make_envelope(home.agent_id, 1)
    sent: list[bytes] = []
    infos: list[Any] = []

    payloads = st.one_of(
        st.binary(max_size=256),
        json_values.map(lambda v: json.dumps(v).encode()),
        _breakers(valid),
    )

    @hsettings(max_examples=N, database=None, deadline=None, phases=[Phase.generate],
               suppress_health_check=list(HealthCheck))
    @given(payloads)
    def publish(payload: bytes) -> None:
        sent.append(payload)
        infos.append(publisher.publish(topic, payload, wait=False))

    publish()
    assert len(sent) == N
    for info in infos:
        info.wait_for_publish(30)

    def dead() -> int:
        return db_count("SELECT count(*) FROM dead_letters WHERE agent_id = %s", (home.agent_id,))

    wait(lambda: dead() >= N, timeout=120, what=f"{N} dead letters")
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT payload, reason, field, topic FROM dead_letters WHERE agent_id = %s", (home.agent_id,)
        ).fetchall()
    assert Counter(bytes(r[0]) for r in rows) == Counter(sent)
    assert all(r[1] and r[3] == topic for r in rows)
    assert db_count("SELECT count(*) FROM measurements WHERE agent_id = %s", (home.agent_id,)) == 0
    assert db_count("SELECT count(*) FROM rejected_readings WHERE agent_id = %s", (home.agent_id,)) == 0

    # Still consuming.
    good = make_envelope(home.agent_id, 2)
    publisher.publish(topic, good)
    wait(lambda: db_count("SELECT count(*) FROM measurements WHERE agent_id = %s", (home.agent_id,)) == 2)
