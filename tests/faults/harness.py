"""The fault matrix: every reading measured at home is stored exactly once, whatever fails.

A private PostgreSQL cluster, a private Mosquitto 2.0 with the deploy configuration's queueing
and persistence settings, ``nearcare backend migrate``, the simulated citizens enrolled, two
``nearcare backend ingest`` workers on the shared subscription, and simulated agents publishing
continuously through the real agent code (:mod:`tests.faults.agents`). Each fault is injected in
turn while they publish; then, within a deadline, every id generated since the previous fault is
looked up in PostgreSQL: stored (``measurements``), held with a reason (``rejected_readings``),
dead-lettered (``dead_letters``, by id inside the payload), lost (none of those) or duplicated
(more than one row in ``measurements``, or in both ``measurements`` and ``rejected_readings``).

    .venv/bin/python -m tests.faults.harness            # the fast variants (as in `make test`)
    .venv/bin/python -m tests.faults.harness --proof    # the long ones (`make proof`, ~10 min)

Prints one row per fault and exits 1 if any reading was lost or duplicated. The fast subset runs
in pytest as ``tests/faults/test_fault_matrix.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import random
import re
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from backend.embedded import free_port, start_mosquitto, stop_process, wait_port

ROOT = Path(__file__).resolve().parents[2]
PG_BIN = Path(os.environ.get("NEARCARE_PG_BIN", "/usr/lib/postgresql/15/bin"))
DEPLOY_CONF = ROOT / "deploy" / "mosquitto" / "mosquitto.conf"

# The deploy settings that decide what the broker keeps, queues and saves. Listeners, TLS,
# passwords, ACLs and the persistence location are the deployment's own, not the matrix's.
BROKER_SETTINGS = frozenset({
    "persistence", "autosave_interval", "autosave_on_changes", "persistent_client_expiration",
    "max_queued_messages", "max_queued_bytes", "max_inflight_messages", "max_inflight_bytes",
    "message_size_limit", "queue_qos0_messages", "upgrade_outgoing_qos", "max_keepalive",
    "retain_available", "set_tcp_nodelay",
})

UUID_RE = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class HarnessError(Exception):
    """The matrix could not set up or drive its servers (not a finding about the platform)."""


def until(condition: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise HarnessError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


# -- the variants ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    name: str
    agents: int
    """Citizens publishing continuously, split over ``groups`` agent processes."""
    groups: int
    rate: float
    """Spot checks per second per citizen (one or two measurements each)."""
    short_stop_s: float
    long_stop_s: float
    queued_s: float
    """How long the agents publish to a broker whose ingest workers are stopped before its SIGKILL."""
    ingest_kills: int
    pg_down_s: float
    agent_kills: int
    offline_agents: int
    offline_hours: float
    offline_spot_every_s: float
    """A spot check every this many simulated seconds while offline (300: 864 in 72 hours)."""
    offline_replay_s: float
    """Real seconds the offline agents take to live through ``offline_hours``."""
    margin_s: float
    """Load after each fault before the window closes."""
    stall_s: float
    """Missing ids in no spool and no progress for this long: lost, stop waiting."""
    deadline_s: float
    uplink: tuple[str, ...] = ()
    """``name=value`` options for the agents' Uplink (production defaults when empty)."""

    def with_(self, **changes: Any) -> Plan:
        return dataclasses.replace(self, **changes)


