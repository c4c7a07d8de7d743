"""The FUT connector against a FUT stand-in on loopback (tests/backend/fut/fake_fut.py): exactly
once through outages, lost responses and slow answers; refusals kept with FUT's reason and sent
again on request; readings FUT has no code for kept with the reason; ingest's writer unaffected
while FUT is down."""

from __future__ import annotations

import dataclasses
import json
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from backend.embedded import wait_for
from backend.fhir.fut import FutLink
from backend.fut import FutClient, FutConfig, FutSender, enqueue_new, link_patient, metrics, refused, retry_refused
from backend.fut.sender import backoff, send_due
from tests.backend.fut.fake_fut import FakeFut

FUT = "https://fut.test/fhir"


def _link(n: int, *, service_request: str | None = None) -> FutLink:
    return FutLink(
        patient=f"{FUT}/Patient/{n}",
        episode_of_care=f"{FUT}/EpisodeOfCare/{n}",
        service_request=service_request or f"{FUT}/ServiceRequest/{n}",
        service_request_version="3",
        device=f"{FUT}/Device/{n}",
    )


def _known(link: FutLink) -> set[str]:
    return {link.patient, link.episode_of_care, link.service_request, link.device}


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as c:
        yield c


def _citizen(conn: psycopg.Connection[Any]) -> tuple[int, str]:
    ref = f"fut-{uuid.uuid4().hex[:8]}"
    pid = conn.execute(
        "INSERT INTO patients (external_ref, name, programme, municipality) VALUES (%s, 'F', 'copd', 'Aarhus')"
        " RETURNING id",
        (ref,),
    ).fetchone()[0]
    agent = f"fut-agent-{uuid.uuid4().hex[:6]}"
    conn.execute("INSERT INTO agents (id, patient_id) VALUES (%s, %s)", (agent, pid))
    conn.execute("INSERT INTO devices (agent_id, address, model) VALUES (%s, '00:09:1F:80:4B:01', 'UA-651BLE')",
                 (agent,))
    return pid, agent


def _store(conn: psycopg.Connection[Any], pid: int, agent: str, kind: str, comps: dict[str, float],
           unit: str, quality: tuple[str, ...] = ()) -> uuid.UUID:
    """Through ingest's own writer, as a live reading would be stored."""
    from backend.ingest.core import AcceptedReading, Decision
    from backend.ingest.writer import prepare, write_batch
    from vitals.wire import new_measurement_id

    dev = conn.execute("SELECT id FROM devices WHERE agent_id = %s", (agent,)).fetchone()[0]
    rid = new_measurement_id()
    at = datetime.now(UTC) - timedelta(seconds=5)
    reading = AcceptedReading(rid, at, pid, agent, dev, kind, next(iter(comps.values())), comps, unit, True, at,
                              quality=quality)
    prepare(conn)
    write_batch(conn, [Decision(agent_id=agent, accepted=(reading,))], received_at=datetime.now(UTC))
    return rid


