"""SIGKILL the agent process in the middle of a burst: after a restart every reading reaches the
broker, and the backend's store holds each id exactly once."""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from vitals.wire import AgentState, parse_status

RUNNER = Path(__file__).with_name("burst_runner.py")
ROOT = Path(__file__).parents[2]
ADDRESS = "00:1C:05:00:00:09"


def _runner(spool: Path, mqtt_url: str, root: str, agent_id: str, count: int) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(RUNNER), str(spool), mqtt_url, root, agent_id, str(count)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


@pytest.fixture
def enrolled_agent(database_url: str) -> str:
    import psycopg

    from backend import registry

    tag = secrets.token_hex(4)
    with psycopg.connect(database_url, autocommit=True) as conn:
        p = registry.create_patient(conn, external_ref=f"kill-{tag}", name=f"Borger {tag}", programme="copd",
                                    municipality="Aarhus")
        a = registry.enrol_agent(conn, agent_id=f"kill-agent-{tag}", patient_id=p.id)
        registry.register_device(conn, agent_id=a.id, address=ADDRESS, model="Nonin 3230")
    return str(a.id)


@pytest.fixture
def ingest(settings):  # type: ignore[no-untyped-def]
    from backend.ingest.service import IngestService
    from backend.publisher import MqttPublisher

    publisher = MqttPublisher(broker=settings.broker, role="kill-test")
    publisher.start()
    service = IngestService(settings=settings, publisher=publisher,
                            client_id=f"kill-test-ingest-{secrets.token_hex(4)}")
    service.start()
    deadline = time.monotonic() + 30
    while not (service.ready()[0] and publisher.ready()[0]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert service.ready()[0] and publisher.ready()[0], "ingest did not get ready"
    try:
        yield service
    finally:
        service.stop()
        publisher.stop()


def test_sigkill_during_a_burst_loses_nothing_and_stores_each_id_once(
    tmp_path: Path, mqtt_url: str, broker, topics, collect, enrolled_agent: str, ingest, database_url: str
) -> None:
    agent_id = enrolled_agent
    col = collect(broker, f"{topics.root}/agents/{agent_id}/#")
    spool = tmp_path / "spool.sqlite"
    proc = _runner(spool, mqtt_url, topics.root, agent_id, 600)
    minted: set[uuid.UUID] = set()
    appended: set[uuid.UUID] = set()
    assert proc.stdout is not None

    def take(line: str) -> None:
        word, _, rest = line.strip().partition(" ")
        if word == "MINT":
            minted.add(uuid.UUID(rest))
        elif word == "APPENDED":
            appended.add(uuid.UUID(rest))

    for line in proc.stdout:
        take(line)
        if len(appended) >= 250:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    for line in proc.stdout:  # what it printed between our last read and the kill
        take(line)
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    # The broker noticed the dead socket and published the Last Will.
    assert col.wait_for(lambda: any(parse_status(p).state is AgentState.OFFLINE for p in col.payloads("/status")), 10)
    received_before_restart = set(col.measurement_ids())
    assert received_before_restart < minted, "the kill should land while readings were still queued"

    again = _runner(spool, mqtt_url, topics.root, agent_id, 0)
    out, _ = again.communicate(timeout=60)
    assert again.returncode == 0 and "DRAINED" in out, out

    def complete() -> bool:
        return appended <= set(col.measurement_ids())

    assert col.wait_for(complete, 20), f"{len(appended - set(col.measurement_ids()))} appended readings missing"
    received = set(col.measurement_ids())
    # Every durable append arrived; nothing that was never minted did; at most the one reading
    # whose append committed just before the kill (but was not yet printed) comes on top.
    assert appended <= received <= minted
    assert len(received - appended) <= 1

    import psycopg

    def stored() -> tuple[int, int]:
        with psycopg.connect(database_url, autocommit=True) as conn:
            row = conn.execute("SELECT count(*), count(DISTINCT id) FROM measurements WHERE agent_id = %s",
                               (agent_id,)).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    deadline = time.monotonic() + 30
    while stored()[0] < len(received) and time.monotonic() < deadline:
        time.sleep(0.2)
    total, distinct = stored()
    assert total == distinct == len(received), (total, distinct, len(received))
