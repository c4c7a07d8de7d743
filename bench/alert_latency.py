"""Alert latency: MQTT publish -> stored -> rules -> alert stored -> live worklist event.

Runs the real ingest service and the alerting service in-process against a fresh database on
the local PostgreSQL and the local Mosquitto. Publishes breaching SpO2 readings (one envelope
each) at a fixed rate spread over many citizens, and times each reading from its publish to
the worklist event that carries its id.

    .venv/bin/python bench/alert_latency.py [--rate 1000] [--seconds 10] [--patients 200]

The publisher runs in a child process (``--in-process-publisher`` for the old layout, where the
load generator shared the GIL with ingest and the rules). Each run measures its own baseline
(ingest alone, same layout) first.

``--profile`` runs the alerting worker's evaluations under cProfile (in its own thread) and
prints where its time went plus its thread CPU per reading; profiling slows the worker, so
that run's latencies are not comparable with an unprofiled one.

Last line: ``RESULT alert_p50_ms=… alert_p99_ms=… rate=…`` (rate = achieved publish rate).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import multiprocessing
import os
import pstats
import secrets
import statistics
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _publish(client: Any, items: list[tuple[str, bytes | str]], rate: float) -> tuple[list[float], float]:
    """Publish at ``rate``; return each message's send time (perf_counter: CLOCK_MONOTONIC,
    comparable across processes on Linux) and the seconds it took."""
    sent: list[float] = []
    start = time.perf_counter()
    for i, (topic, body) in enumerate(items):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        sent.append(time.perf_counter())
        client.publish(topic, body, qos=1)
    return sent, time.perf_counter() - start


def _publisher_process(host: str, port: int, items: list[tuple[str, bytes | str]], rate: float, pipe: Any) -> None:
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(2000)
    client.connect(host, port, keepalive=30)
    client.loop_start()
    deadline = time.monotonic() + 10
    while not client.is_connected() and time.monotonic() < deadline:
        time.sleep(0.01)
    result = _publish(client, items, rate)
    time.sleep(1.0)  # let the last QoS 1 messages reach the broker before disconnecting
    client.disconnect()
    client.loop_stop()
    pipe.send(result)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--patients", type=int, default=200)
    ap.add_argument("--admin-url", default=os.environ.get("NEARCARE_TEST_DATABASE_URL",
                                                          "postgresql://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--mqtt-url", default=os.environ.get("NEARCARE_TEST_MQTT_URL", "mqtt://127.0.0.1:1883"))
    ap.add_argument("--in-process-publisher", action="store_true",
                    help="publish from this process (as before 2026-11): the publisher then competes for the GIL")
    ap.add_argument("--profile", action="store_true",
                    help="cProfile the alerting worker's evaluations (slows them; latencies not comparable)")
    args = ap.parse_args()

    import paho.mqtt.client as mqtt
    import psycopg
    import psycopg.conninfo

    from backend import registry
    from backend.alerting.runtime import AlertingService
    from backend.events import EventHub
    from backend.ingest.service import IngestService
    from backend.services import Runtime
    from backend.settings import Settings
    from backend.store import migrate, open_pool
    from vitals.wire import Device, Envelope, Measurement, new_measurement_id

    name = f"nearcare_bench_{secrets.token_hex(4)}"
    with psycopg.connect(args.admin_url, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    params = psycopg.conninfo.conninfo_to_dict(args.admin_url)
    params["dbname"] = name
    db_url = psycopg.conninfo.make_conninfo(**params)
    settings = Settings(database_url=db_url, mqtt_url=args.mqtt_url, topic_root=f"bench-{secrets.token_hex(3)}/v1",
                        ingest_group=f"bench-{secrets.token_hex(3)}", demo=True)
    try:
        migrate(db_url)
        agents = []
        with psycopg.connect(db_url, autocommit=True) as c:
            registry.create_team(c, key="aarhus-sygepleje", name="Aarhus Kommune sygepleje", sector="municipal",
                                 municipality="Aarhus")
            for i in range(args.patients):
                p = registry.create_patient(c, external_ref=f"b{i}", name=f"Borger {i}", programme="copd",
                                            municipality="Aarhus")
                a = registry.enrol_agent(c, agent_id=f"bench-{i:04d}", patient_id=p.id)
                registry.register_device(c, agent_id=a.id, address="C0:4E:30:00:00:01", model="Nonin 3230")
                agents.append(a.id)

        pool = open_pool(db_url, min_size=2, max_size=8)
        runtime = Runtime(settings=settings, pool=pool, events=EventHub())
        alerting = AlertingService(pool=pool, settings=settings, events=runtime.events, run_scheduler=False)
        runtime.readings_sinks.append(alerting.sink)
        ingest = IngestService(runtime, client_id=f"bench-{secrets.token_hex(3)}")
        # Thread CPU, not wall: wall time would charge waits for the GIL (held by ingest) to
        # whatever the worker happened to be running.
        profiler = cProfile.Profile(time.thread_time) if args.profile else None
        worker_cpu = [0.0, 0]
        evaluate_batch = alerting.queue._evaluate

        def measured(readings: Any) -> None:
            # Runs on the worker thread: cProfile and thread_time see that thread only.
            t0 = time.thread_time()
            if profiler is not None:
                profiler.enable()
            try:
                evaluate_batch(readings)
            finally:
                if profiler is not None:
                    profiler.disable()
                worker_cpu[0] += time.thread_time() - t0
                worker_cpu[1] += len(readings)

        alerting.queue._evaluate = measured
        alerting.start()
        ingest.start()
        deadline = time.monotonic() + 20
        while not ingest.ready()[0]:
            if time.monotonic() > deadline:
                raise SystemExit("ingest did not become ready")
            time.sleep(0.05)

        b = settings.broker
        client = None
        if args.in_process_publisher:
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
            client.max_inflight_messages_set(2000)
            client.connect(b.host, b.port, keepalive=30)
            client.loop_start()
        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, daemon=True).start()
        total = int(args.rate * args.seconds)

        def phase(with_alerting: bool, first_ms: int) -> tuple[list[float], float]:
            """Publish ``total`` readings; time each to its worklist event (with alerting) or to
            its reading.stored event (baseline: ingest alone, the sink detached)."""
            runtime.readings_sinks[:] = [alerting.sink] if with_alerting else []
            arrived: dict[str, float] = {}
            done = threading.Event()

            async def listen() -> None:
                q = runtime.events.subscribe()
                try:
                    while len(arrived) < total:
                        ev = await q.get()
                        t = time.perf_counter()
                        if with_alerting and ev.type.startswith("alert."):
                            mids = [ev.data.get("measurement_id")]
                        elif not with_alerting and ev.type == "reading.stored":
                            mids = [str(i) for i in ev.data.get("ids", ())]
                        else:
                            continue
                        for mid in mids:
                            if mid and mid in wanted:
                                arrived.setdefault(mid, t)
                finally:
                    runtime.events.unsubscribe(q)
                    done.set()

            # Pre-build the payloads so the loop measures the pipeline, not pydantic.
            now = datetime.now(UTC) - timedelta(minutes=30)
            payloads = []
            for i in range(total):
                agent = agents[i % len(agents)]
                at = now + timedelta(milliseconds=first_ms + i)
                m = Measurement(id=new_measurement_id(), kind="spo2", values={"spo2": 84.0 if i % 2 else 88.0},
                                unit="%", measured_at=at, device_clock_trusted=True, received_at=at,
                                device=Device(address="C0:4E:30:00:00:01"))
                env = Envelope(agent_id=agent, sent_at=at, measurements=(m,))
                payloads.append((settings.topics.measurements(agent), env.to_json(), str(m.id)))
            wanted = {mid for _, _, mid in payloads}
            fut = asyncio.run_coroutine_threadsafe(listen(), loop)
            time.sleep(0.2)
            if client is not None:
                sent, publish_s = _publish(client, [(t, body) for t, body, _ in payloads], args.rate)
            else:
                # The load generator in its own process: its publishing (paho) does not compete
                # with the system under test for this process's GIL.
                ctx = multiprocessing.get_context("spawn")
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_publisher_process,
                                   args=(b.host, b.port, [(t, body) for t, body, _ in payloads], args.rate, child))
                proc.start()
                sent, publish_s = parent.recv()
                proc.join(30)
            done.wait(timeout=90)
            fut.cancel()
            latency: list[float] = []
            by_second: dict[int, list[float]] = {}
            for (_, _, mid), t0 in zip(payloads, sent, strict=True):
                if (t := arrived.get(mid)) is not None:
                    latency.append((t - t0) * 1000)
                    by_second.setdefault(int(t0 - sent[0]), []).append((t - t0) * 1000)
            # Where in the run the time went: a growing median means the pipeline falls behind.
            print(f"  {'alerting' if with_alerting else 'baseline'} p50 by second of publishing (ms): "
                  + " ".join(f"{statistics.median(v):.0f}" for _, v in sorted(by_second.items())))
            return sorted(latency), total / publish_s

        def summary(name: str, lat: list[float], rate: float) -> tuple[float, float]:
            if not lat:
                raise SystemExit(f"{name}: no events arrived")
            p50 = statistics.median(lat)
            p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
            print(f"{name}: {total} readings to {len(agents)} citizens at {rate:.0f}/s; matched {len(lat)}"
                  f" (missing {total - len(lat)}); ms p50={p50:.1f} p90={lat[int(len(lat) * 0.9)]:.1f}"
                  f" p99={p99:.1f} max={lat[-1]:.1f}")
            return p50, p99

        base_lat, base_rate = phase(False, 0)
        lat, rate = phase(True, total + 1000)
        if client is not None:
            client.disconnect()
            client.loop_stop()
        ingest.stop()
        alerting.stop()
        pool.close()
        loop.call_soon_threadsafe(loop.stop)
        print(f"command: {' '.join(sys.argv)}")
        summary("baseline (publish -> stored, no rules)", base_lat, base_rate)
        p50, p99 = summary("alerting (publish -> alert stored -> worklist event)", lat, rate)
        q = alerting.queue
        print(f"engine evaluated={alerting.engine.evaluated} failed={alerting.engine.failed}"
              f" skipped={alerting.engine.skipped}; queue batches={q.batches}"
              f" mean batch={q.handed_over / max(1, q.batches):.0f} readings, errors={q.errors},"
              f" left to catch-up={q.left_to_catch_up}")
        print(f"alerting worker thread CPU: {worker_cpu[0] * 1000 / max(1, worker_cpu[1]):.3f} ms per reading"
              f" over {worker_cpu[1]} readings" + (" (under cProfile)" if profiler is not None else ""))
        if profiler is not None:
            pstats.Stats(profiler).sort_stats("tottime").print_stats(35)
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
        print(f"RESULT alert_p50_ms={p50:.1f} alert_p99_ms={p99:.1f} rate={rate:.0f}")
    finally:
        with psycopg.connect(args.admin_url, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