def _states(conn: psycopg.Connection[Any], ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    return dict(conn.execute("SELECT measurement_id, state FROM fut_outbox WHERE measurement_id = ANY(%s)",
                             (ids,)).fetchall())


FAST = FutConfig(base_url="", timeout_s=0.8, backoff_base_s=0.05, backoff_cap_s=0.4, batch=20, interval_s=0.05,
                 evaluation_wait_s=0)


def test_every_measurement_is_created_once_through_outage_lost_and_slow_answers(conn: psycopg.Connection[Any],
                                                                                database_url: str) -> None:
    link = _link(1000 + random.randrange(10**6))
    fake = FakeFut(known=_known(link), slow_s=1.5).start()
    # An outage first (10 refusals to serve), then a stored-but-lost answer, then a stored-but-late
    # one: the two cases where a naive retry would create a second measurement.
    fake.script.extend(["503"] * 10 + ["lost", "slow"])
    pid, agent = _citizen(conn)
    link_patient(conn, patient_id=pid, link=link)
    sender = FutSender(database_url=database_url,
                       client=FutClient(dataclasses.replace(FAST, base_url=fake.base_url, oauth=fake.oauth())))
    ids: list[uuid.UUID] = []
    sender.start()
    try:
        # Readings arrive while FUT is failing: ingest's writer stores each at once.
        for i in range(6):
            ids.append(_store(conn, pid, agent, "spo2", {"spo2": 90.0 + i}, "%"))
            ids.append(_store(conn, pid, agent, "blood_pressure", {"systolic": 140.0 + i, "diastolic": 85.0}, "mm[Hg]"))
        stored = conn.execute("SELECT count(*) FROM measurements WHERE id = ANY(%s)", (ids,)).fetchone()[0]
        assert stored == len(ids)
        wait_for(lambda: set(_states(conn, ids).values()) == {"sent"} and len(_states(conn, ids)) == len(ids),
                 timeout=60, what="every measurement sent")
    finally:
        sender.stop()
        fake.stop()
    keys = {f"urn:nearcare:measurement-id|urn:uuid:{i}" for i in ids}
    assert set(fake.stored) == keys  # no loss
    assert all(fake.created[k] == 1 for k in keys)  # no duplicate, even after "lost" and "slow"
    assert fake.answers["503"] == 10 and fake.answers["lost"] == 1 and fake.answers["slow"] == 1
    attempts = dict(conn.execute("SELECT measurement_id, attempts FROM fut_outbox WHERE measurement_id = ANY(%s)",
                                 (ids,)).fetchall())
    assert sum(attempts.values()) > len(ids)  # some were retried
    locations = conn.execute("SELECT count(*) FROM fut_outbox WHERE measurement_id = ANY(%s)"
                             " AND fut_location LIKE %s", (ids, fake.base_url + "/Observation/%")).fetchone()[0]
    assert locations == len(ids)
    bp = fake.stored[f"urn:nearcare:measurement-id|urn:uuid:{ids[1]}"]
    assert bp["code"]["coding"][0]["code"] == "ZZ3170"
    assert {c["code"]["coding"][0]["code"] for c in bp["component"]} == {"DNK05472", "DNK05473"}


def test_refusal_is_kept_with_its_reason_and_sent_again_on_request(conn: psycopg.Connection[Any]) -> None:
    n = 2000 + random.randrange(10**6)
    good, stale = _link(n), _link(n, service_request=f"{FUT}/ServiceRequest/gone-{n}")
    fake = FakeFut(known=_known(good)).start()
    client = FutClient(dataclasses.replace(FAST, base_url=fake.base_url, oauth=fake.oauth()))
    try:
        pid, agent = _citizen(conn)
        link_patient(conn, patient_id=pid, link=stale)
        rid = _store(conn, pid, agent, "weight", {"weight": 81.2}, "kg")
        glucose = _store(conn, pid, agent, "glucose", {"glucose": 6.1}, "mmol/L")
        assert enqueue_new(conn) >= 2
        assert enqueue_new(conn) == 0  # a second scan adds nothing
        send_due(conn, client)
        assert _states(conn, [rid, glucose]) == {rid: "refused", glucose: "not_submittable"}
        row = next(r for r in refused(conn) if r["measurement_id"] == rid)
        assert "ServiceRequest/gone-" in row["reason"] and row["outcome"]["resourceType"] == "OperationOutcome"
        why = conn.execute("SELECT reason FROM fut_outbox WHERE measurement_id = %s", (glucose,)).fetchone()[0]
        assert "no FUT (NPU/DNK) code for glucose" in why
        m = metrics(conn)
        assert m.refused >= 1 and m.not_submittable >= 1
        # Not retried by itself...
        send_due(conn, client)
        assert _states(conn, [rid]) == {rid: "refused"} and not fake.stored
        # ...until the link is put right and someone asks.
        link_patient(conn, patient_id=pid, link=good)
        assert retry_refused(conn, measurement_id=rid)
        send_due(conn, client)
        assert _states(conn, [rid]) == {rid: "sent"}
        assert list(fake.created.values()) == [1]
    finally:
        client.close()
        fake.stop()


def test_backoff_doubles_and_is_capped() -> None:
    rng = random.Random(7)
    waits = [backoff(a, base=1.0, cap=30.0, rng=rng).total_seconds() for a in range(1, 8)]
    assert 0.8 <= waits[0] <= 1.2 and 1.6 <= waits[1] <= 2.4 and 3.2 <= waits[2] <= 4.8
    assert all(w <= 30.0 for w in waits) and waits[-1] >= 24.0


def test_the_sender_runs_only_where_fut_is_configured(database_url: str, tmp_path: Path) -> None:
    from backend.fut import fut_services
    from backend.fut.sender import FutError, config_from_env

    assert fut_services(database_url, {}) == []
    secret_file = tmp_path / "fut-secret"
    secret_file.write_text("s3cret\n")
    env = {"NEARCARE_FUT_BASE_URL": "http://127.0.0.1:9/fhir/", "NEARCARE_FUT_TOKEN_URL": "http://127.0.0.1:9/token",
           "NEARCARE_FUT_CLIENT_ID": "nearcare", "NEARCARE_FUT_CLIENT_SECRET_FILE": str(secret_file),
           "NEARCARE_FUT_SCOPE": "measurement"}
    (sender,) = fut_services(database_url, env)
    cfg = sender.client.config
    assert cfg.base_url == "http://127.0.0.1:9/fhir"
    assert cfg.oauth is not None and cfg.oauth.client_secret == "s3cret" and cfg.oauth.scope == "measurement"
    assert "s3cret" not in repr(cfg)  # a logged config does not give the secret away
    sender.client.close()
    with pytest.raises(FutError, match="soon"):
        config_from_env({**env, "NEARCARE_FUT_TIMEOUT_S": "soon"})
    # FUT takes nothing without OAuth2: a base URL alone is a configuration error, not a silent no-op.
    with pytest.raises(FutError, match="NEARCARE_FUT_TOKEN_URL, NEARCARE_FUT_CLIENT_ID, NEARCARE_FUT_CLIENT_SECRET"):
        config_from_env({"NEARCARE_FUT_BASE_URL": "http://x"})


def test_a_cpr_number_echoed_by_fut_is_not_kept_or_logged(conn: psycopg.Connection[Any],
                                                          caplog: pytest.LogCaptureFixture) -> None:
    planted = "010170-1234"

    class EchoingFut(FakeFut):
        def check(self, body: Any) -> list[dict[str, Any]]:
            raise ValueError(f"Patient with CPR {planted} ({planted.replace('-', '')}) has no active EpisodeOfCare")

    link = _link(3000 + random.randrange(10**6))
    fake = EchoingFut(known=_known(link)).start()
    client = FutClient(dataclasses.replace(FAST, base_url=fake.base_url, oauth=fake.oauth()))
    try:
        pid, agent = _citizen(conn)
        link_patient(conn, patient_id=pid, link=link)
        rid = _store(conn, pid, agent, "spo2", {"spo2": 94.0}, "%")
        enqueue_new(conn)
        with caplog.at_level("DEBUG"):
            send_due(conn, client)
    finally:
        client.close()
        fake.stop()
    assert fake.answers["refused"] == 1  # FUT did answer with the CPR in it
    reason, outcome = conn.execute("SELECT reason, outcome::text FROM fut_outbox WHERE measurement_id = %s",
                                   (rid,)).fetchone()
    assert "has no active EpisodeOfCare" in reason and "<cpr>" in reason
    for text in (reason, outcome, caplog.text):
        assert planted not in text and planted.replace("-", "") not in text


def test_a_measurement_waits_for_its_evaluation_and_carries_its_reference_ranges(
        conn: psycopg.Connection[Any]) -> None:
    link = _link(4000 + random.randrange(10**6))
    fake = FakeFut(known=_known(link)).start()
    client = FutClient(dataclasses.replace(FAST, base_url=fake.base_url, oauth=fake.oauth(), evaluation_wait_s=600))
    try:
        pid, agent = _citizen(conn)
        link_patient(conn, patient_id=pid, link=link)
        rid = _store(conn, pid, agent, "spo2", {"spo2": 88.0}, "%")
        enqueue_new(conn)
        send_due(conn, client)
        assert _states(conn, [rid]) == {rid: "pending"} and not fake.stored  # not evaluated yet
        conn.execute(
            "INSERT INTO reading_evaluations (measurement_id, patient_id, measured_at, evaluated_at, thresholds, fired)"
            " SELECT id, patient_id, measured_at, now(), %s, '{}' FROM measurements WHERE id = %s",
            (json.dumps({"copd.spo2.absolute": {"red_low": 85, "yellow_low": 89}, "copd.pulse.absolute":
                         {"red_low": 40, "red_high": 131}}), rid),
        )
        send_due(conn, client)
        assert _states(conn, [rid]) == {rid: "sent"}
    finally:
        client.close()
        fake.stop()
    (obs,) = fake.stored.values()
    ranges = {r["type"]["coding"][0]["code"]: r for r in obs["referenceRange"]}
    assert ranges["RAL"]["low"]["value"] == 85.0 and ranges["GAL"]["low"]["value"] == 89.0
    assert "high" not in ranges["RAL"]  # the pulse rule's limits are not SpO2's


def test_each_device_reports_as_its_own_fut_device_and_an_unreachable_fut_is_retried(
        conn: psycopg.Connection[Any]) -> None:
    from backend.fut import link_device

    link = _link(5000 + random.randrange(10**6))
    own = f"{FUT}/Device/cuff-{random.randrange(10**6)}"
    fake = FakeFut(known=_known(link) | {own}).start()
    client = FutClient(dataclasses.replace(FAST, base_url=fake.base_url, oauth=fake.oauth()))
    try:
        pid, agent = _citizen(conn)
        link_patient(conn, patient_id=pid, link=link)
        dev = conn.execute("SELECT id FROM devices WHERE agent_id = %s", (agent,)).fetchone()[0]
        link_device(conn, device_id=dev, fut_device=own)
        rid = _store(conn, pid, agent, "pulse", {"pulse": 66.0}, "/min")
        enqueue_new(conn)
        fake.stop()  # FUT unreachable: connection refused
        send_due(conn, client)
        state, reason = conn.execute("SELECT state, reason FROM fut_outbox WHERE measurement_id = %s",
                                     (rid,)).fetchone()
        assert state == "retrying" and reason.startswith("FUT not reachable")
        fake.start()
        wait_for(lambda: (send_due(conn, client), _states(conn, [rid]))[1] == {rid: "sent"}, timeout=30,
                 what="sent once FUT is back")
    finally:
        client.close()
        fake.stop()
    (obs,) = fake.stored.values()
    assert obs["device"]["reference"] == own


def test_fut_takes_measurements_only_with_a_valid_token_which_is_renewed_on_expiry_and_on_401(
        conn: psycopg.Connection[Any]) -> None:
    link = _link(6000 + random.randrange(10**6))
    # Tokens live long while the counts are checked (a slow machine must not see one expire), and
    # one second where expiry itself is the point.
    fake = FakeFut(known=_known(link), token_ttl_s=300.0).start()
    bare = FutClient(dataclasses.replace(FAST, base_url=fake.base_url))  # no credentials at all
    wrong = FutClient(dataclasses.replace(FAST, base_url=fake.base_url, oauth=fake.oauth(secret="guess")))
    client = FutClient(dataclasses.replace(FAST, base_url=fake.base_url, oauth=fake.oauth(leeway_s=0)))
    try:
        pid, agent = _citizen(conn)
        link_patient(conn, patient_id=pid, link=link)
        first = _store(conn, pid, agent, "spo2", {"spo2": 95.0}, "%")
        enqueue_new(conn)

        def state(rid: uuid.UUID) -> tuple[str, str | None]:
            conn.execute("UPDATE fut_outbox SET next_attempt_at = now() WHERE measurement_id = %s", (rid,))
            return conn.execute("SELECT state, reason FROM fut_outbox WHERE measurement_id = %s", (rid,)).fetchone()

        # Without a token FUT refuses the request; the measurement is not blamed (retrying, not refused).
        send_due(conn, bare)
        assert state(first) == ("retrying", "FUT refused the access token (401)")
        assert fake.answers["401"] == 1 and not fake.stored
        # A wrong secret: the token endpoint refuses the client, nothing reaches the measurement service.
        send_due(conn, wrong)
        assert state(first) == ("retrying", "FUT's token endpoint refused the client: invalid_client")
        assert fake.answers["token 401"] == 1 and fake.answers["401"] == 1 and not fake.stored
        # The identity provider is down: nothing is sent, the measurement waits (retrying).
        fake.token_outage = True
        send_due(conn, client)
        assert state(first) == ("retrying", "FUT's token endpoint answered 503")
        assert fake.answers["token 503"] == 1 and not fake.stored and client.tokens_fetched == 0
        fake.token_outage = False
        # The right credentials: one token, fetched on first use, kept for the next measurement.
        send_due(conn, client)
        second = _store(conn, pid, agent, "spo2", {"spo2": 96.0}, "%")
        enqueue_new(conn)
        send_due(conn, client)
        assert _states(conn, [first, second]) == {first: "sent", second: "sent"}
        assert fake.tokens_issued == 1 and client.tokens_fetched == 1
        # The token expires (ttl 1 s): the client fetches a new one before sending, FUT sees no 401.
        fake.token_ttl_s = 1.0
        client.fetch_token()
        assert client._oauth is not None and client._oauth.token is not None
        wait_for(lambda: client._oauth.token.is_expired(leeway=0), timeout=10, what="the token's expiry")
        fake.token_ttl_s = 300.0
        third = _store(conn, pid, agent, "spo2", {"spo2": 97.0}, "%")
        enqueue_new(conn)
        send_due(conn, client)
        assert _states(conn, [third]) == {third: "sent"}
        assert fake.tokens_issued == 3 and client.tokens_fetched == 3 and fake.answers["401"] == 1
        # FUT ends the token early: the 401 makes the client fetch a new one and send again, once.
        fake.revoke_tokens()
        fourth = _store(conn, pid, agent, "spo2", {"spo2": 98.0}, "%")
        enqueue_new(conn)
        send_due(conn, client)
        assert _states(conn, [fourth]) == {fourth: "sent"}
        assert fake.answers["401"] == 2 and fake.tokens_issued == 4
    finally:
        for c in (bare, wrong, client):
            c.close()
        fake.stop()
    keys = {f"urn:nearcare:measurement-id|urn:uuid:{i}" for i in (first, second, third, fourth)}
    assert set(fake.stored) == keys and all(fake.created[k] == 1 for k in keys)