FAST = Plan(
    name="fast", agents=4, groups=2, rate=1.0, short_stop_s=3, long_stop_s=20, queued_s=4, ingest_kills=1,
    pg_down_s=0, agent_kills=2, offline_agents=2, offline_hours=72, offline_spot_every_s=900,
    offline_replay_s=6, margin_s=2, stall_s=10, deadline_s=60,
    # Backoff and re-send scaled down with the outages, so the fast subset stays fast. The long
    # stop (20 s) still outlasts the agents' longest backoff (5 s), and the ingest workers (paho's
    # backoff doubles to 16 s by then) come back several seconds after the agents, as in the field.
    uplink=("reconnect_max_s=5", "resend_after_s=5", "resend_max_s=20"),
)
# The long stop is the 3 minutes of the reproduction, to the second where it hurts most:
# the agents retry 1, 3, 7, 15, 31, 63, 123, 183 s after losing the broker (doubling to 60 s), the
# ingest workers (paho, doubling to 30 s) at ..., 151, 181, 211 s. Back at 182 s, the agents
# reconnect at 183 s and ingest only at 211 s: 28 s in which nobody holds the shared subscription.
PROOF = Plan(
    name="proof", agents=24, groups=2, rate=1.0, short_stop_s=3, long_stop_s=182, queued_s=30, ingest_kills=3,
    pg_down_s=30, agent_kills=5, offline_agents=4, offline_hours=72, offline_spot_every_s=300,
    offline_replay_s=60, margin_s=5, stall_s=30, deadline_s=420,
)


# -- servers -----------------------------------------------------------------------------------


class PostgresCluster:
    """A private PostgreSQL cluster (initdb under ``workdir``) on a free port; run as the
    ``postgres`` user when we are root (initdb refuses root)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.data = workdir / "data"
        self.port = free_port()
        self.log = workdir / "postgres.log"
        self.as_root = os.geteuid() == 0

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/nearcare"

    def _run(self, *cmd: str, timeout: float = 120) -> None:
        argv = [str(PG_BIN / cmd[0]), *cmd[1:]]
        if self.as_root:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=self.workdir)
        if out.returncode != 0:
            raise HarnessError(f"{' '.join(cmd[:1])} failed ({out.returncode}): {out.stderr.strip()[-2000:]}")

    def init(self) -> None:
        if not (PG_BIN / "initdb").exists():
            raise HarnessError(f"no PostgreSQL server binaries in {PG_BIN} (Debian: postgresql-15; or NEARCARE_PG_BIN)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.as_root:
            shutil.chown(self.workdir, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                       f"unix_socket_directories = '{self.workdir}'\nmax_connections = 60\n"
                       "shared_buffers = 64MB\nfsync = on\nsynchronous_commit = on\n")

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")
        wait_port(self.port, timeout=30)

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def create_database(self) -> None:
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE nearcare")

    def close(self) -> None:
        pid_file = self.data / "postmaster.pid"
        if pid_file.exists():
            with contextlib.suppress(HarnessError, subprocess.TimeoutExpired):
                self.stop("immediate")
            with contextlib.suppress(OSError, ValueError):
                pid = int(pid_file.read_text().split()[0])
                os.kill(pid, signal.SIGKILL)


def deploy_broker_settings(conf: Path = DEPLOY_CONF) -> list[str]:
    """The global lines of the deploy configuration that :data:`BROKER_SETTINGS` names."""
    out = []
    for line in conf.read_text().splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "listener":
            break  # what follows belongs to a listener
        if words[0] in BROKER_SETTINGS:
            out.append(" ".join(words))
    return out


class Broker:
    """A private Mosquitto with the deploy settings, persisting to a file in ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        self.settings = deploy_broker_settings()
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0
        workdir.mkdir(parents=True, exist_ok=True)
        lines = [*self.settings, f"listener {self.port} 127.0.0.1", "allow_anonymous true",
                 f"persistence_location {workdir}/", "persistence_file mosquitto.db",
                 "log_type error", "log_type warning", "log_type notice", "log_type information",
                 "log_timestamp_format %H:%M:%S"]
        if os.geteuid() == 0:
            lines.append("user root")  # keep our own (root-owned) persistence directory writable
        self.conf.write_text("\n".join(lines) + "\n")

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = start_mosquitto(self.conf, self.port, timeout=30)
        self.runs += 1

    def _keep_log(self) -> None:
        log = self.workdir / "mosquitto.log"
        if log.exists():  # start_mosquitto writes a fresh log on each start
            log.rename(self.workdir / f"mosquitto.{self.runs}.log")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=30)
            self.proc = None
            self._keep_log()

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(30)
            self.proc = None
            self._keep_log()

    def who_came_back_first(self) -> str:
        """From this run's log: how long before the first ingest worker the first agent connected."""
        seen: dict[str, int] = {}
        log = self.workdir / "mosquitto.log"
        for line in (log.read_text(errors="replace").splitlines() if log.exists() else []):
            m = re.match(r"(\d\d):(\d\d):(\d\d): New client connected .* as nearcare-(agent|ingest)-", line)
            if m:
                seen.setdefault(m[4], int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3]))
        if len(seen) < 2:
            return ""
        early = seen["ingest"] - seen["agent"]
        if early == 0:
            return "agents and ingest back within the same second"
        return f"agents back {early} s before ingest" if early > 0 else f"ingest back {-early} s before the agents"


