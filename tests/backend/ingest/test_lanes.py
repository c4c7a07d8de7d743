"""Live ahead of backlog: the lanes the writer takes its batches from, and which lane a decided
message belongs in."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from backend.ingest.core import LIVE_WITHIN, Decision, is_live
from backend.ingest.lanes import Lanes
from tests.backend.ingest.test_core import NOW, golden, run


def test_a_batch_takes_live_messages_first_and_keeps_each_lanes_order() -> None:
    lanes: Lanes[str] = Lanes()
    t0 = time.monotonic()
    for i in range(4):
        lanes.put(f"backlog-{i}", readings=50, received=t0, live=False)
    lanes.put("live-0", readings=1, received=t0, live=True)
    lanes.put("live-1", readings=1, received=t0, live=True)
    # A batch with live messages carries little backlog (here at most 40 readings): its commit is short.
    assert lanes.take(size=100, window_s=0.0, backlog_with_live=40) == ["live-0", "live-1"]
    assert lanes.take(size=100, window_s=0.0) == ["backlog-0", "backlog-1"]  # no live: a full batch
    lanes.put("live-2", readings=1, received=t0, live=True)
    assert lanes.take(size=200, window_s=0.0, backlog_with_live=50) == ["live-2", "backlog-2"]
    assert lanes.take(size=200, window_s=0.0) == ["backlog-3"]
    assert len(lanes) == 0


def test_one_message_larger_than_the_batch_still_goes() -> None:
    lanes: Lanes[str] = Lanes()
    lanes.put("huge", readings=800, received=time.monotonic(), live=False)
    assert lanes.take(size=500, window_s=0.0) == ["huge"]


def test_a_batch_waits_for_its_window_unless_it_fills() -> None:
    lanes: Lanes[str] = Lanes()
    lanes.put("a", readings=1, received=time.monotonic(), live=True)
    later = threading.Timer(0.05, lambda: lanes.put("b", readings=1, received=time.monotonic(), live=True))
    later.start()
    # A long window: the batch closes only because it fills (2 readings) when "b" comes.
    assert lanes.take(size=2, window_s=30.0) == ["a", "b"]
    later.join()
    # Nothing waiting: an empty answer after the idle wait, not a block.
    assert lanes.take(size=2, window_s=30.0, wait_s=0.01) == []


def test_a_window_already_past_closes_the_batch_at_once() -> None:
    lanes: Lanes[str] = Lanes()
    lanes.put("old", readings=1, received=time.monotonic() - 1.0, live=False)
    started = time.monotonic()
    assert lanes.take(size=500, window_s=0.05) == ["old"]
    assert time.monotonic() - started < 5.0  # did not wait for readings that never come


def test_drain_hands_over_everything_live_first() -> None:
    lanes: Lanes[str] = Lanes()
    t0 = time.monotonic()
    lanes.put("b", readings=50, received=t0, live=False)
    lanes.put("l", readings=1, received=t0, live=True)
    assert lanes.drain() == ["l", "b"]
    assert lanes.drain() == []


def test_a_reading_measured_minutes_ago_is_live_and_an_hour_ago_is_backlog() -> None:
    d = run(golden("envelope_bp_single.json"))
    (r,) = d.accepted
    assert is_live(d, r.measured_at + timedelta(minutes=2))
    assert is_live(d, r.measured_at + LIVE_WITHIN - timedelta(seconds=1))
    assert not is_live(d, r.measured_at + LIVE_WITHIN)
    assert not is_live(d, r.measured_at + timedelta(hours=1))


def test_messages_without_readings_are_live() -> None:
    later = NOW + timedelta(days=365)
    dead = run(b"{not json")
    assert dead.dead_letter is not None and is_live(dead, later)
    assert is_live(Decision(ignored=True), later)
