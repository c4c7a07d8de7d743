"""``nearcare backend ingest`` as real processes: SIGKILL under load, and two workers on one
shared subscription, fed through the real agent code (spool → uplink), against a private
Mosquitto. Workers own no broker state (clean sessions): what a killed worker held comes back
because its agents hear no receipt and send it again."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from backend.embedded import free_port
from edge_agent.spool import Spool
from edge_agent.uplink import Uplink
from vitals.broker import parse_broker_url
from vitals.wire import Device, Measurement, new_measurement_id

ROOT = Path(__file__).parents[3]




class Worker:
    def __init__(self, env: dict[str, str], *, worker: int, client_id: str, metrics_port: int | None = None) -> None:
        self.env, self.worker, self.client_id, self.metrics_port = env, worker, client_id, metrics_port
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> Worker:
        # Store only: these tests are about storage, and must not wait on the rules' speed.
        cmd = [sys.executable, "-m", "nearcare_cli", "backend", "ingest", "--no-migrate",
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


class HomeAgents:
    """The real agent code for each home (spool → uplink → broker), fed by a thread at full speed.

    Readings leave a spool only on the backend's receipt, and a sent reading with no receipt is
    sent again after ``resend_after_s``: this is what makes a killed worker lose nothing."""

    def __init__(self, tmp: Path, broker_url: str, topics: Any, homes: list[Any], *, per_home: int,
                 batch: int = 10, resend_after_s: float = 2.0) -> None:
        self.homes, self.per_home, self.batch = homes, per_home, batch
        self.spools = [Spool(tmp / f"{h.agent_id}.sqlite") for h in homes]
        self.uplinks = [
            Uplink(agent_id=h.agent_id, broker=parse_broker_url(broker_url), topics=topics, spool=sp,
                   batch_size=batch, reconnect_min_s=0.2, reconnect_max_s=1.0, resend_after_s=resend_after_s,
                   resend_max_s=resend_after_s * 4).start()
            for h, sp in zip(homes, self.spools, strict=True)
        ]
        self.ids: list[str] = []
        self.feeder = threading.Thread(target=self._feed, daemon=True)

    def _feed(self) -> None:
        at = datetime.now(UTC) - timedelta(hours=1)
        for i in range(0, self.per_home, self.batch):
            for home, spool in zip(self.homes, self.spools, strict=True):
                ms = [Measurement(id=new_measurement_id(), kind="spo2", values={"spo2": 95.0}, unit="%",
                                  measured_at=at + timedelta(milliseconds=i + j), device_clock_trusted=True,
                                  received_at=at, device=Device(address=home.address))
                      for j in range(self.batch)]
                spool.append_many(ms)
                self.ids += [str(m.id) for m in ms]

    @property
    def total(self) -> int:
        return len(self.homes) * self.per_home

    def unconfirmed(self) -> int:
        return sum(sp.depth for sp in self.spools)

    def close(self) -> None:
        for up in self.uplinks:
            up.stop()
        for sp in self.spools:
            sp.close()


@pytest.fixture
def home_agents(tmp_path: Path, topics: Any) -> Iterator[Callable[..., HomeAgents]]:
    made: list[HomeAgents] = []

    def make(broker_url: str, homes: list[Any], **kw: Any) -> HomeAgents:
        h = HomeAgents(tmp_path, broker_url, topics, homes, **kw)
        made.append(h)
        return h

    try:
        yield make
    finally:
        for h in made:
            h.close()


def test_sigkill_mid_batch_under_load_loses_and_doubles_nothing(
    own_broker: Callable[..., Any], workers: Callable[..., Worker], make_home: Callable[..., Any],
    home_agents: Callable[..., HomeAgents], db_count: Callable[..., int], wait: Callable[..., Any],
) -> None:
    broker = own_broker()
    homes = [make_home(prefix="kill") for _ in range(4)]
    agents = [h.agent_id for h in homes]
    worker = workers(broker.url, worker=0).start()
    load = home_agents(broker.url, homes, per_home=2500)
    total = load.total

    def stored() -> int:
        return db_count("SELECT count(*) FROM measurements WHERE agent_id = ANY(%s)", (agents,))

    load.feeder.start()
    wait(lambda: stored() >= total // 5, timeout=60, what="a fifth stored")
    worker.kill()  # batches are committing back to back: this lands in the middle of one
    at_kill = stored()
    assert at_kill < total, "the kill must land while readings are still flowing"
    # A new worker (a new client id: a clean session owns nothing, so nothing waits for the old one).
    again = workers(broker.url, worker=0, metrics_port=free_port()).start()
    load.feeder.join(60)
    assert not load.feeder.is_alive()
    try:
        wait(lambda: load.unconfirmed() == 0, timeout=120, what="every reading confirmed to its agent")
    except AssertionError:
        raise AssertionError(f"stored {stored()} of {total}; at kill {at_kill}; "
                             f"{load.unconfirmed()} unconfirmed") from None
    assert stored() == total
    assert db_count("SELECT count(DISTINCT id) FROM measurements WHERE agent_id = ANY(%s)", (agents,)) == total
    assert db_count("SELECT count(*) FROM measurements WHERE id = ANY(%s::uuid[])", (load.ids,)) == total
    assert db_count("SELECT count(*) FROM dead_letters WHERE agent_id = ANY(%s)", (agents,)) == 0
    # The new worker stored exactly what the killed one had not committed (a COMMIT sent just
    # before the kill may still have landed after at_kill was read); its re-sends of what the
    # killed one committed without a receipt were absorbed as duplicates.
    by_new = again.metric("nearcare_ingest_readings_total", '{outcome="stored"}')
    assert 0 < by_new <= total - at_kill


def test_two_workers_on_a_shared_subscription_store_each_reading_once(
    own_broker: Callable[..., Any], workers: Callable[..., Worker], make_home: Callable[..., Any],
    home_agents: Callable[..., HomeAgents], db_count: Callable[..., int], wait: Callable[..., Any],
) -> None:
    broker = own_broker()
    homes = [make_home(prefix="pair") for _ in range(4)]
    agents = [h.agent_id for h in homes]
    w0 = workers(broker.url, worker=0, metrics_port=free_port()).start()
    w1 = workers(broker.url, worker=1, metrics_port=free_port()).start()
    load = home_agents(broker.url, homes, per_home=750, batch=5)
    load.feeder.start()
    load.feeder.join(60)
    total = load.total
    wait(lambda: load.unconfirmed() == 0, timeout=90, what="every reading confirmed to its agent")
    assert db_count("SELECT count(*) FROM measurements WHERE agent_id = ANY(%s)", (agents,)) == total
    assert db_count("SELECT count(*) FROM measurements WHERE id = ANY(%s::uuid[])", (load.ids,)) == total
    name, stored = "nearcare_ingest_readings_total", '{outcome="stored"}'
    by0, by1 = w0.metric(name, stored), w1.metric(name, stored)
    dup = w0.metric(name, '{outcome="duplicate"}') + w1.metric(name, '{outcome="duplicate"}')
    assert by0 > 0 and by1 > 0, f"both workers must take a share (got {by0} and {by1})"
    assert by0 + by1 == total and dup == 0
