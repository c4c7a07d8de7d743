"""The fault matrix's load generator: simulated citizens through the real agent code.

One process runs ``--citizens`` simulated agents (``demo_cohort(first + citizens)[first:]``) with
:func:`edge_agent.simulate.run_simulation`: readings from the simulator's generator become real
characteristic bytes, are decoded by :mod:`edge_agent.gatt`, turned into measurements by the
recorder's logic, appended to each agent's own :class:`~edge_agent.spool.Spool` and drained by
its own :class:`~edge_agent.uplink.Uplink`. ``--rate`` adds a spot check per citizen that many
times a second, at the wall clock, for as long as the process runs.

Every measurement id is written to ``<spool-dir>/<agent>.ids`` (``<unix time> <id>`` per line)
*before* its spool append, so a SIGKILL can never leave a spooled id unlisted; an id listed but
not appended is generated again, with the same id, when the process restarts on the same spool
directory (the simulator resumes from its saved progress).

    python -m tests.faults.agents --spool-dir D --mqtt-url mqtt://127.0.0.1:1883 --topic-root R \
        --first 0 --citizens 12 --rate 1 [--uplink resend_after_s=5 ...]
"""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge_agent.simulate import demo_cohort, run_simulation
from edge_agent.uplink import Uplink
from vitals.wire import Measurement, Topics


def uplink_options(pairs: list[str]) -> dict[str, Any]:
    """``name=value`` pairs for the :class:`Uplink`, kept only where this version of it takes them
    (the harness runs against whatever agent code is on disk)."""
    accepted = inspect.signature(Uplink.__init__).parameters
    out: dict[str, Any] = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name not in accepted:
            print(f"agents: this Uplink has no option {name!r}; ignored", file=sys.stderr, flush=True)
            continue
        out[name] = float(value)
    return out


class IdLog:
    """One append-only file of generated ids per agent; each batch is one ``write`` (in the kernel
    before the spool append, so it survives a SIGKILL of this process)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._fds: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, agent_id: str, measurements: Sequence[Measurement]) -> None:
        with self._lock:
            fd = self._fds.get(agent_id)
            if fd is None:
                fd = os.open(self.directory / f"{agent_id}.ids", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                self._fds[agent_id] = fd
            now = time.time()
            os.write(fd, "".join(f"{now:.3f} {m.id}\n" for m in measurements).encode())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spool-dir", type=Path, required=True)
    ap.add_argument("--mqtt-url", required=True)
    ap.add_argument("--topic-root", required=True)
    ap.add_argument("--first", type=int, default=0, help="skip this many citizens of the cohort")
    ap.add_argument("--citizens", type=int, required=True)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--rate", type=float, default=1.0, help="spot checks per second per citizen (0: none)")
    ap.add_argument("--spot-every", type=float, default=0.0,
                    help="instead of --rate: a spot check every this many simulated seconds")
    ap.add_argument("--lead-hours", type=float, default=0.0)
    ap.add_argument("--history-days", type=int, default=0)
    ap.add_argument("--speed", type=float, default=1.0)
    ap.add_argument("--offline-until-caught-up", action="store_true",
                    help="connect only when the replay of --lead-hours reaches the present")
    ap.add_argument("--uplink", action="append", default=[], metavar="NAME=VALUE")
    args = ap.parse_args()
    logging.basicConfig(level=os.environ.get("NEARCARE_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    every = args.spot_every or (1.0 / args.rate if args.rate else None)
    cohort = demo_cohort(args.first + args.citizens, args.seed)[args.first:]
    args.spool_dir.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"agents {args.first}..{args.first + args.citizens - 1} pid {os.getpid()}", flush=True)
    run_simulation(cohort, broker_url=args.mqtt_url, topics=Topics(args.topic_root), speed=args.speed, stop=stop,
                   history_days=args.history_days, spool_dir=args.spool_dir, lead_hours=args.lead_hours,
                   spot_check_every_s=every, connect_when_caught_up=args.offline_until_caught_up,
                   uplink_options=uplink_options(args.uplink), on_recorded=IdLog(args.spool_dir))


if __name__ == "__main__":
    main()