class Worker:
    """One ``nearcare backend ingest`` process; its number decides its MQTT client id."""

    def __init__(self, number: int, env: dict[str, str], workdir: Path) -> None:
        self.number = number
        self.env = env
        self.log = workdir / f"ingest-{number}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            offset = out.tell()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "nearcare_cli", "backend", "ingest", "--no-migrate",
                 "--worker", str(self.number)],
                cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
            )

        def started() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise HarnessError(f"ingest worker {self.number} exited ({self.proc.returncode}); see {self.log}")
            with self.log.open("rb") as f:
                f.seek(offset)
                return any(line.startswith(b"ingest ") for line in f)

        until(started, timeout=60, what=f"ingest worker {self.number} to start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(30)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
            self.proc = None


class AgentGroup:
    """One load-generator process (:mod:`tests.faults.agents`) and its spool directory."""

    def __init__(self, name: str, *, first: int, count: int, spool_dir: Path, mqtt_url: str, topic_root: str,
                 extra: tuple[str, ...], env: dict[str, str]) -> None:
        self.name = name
        self.first = first
        self.count = count
        self.spool_dir = spool_dir
        self.log = spool_dir.parent / f"{name}.log"
        self.argv = [sys.executable, "-m", "tests.faults.agents", "--spool-dir", str(spool_dir), "--mqtt-url",
                     mqtt_url, "--topic-root", topic_root, "--first", str(first), "--citizens", str(count), *extra]
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = time.monotonic()

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        self.started = time.monotonic()

    def settled(self, seconds: float) -> bool:
        """Stopped for good, or running for ``seconds`` since its last start: a restarted
        simulator generates again, with the same ids, what it logged but had not spooled when
        it was killed, so until then a missing id may be in no spool yet."""
        return self.proc is None or time.monotonic() - self.started > seconds

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(30)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
            self.proc = None

    def kill_mid_write(self, timeout: float = 10.0) -> bool:
        """SIGKILL the process the moment one of its agents logs a new id, which it does just
        before appending that reading to its spool. True when the kill landed before the append
        committed (the id is not in that agent's outbox): the restart must generate it again."""
        sizes = {p: p.stat().st_size for p in self.spool_dir.glob("*.ids")}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for path, size in sizes.items():
                if path.stat().st_size > size:
                    self.kill()
                    lines = path.read_bytes().rsplit(b"\n", 2)
                    last = lines[-2].split()[-1].decode() if len(lines) >= 2 else ""
                    return bool(last) and last not in self._outbox(path.with_suffix(".sqlite"))
            # No sleep: the append after the id is logged takes a millisecond or two.
        self.kill()
        return False

    @staticmethod
    def _outbox(path: Path) -> set[str]:
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
            try:
                return {r[0] for r in conn.execute("SELECT id FROM outbox")}
            finally:
                conn.close()
        except sqlite3.Error:
            return set()  # being created or recovered right now: the next look sees it

    def spooled(self) -> tuple[int, set[str]]:
        """(rows in all this group's outboxes, their ids), read from the spool files."""
        rows, ids = 0, set()
        for path in self.spool_dir.glob("*.sqlite"):
            found = self._outbox(path)
            rows += len(found)
            ids.update(found)
        return rows, ids


# -- accounting --------------------------------------------------------------------------------


class IdLedger:
    """Every generated id with the time it was generated, read incrementally from the agents'
    ``*.ids`` files (an id generated again after a restart keeps its first time)."""

    def __init__(self, directories: Callable[[], list[Path]]) -> None:
        self.directories = directories
        self.first_seen: dict[str, float] = {}
        self._offsets: dict[Path, int] = {}

    def refresh(self) -> None:
        for d in self.directories():
            for path in d.glob("*.ids"):
                offset = self._offsets.get(path, 0)
                with path.open("rb") as f:
                    f.seek(offset)
                    data = f.read()
                end = data.rfind(b"\n") + 1  # a line cut by a SIGKILL is read once it is whole
                for line in data[:end].splitlines():
                    ts, _, mid = line.decode().partition(" ")
                    self.first_seen.setdefault(mid, float(ts))
                self._offsets[path] = offset + end

    def between(self, start: float, end: float) -> set[str]:
        self.refresh()
        return {i for i, t in self.first_seen.items() if start < t <= end}


@dataclass
class Accounting:
    stored: dict[str, int] = field(default_factory=dict)
    held: dict[str, str] = field(default_factory=dict)
    dead: set[str] = field(default_factory=set)

    def accounted(self) -> set[str]:
        return set(self.stored) | set(self.held) | self.dead

    def duplicated(self) -> set[str]:
        return {i for i, n in self.stored.items() if n > 1} | (set(self.stored) & set(self.held))


class Store:
    """Reads the private database; survives its restarts (an unreachable database is retried)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._dead_read: set[int] = set()
        self.dead_rows: dict[str, int] = {}
        """id -> dead_letters rows naming it (a re-sent refused reading is refused again)."""

    def account(self, ids: set[str]) -> Accounting:
        keys = [uuid.UUID(i) for i in ids]
        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            stored = {str(i): int(n) for i, n in conn.execute(
                "SELECT id, count(*) FROM measurements WHERE id = ANY(%s) GROUP BY id", (keys,))}
            held = {str(i): str(r) for i, r in conn.execute(
                "SELECT id, reason FROM rejected_readings WHERE id = ANY(%s)", (keys,))}
            # Two workers commit concurrently, so a lower serial may become visible after a higher
            # one: look back a little and skip the rows already read.
            since = max(self._dead_read, default=0) - 1000
            new = [int(r[0]) for r in conn.execute("SELECT id FROM dead_letters WHERE id > %s", (since,))
                   if int(r[0]) not in self._dead_read]
            for row_id, payload in conn.execute("SELECT id, payload FROM dead_letters WHERE id = ANY(%s)", (new,)):
                self._dead_read.add(int(row_id))
                for m in set(UUID_RE.findall(bytes(payload).lower())):
                    self.dead_rows[m.decode()] = self.dead_rows.get(m.decode(), 0) + 1
        return Accounting(stored=stored, held=held, dead=set(self.dead_rows) & ids)


@dataclass(frozen=True)
class Row:
    fault: str
    generated: int
    stored: int
    held: int
    dead_letters: int
    lost: int
    duplicated: int
    recovered_s: float | None
    """From the end of the fault until every id of its window was accounted for (None: never)."""
    note: str = ""
    lost_ids: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and self.generated > 0


HEADER = (f"{'fault':<58} {'generated':>9} {'stored':>7} {'kept elsewhere':>16} {'lost':>6} {'duplicated':>10} "
          f"{'time to recover':>15}")


def format_row(r: Row) -> str:
    kept = f"{r.held + r.dead_letters} ({r.held}h/{r.dead_letters}d)"
    rec = "never" if r.recovered_s is None else f"{r.recovered_s:.1f} s"
    line = (f"{r.fault:<58} {r.generated:>9} {r.stored:>7} {kept:>16} {r.lost:>6} {r.duplicated:>10} "
            f"{rec:>15}")
    return line + (f"   {r.note}" if r.note else "")


# -- the matrix --------------------------------------------------------------------------------


class FaultMatrix:
    """The running platform under continuous load, and one method per fault."""

    def __init__(self, plan: Plan, *, workdir: Path | None = None, log: Callable[[str], None] = print) -> None:
        self.plan = plan
        self.say = log
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="nearcare-faults-"))
        self.rows: list[Row] = []
        self.cut = time.time()
        self.groups: list[AgentGroup] = []
        self.offline: AgentGroup | None = None
        self._stack = contextlib.ExitStack()
        self.pg = PostgresCluster(self.workdir / "pg")
        self.broker = Broker(self.workdir / "broker")
        self.topic_root = f"nearcare-faults-{secrets.token_hex(3)}/v1"
        self.store = Store(self.pg.url)
        self.ledger = IdLedger(lambda: [g.spool_dir for g in self.all_groups()])
        self.workers: list[Worker] = []

    def all_groups(self) -> list[AgentGroup]:
        return [*self.groups, *([self.offline] if self.offline else [])]

    # -- setting up and tearing down ------------------------------------------------------------

    def __enter__(self) -> FaultMatrix:
        try:
            self.setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def setup(self) -> None:
        p = self.plan
        t0 = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o755)  # the cluster below runs as the postgres user when we are root
        self.pg.init()
        self._stack.callback(self.pg.close)
        self.pg.start()
        self.pg.create_database()
        self.broker.start()
        self._stack.callback(self.broker.stop)
        env = {**os.environ, "NEARCARE_DATABASE_URL": self.pg.url, "NEARCARE_MQTT_URL": self.broker.url,
               "NEARCARE_TOPIC_ROOT": self.topic_root, "NEARCARE_INGEST_GROUP": f"faults-{secrets.token_hex(2)}",
               "NEARCARE_LOG_LEVEL": "INFO", "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"}
        self.env = env
        migrate = subprocess.run([sys.executable, "-m", "nearcare_cli", "backend", "migrate"], cwd=ROOT, env=env,
                                 capture_output=True, text=True, timeout=180)
        if migrate.returncode != 0:
            raise HarnessError(f"nearcare backend migrate failed:\n{migrate.stdout}{migrate.stderr}")
        from backend.demo_data import _seed_cohort
        from backend.settings import Settings

        _seed_cohort(Settings(database_url=self.pg.url, mqtt_url=self.broker.url, topic_root=self.topic_root),
                     citizens=p.agents + p.offline_agents)
        self.special = self._hold_and_refuse_some()
        self.workers = [Worker(n, env, self.workdir) for n in (0, 1)]
        for w in self.workers:
            self._stack.callback(w.stop)
            w.start()
        per = -(-p.agents // p.groups)
        extra = ("--rate", str(p.rate), *(a for u in p.uplink for a in ("--uplink", u)))
        for g in range(p.groups):
            first, count = g * per, min(per, p.agents - g * per)
            if count <= 0:
                break
            group = AgentGroup(f"agents-{g}", first=first, count=count, spool_dir=self.workdir / f"agents-{g}",
                               mqtt_url=self.broker.url, topic_root=self.topic_root, extra=extra, env=env)
            self._stack.callback(group.stop)
            group.start()
            self.groups.append(group)
        until(lambda: len(self.ledger.between(0, time.time())) > 0, timeout=60, what="the first generated reading")
        self.cut = time.time()
        uplink = ", ".join(p.uplink) or "production defaults"
        self.say(f"fault matrix ({p.name}): {p.agents} agents in {len(self.groups)} processes, {p.rate:g} spot "
                 f"check/s each; 2 ingest workers; private PostgreSQL {self.pg.port}, private Mosquitto "
                 f"{self.broker.port} with deploy settings [{'; '.join(self.broker.settings)}]; uplink: {uplink}; "
                 f"{self.special}; "
                 f"setup {time.monotonic() - t0:.0f} s; logs in {self.workdir}")

    def _hold_and_refuse_some(self) -> str:
        """So that "kept elsewhere" is exercised under every fault too: one citizen's scale is
        mapped as shared with the citizen on another user slot than the one it reports (their
        weights are held, reason ``unmapped_user``) and the last load agent is deactivated
        (everything it sends is a dead letter)."""
        from backend.registry import service as registry
        from edge_agent.simulate import demo_cohort

        cohort = demo_cohort(self.plan.agents)
        weigher = next((c for c in cohort[:-1] if c.device("scale") is not None), None)
        with psycopg.connect(self.pg.url, autocommit=True) as conn:
            words = []
            if weigher is not None:
                scale = weigher.device("scale")
                assert scale is not None and scale.user_index is not None
                device = next(d for d in registry.list_devices(conn, agent_id=weigher.agent_id)
                              if d.address == scale.address)
                users = registry.list_device_users(conn, device_id=device.id)
                registry.unmap_device_user(conn, device_id=device.id, user_index=scale.user_index)
                registry.map_device_user(conn, device_id=device.id, user_index=scale.user_index + 1,
                                         patient_id=users[scale.user_index])
                words.append(f"{weigher.agent_id}'s scale on another user slot (held)")
            if len(cohort) > 1:
                registry.deactivate_agent(conn, agent_id=cohort[-1].agent_id)
                words.append(f"{cohort[-1].agent_id} deactivated (dead letters)")
        return ", ".join(words)

    def close(self) -> None:
        self._stack.close()
        for g in self.all_groups():
            g.kill()

    def remove_workdir(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- one window of accounting ---------------------------------------------------------------

    def settle(self, fault: str, fault_end: float, note: str = "") -> Row:
        """Account for the ids generated since the previous window: the window stays open for
        ``margin_s`` of load after the fault, then the matrix waits until each of its ids is
        accounted for, or is in no spool while nothing moves for ``stall_s`` (lost), or the
        deadline passes. Time to recover: from the end of the fault until every id generated
        before it ended is accounted for."""
        p = self.plan
        start = self.cut
        before_end = self.ledger.between(start, fault_end)
        close_at = time.monotonic() + p.margin_s
        ids: set[str] | None = None
        deadline = time.monotonic() + p.margin_s + p.deadline_s
        acc = Accounting()
        recovered: float | None = None
        last_missing, last_change = -1, time.monotonic()
        while True:
            now = time.monotonic()
            if ids is None and now >= close_at:
                self.cut = time.time()
                ids = self.ledger.between(start, self.cut)
            try:
                acc = self.store.account(ids if ids is not None else before_end)
            except psycopg.OperationalError:
                time.sleep(0.5)
                continue
            accounted = acc.accounted()
            if recovered is None and before_end <= accounted:
                recovered = time.time() - fault_end
            if ids is None:
                time.sleep(0.25)
                continue
            missing = ids - accounted
            if not missing and recovered is not None:
                break
            if len(missing) != last_missing:
                last_missing, last_change = len(missing), now
            if now > deadline:
                note = (note + "; " if note else "") + f"deadline {p.deadline_s:g} s"
                break
            if now - last_change > p.stall_s and all(g.settled(p.stall_s) for g in self.all_groups()):
                spooled = set().union(*(g.spooled()[1] for g in self.all_groups()))
                if not missing & spooled:
                    note = (note + "; " if note else "") + f"in no spool, no progress for {p.stall_s:g} s"
                    break
            time.sleep(0.5)
        assert ids is not None
        lost = ids - acc.accounted()
        # Stored but still in a spool: the agent has no receipt for it yet (it will send it again;
        # not a loss, but an agent whose spool never drains would be a finding of its own).
        waiting = (ids - lost) & set().union(*(g.spooled()[1] for g in self.all_groups()))
        if waiting:
            note = (note + "; " if note else "") + f"{len(waiting)} stored but still spooled (no receipt yet)"
        repeated = sum(1 for i in acc.dead if self.store.dead_rows.get(i, 0) > 1)
        if repeated:
            note = (note + "; " if note else "") + f"{repeated} dead-lettered more than once"
        row = Row(fault=fault, generated=len(ids), stored=len(set(acc.stored) & ids), held=len(acc.held),
                  dead_letters=len(acc.dead), lost=len(lost), duplicated=len(acc.duplicated()),
                  recovered_s=recovered if not lost else None, note=note, lost_ids=tuple(sorted(lost)))
        self.rows.append(row)
        self.say(format_row(row))
        return row

    def duplicates_overall(self) -> int:
        """Duplicates over every id generated in the whole run (a late re-send counts too)."""
        acc = self.store.account(self.ledger.between(0, time.time()))
        return len(acc.duplicated())

    # -- the faults ------------------------------------------------------------------------------

    def broker_restart(self, down_s: float) -> Row:
        self.broker.stop()
        time.sleep(down_s)
        self.broker.start()
        end = time.time()
        with contextlib.suppress(HarnessError):
            until(self.broker.who_came_back_first, timeout=40, what="agents and ingest to reconnect", interval=0.5)
        return self.settle(f"broker restart, {down_s:g} s down", end, note=self.broker.who_came_back_first())

    def broker_stop_long(self) -> Row:
        p = self.plan
        self.broker.stop()
        time.sleep(p.long_stop_s)
        self.broker.start()
        end = time.time()
        backoff = next((u.split("=")[1] for u in p.uplink if u.startswith("reconnect_max_s=")), "60")
        # Who came back first is known once both did: within the agents' and paho's longest backoff.
        with contextlib.suppress(HarnessError):
            until(self.broker.who_came_back_first, timeout=40, what="agents and ingest to reconnect", interval=0.5)
        return self.settle(f"broker stopped {p.long_stop_s:g} s (agents' longest backoff {backoff} s)", end,
                           note=self.broker.who_came_back_first())

    def broker_kill_with_queue(self) -> Row:
        p = self.plan
        for w in self.workers:
            w.stop()
        time.sleep(p.queued_s)
        self.broker.kill()
        self.broker.start()
        for w in self.workers:
            w.start()
        return self.settle(f"broker SIGKILL after {p.queued_s:g} s queueing for stopped ingest", time.time())

    def ingest_kill(self) -> Row:
        p = self.plan
        for k in range(p.ingest_kills):
            w = self.workers[k % len(self.workers)]
            time.sleep(random.uniform(0.5, 2.0))
            w.kill()
            time.sleep(1.0)
            w.start()
        return self.settle(f"ingest worker SIGKILL mid-batch x{p.ingest_kills}, restarted", time.time())

    def postgres_restart(self, mode: str) -> Row:
        p = self.plan
        down = p.pg_down_s if mode == "immediate" else 0.0
        self.pg.stop(mode)
        time.sleep(down)
        self.pg.start()
        return self.settle(f"PostgreSQL restart, {mode}" + (f", {down:g} s down" if down else ""), time.time())

    def agent_kill(self) -> Row:
        p = self.plan
        group = self.groups[0]
        before_commit = 0
        for _ in range(p.agent_kills):
            time.sleep(random.uniform(0.5, 2.0))
            before_commit += group.kill_mid_write()
            group.start()
        return self.settle(f"agent process SIGKILL mid-write x{p.agent_kills}, restarted on its spool",
                           time.time(), note=f"{before_commit} of {p.agent_kills} kills before the spool commit")

    def agent_offline(self) -> Row:
        p = self.plan
        speed = p.offline_hours * 3600 / p.offline_replay_s
        self.offline = AgentGroup(
            "offline", first=p.agents, count=p.offline_agents, spool_dir=self.workdir / "offline",
            mqtt_url=self.broker.url, topic_root=self.topic_root, env=self.env,
            extra=("--rate", "0", "--spot-every", str(p.offline_spot_every_s), "--lead-hours", str(p.offline_hours),
                   "--speed", str(speed), "--offline-until-caught-up", *(a for u in p.uplink for a in ("--uplink", u))),
        )
        self._stack.callback(self.offline.stop)
        self.offline.start()
        peak = 0
        deadline = time.monotonic() + p.offline_replay_s * 3 + 60
        # Offline while the replay runs: the spools fill; the first drop in depth is the reconnect.
        while time.monotonic() < deadline:
            rows, _ = self.offline.spooled()
            if rows < peak * 0.95:
                break
            peak = max(peak, rows)
            time.sleep(0.2)
        row = self.settle(f"{p.offline_agents} agents offline {p.offline_hours:g} h (simulated), then drain",
                          time.time(), note=f"spool peak {peak}")
        self.offline.stop()
        return row

    def worker_lost_for_good(self) -> Row:
        w = self.workers[1]
        w.kill()
        self.workers = self.workers[:1]
        return self.settle("one of two ingest workers SIGKILLed for good", time.time())

    def faults(self) -> list[tuple[str, Callable[[], Row]]]:
        """(name, inject and account) in the order they run (:data:`FAULTS`)."""
        p = self.plan
        faults = [
            ("broker_restart_short", lambda: self.broker_restart(p.short_stop_s)),
            ("broker_stop_long", self.broker_stop_long),
            ("broker_kill_with_queue", self.broker_kill_with_queue),
            ("ingest_kill", self.ingest_kill),
            ("postgres_restart_fast", lambda: self.postgres_restart("fast")),
            ("postgres_restart_immediate", lambda: self.postgres_restart("immediate")),
            ("agent_kill", self.agent_kill),
            ("agent_offline_72h", self.agent_offline),
            ("worker_lost_for_good", self.worker_lost_for_good),
        ]
        assert [name for name, _ in faults] == list(FAULTS)
        return faults


FAULTS = ("broker_restart_short", "broker_stop_long", "broker_kill_with_queue", "ingest_kill",
          "postgres_restart_fast", "postgres_restart_immediate", "agent_kill", "agent_offline_72h",
          "worker_lost_for_good")
"""Every fault, in the order the matrix injects them (the worker lost for good last: the rest
run with both workers)."""


def print_table(rows: list[Row], say: Callable[[str], None] = print) -> None:
    say(HEADER)
    for r in rows:
        say(format_row(r))


@contextlib.contextmanager
def running(plan: Plan, log: Callable[[str], None] = print) -> Iterator[FaultMatrix]:
    matrix = FaultMatrix(plan, log=log)
    with matrix:
        yield matrix


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--proof", action="store_true", help="the long variants (3-minute broker stop etc.)")
    ap.add_argument("--only", action="append", default=[], help="run only these faults (by name)")
    ap.add_argument("--agents", type=int, help="override the plan's number of agents")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, spools) even if all passed")
    args = ap.parse_args()
    plan = PROOF if args.proof else FAST
    if args.agents:
        plan = plan.with_(agents=args.agents)
    print("command:", " ".join([Path(sys.executable).name, "-m", "tests.faults.harness", *sys.argv[1:]]), flush=True)
    print(f"code: {ROOT} ({_git_head()}); machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}",
          flush=True)
    t0 = time.monotonic()
    with running(plan, log=lambda s: print(s, flush=True)) as m:
        print(HEADER, flush=True)
        for name, fault in m.faults():
            if args.only and name not in args.only:
                continue
            fault()
        overall = m.duplicates_overall()
        generated = len(m.ledger.first_seen)
    print(f"\n{len(m.rows)} faults in {time.monotonic() - t0:.0f} s; {generated} readings generated; "
          f"duplicates over the whole run: {overall}")
    print_table(m.rows)
    bad = any(not r.ok for r in m.rows) or overall > 0
    if bad or args.keep:
        for r in m.rows:
            if r.lost_ids:
                print(f"lost in '{r.fault}': {', '.join(r.lost_ids[:5])}{' ...' if len(r.lost_ids) > 5 else ''}")
        print(f"work directory kept: {m.workdir}")
    else:
        m.remove_workdir()
    print("RESULT " + ("FAIL" if bad else "OK") + f" lost={sum(r.lost for r in m.rows)} "
          f"duplicated={sum(r.duplicated for r in m.rows) + overall}")
    sys.exit(1 if bad else 0)


def _git_head() -> str:
    out = subprocess.run(["git", "log", "-1", "--format=%h %s"], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.strip()[:80] or "not a git checkout"


if __name__ == "__main__":
    main()
