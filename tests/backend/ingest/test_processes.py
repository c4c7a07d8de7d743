"""``nearcare backend ingest`` as real processes: SIGKILL under load, and two workers on one
shared subscription. Both against a private Mosquitto configured as deploy/ should be
(``max_queued_messages 0``: the defaults drop QoS 1 messages past 1000 queued per session)."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.embedded import free_port

ROOT = Path(__file__).parents[3]




class Worker:
    def __init__(self, env: dict[str, str], *, worker: int, client_id: str, metrics_port: int | None = None) -> None:
        self.env, self.worker, self.client_id, self.metrics_port = env, worker, client_id, metrics_port
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> Worker:
        # Store only: these tests are about storage, and must not wait on the rules' speed.
        cmd = [sys.executable, "-m", "nearcare_cli", "backend", "ingest", "--no-migrate", "--no-sinks",
               "--worker", str(self.worker), "--client-id", self.client_id]
        if self.metrics_port:
            cmd += ["--metrics-port", str(self.metrics_port)]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("ingest ready"), f"ingest worker did not get ready: {line!r}"
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None and self.proc.stdout:
            self.proc.stdout.close()

    def metric(self, name: str, labels: str = "") -> float:
        body = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read().decode()
        m = re.search(rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+]+)$", body, re.M)
        return float(m.group(1)) if m else 0.0


@pytest.fixture
def workers(database_url: str, topics: Any) -> Iterator[Callable[..., Worker]]:
    made: list[Worker] = []
    group = f"ingest-{secrets.token_hex(3)}"

    def make(
        mqtt_url: str, *, worker: int = 0, client_id: str | None = None, metrics_port: int | None = None
    ) -> Worker:
        env = {**os.environ, "NEARCARE_DATABASE_URL": database_url, "NEARCARE_MQTT_URL": mqtt_url,
               "NEARCARE_TOPIC_ROOT": topics.root, "NEARCARE_INGEST_GROUP": group, "NEARCARE_LOG_LEVEL": "WARNING",
               "NEARCARE_INGEST_BATCH_SIZE": "500", "NEARCARE_INGEST_BATCH_WINDOW_MS": "50"}
        w = Worker(env, worker=worker, client_id=client_id or f"{group}-{worker}", metrics_port=metrics_port)
        made.append(w)
        return w

    try:
        yield make
    finally:
        for w in made:
            w.stop()


def _publish_load(publisher: Any, topics: Any, homes: list[Any], make_envelope: Callable[..., Any],
                  messages: int, per_message: int) -> tuple[list[str], threading.Thread]:
    """Envelopes are built up front; a thread publishes them at full speed (QoS 1)."""
    plan = []
    ids: list[str] = []
    for i in range(messages):
        home = homes[i % len(homes)]
        env = make_envelope(home.agent_id, per_message)
        ids += [m["id"] for m in env["measurements"]]
        plan.append((topics.measurements(home.agent_id), env))

    def run() -> None:
        infos = [publisher.publish(t, e, wait=False) for t, e in plan]
        for info in infos:
            info.wait_for_publish(60)

    thread = threading.Thread(target=run, daemon=True)
    return ids, thread


def test_sigkill_mid_batch_under_load_loses_and_doubles_nothing(
    own_broker: Callable[..., Any], workers: Callable[..., Worker], make_home: Callable[..., Any],
    make_envelope: Callable[..., Any], make_publisher: Callable[..., Any], topics: Any,
    db_count: Callable[..., int], wait: Callable[..., Any],
) -> None:
    broker = own_broker()
    homes = [make_home(prefix="kill") for _ in range(4)]
    agents = [h.agent_id for h in homes]
    worker = workers(broker.url, worker=0).start()
    publisher = make_publisher(broker.url)
    ids, load = _publish_load(publisher, topics, homes, make_envelope, messages=1500, per_message=10)
    total = len(ids)

    def stored() -> int:
        return db_count("SELECT count(*) FROM measurements WHERE agent_id = ANY(%s)", (agents,))

    load.start()
    wait(lambda: stored() >= total // 5, timeout=60, what="a fifth stored")
    worker.kill()  # batches are committing back to back: this lands in the middle of one
    time.sleep(0.5)  # a COMMIT sent just before the kill may still land on the server
    at_kill = stored()
    assert at_kill < total, "the kill must land while readings are still flowing"
    again = workers(broker.url, worker=0, client_id=worker.client_id, metrics_port=free_port()).start()
    load.join(60)
    assert not load.is_alive()
    try:
        wait(lambda: stored() >= total, timeout=90, what="every published reading stored")
    except AssertionError:
        raise AssertionError(f"stored {stored()} of {total}; at kill {at_kill}") from None
    time.sleep(1.0)  # anything redelivered late would show up now
    assert stored() == total
    assert db_count("SELECT count(DISTINCT id) FROM measurements WHERE agent_id = ANY(%s)", (agents,)) == total
    assert db_count("SELECT count(*) FROM measurements WHERE id = ANY(%s::uuid[])", (ids,)) == total
    assert db_count("SELECT count(*) FROM dead_letters WHERE agent_id = ANY(%s)", (agents,)) == 0
    # The restarted worker (same session) stored exactly the remainder; whatever the killed one
    # had committed but not acknowledged came back and was absorbed as duplicates.
    assert again.metric("nearcare_ingest_readings_total", '{outcome="stored"}') == total - at_kill


def test_two_workers_on_a_shared_subscription_store_each_reading_once(
    own_broker: Callable[..., Any], workers: Callable[..., Worker], make_home: Callable[..., Any],
    make_envelope: Callable[..., Any], make_publisher: Callable[..., Any], topics: Any,
    db_count: Callable[..., int], wait: Callable[..., Any],
) -> None:
    broker = own_broker()
    homes = [make_home(prefix="pair") for _ in range(4)]
    agents = [h.agent_id for h in homes]
    w0 = workers(broker.url, worker=0, metrics_port=free_port()).start()
    w1 = workers(broker.url, worker=1, metrics_port=free_port()).start()
    publisher = make_publisher(broker.url)
    ids, load = _publish_load(publisher, topics, homes, make_envelope, messages=600, per_message=5)
    load.start()
    load.join(60)
    total = len(ids)
    wait(lambda: db_count("SELECT count(*) FROM measurements WHERE agent_id = ANY(%s)", (agents,)) >= total,
         timeout=60, what="every reading stored")
    time.sleep(0.5)
    assert db_count("SELECT count(*) FROM measurements WHERE agent_id = ANY(%s)", (agents,)) == total
    assert db_count("SELECT count(*) FROM measurements WHERE id = ANY(%s::uuid[])", (ids,)) == total
    name, stored = "nearcare_ingest_readings_total", '{outcome="stored"}'
    by0, by1 = w0.metric(name, stored), w1.metric(name, stored)
    dup = w0.metric(name, '{outcome="duplicate"}') + w1.metric(name, '{outcome="duplicate"}')
    assert by0 > 0 and by1 > 0, f"both workers must take a share (got {by0} and {by1})"
    assert by0 + by1 == total and dup == 0
