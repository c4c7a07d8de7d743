"""Issue 13: the demo's simulated citizens start only once ingest has subscribed (they used to
start first; the broker dropped their readings for want of a subscriber and the first ones came
~30 s later). Against the real app under uvicorn, the real broker and the session database."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from backend.demo import SimulationAfterIngest, ingest_ready
from tests.backend.web._support import LiveServer


class _Recorder:
    """A simulation stand-in that records what the app said when it was opened and closed."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.opened_with: tuple[bool, str] | None = None
        self.closed = False

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        self.opened_with = ingest_ready(self.app)
        try:
            yield
        finally:
            self.closed = True


def test_the_simulation_waits_for_ingest_and_stops_with_the_demo(settings: Any) -> None:
    server = LiveServer(settings)
    app = server.app
    assert ingest_ready(app) == (False, "starting")
    recorder = _Recorder(app)
    simulation = SimulationAfterIngest(app, recorder, timeout_s=60)
    simulation.start()  # as the demo does: before the web server (and so ingest) starts
    assert recorder.opened_with is None
    with server:
        assert simulation.running.wait(60), "the simulation never started"
        assert recorder.opened_with == (True, "ok"), recorder.opened_with
        assert simulation.waited_s is not None
    simulation.stop()
    assert recorder.closed and not simulation.running.is_set()


def test_stopped_before_ingest_is_ready_the_simulation_never_starts(settings: Any) -> None:
    server = LiveServer(settings)  # never started: ingest never subscribes
    recorder = _Recorder(server.app)
    simulation = SimulationAfterIngest(server.app, recorder, timeout_s=60)
    simulation.start()
    simulation.stop()
    assert recorder.opened_with is None and simulation.waited_s is None
