"""A small agent process for the SIGKILL test: append a burst of readings while the uplink drains.

Usage: burst_runner.py SPOOL BROKER_URL TOPIC_ROOT AGENT_ID COUNT
Prints ``MINT <id>`` before and ``APPENDED <id>`` after each durable append, then ``DRAINED``.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime

from edge_agent.spool import Spool
from edge_agent.uplink import Uplink
from vitals.broker import parse_broker_url
from vitals.wire import Device, Measurement, Topics, new_measurement_id


def main() -> None:
    spool_path, url, root, agent_id, count = sys.argv[1:6]
    spool = Spool(spool_path)
    uplink = Uplink(agent_id=agent_id, broker=parse_broker_url(url), topics=Topics(root), spool=spool,
                    batch_size=20, reconnect_min_s=0.2, reconnect_max_s=1.0).start()
    device = Device(address="00:1C:05:00:00:09", model="Nonin 3230")
    for i in range(int(count)):
        now = datetime.now(UTC)
        m = Measurement(id=new_measurement_id(), kind="spo2", values={"spo2": 90 + i % 10}, unit="%",
                        measured_at=now, device_clock_trusted=False, received_at=now, device=device)
        print("MINT", m.id, flush=True)
        spool.append(m)
        print("APPENDED", m.id, flush=True)
        time.sleep(0.002)
    if not uplink.wait_drained(60):
        print("NOT DRAINED", spool.depth, flush=True)
        sys.exit(1)
    print("DRAINED", flush=True)
    uplink.stop()


if __name__ == "__main__":
    main()
