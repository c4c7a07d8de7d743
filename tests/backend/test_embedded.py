"""The helpers the demo, the tests and the benches share: waiting for a condition, a free port,
waiting for a listener."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from backend.embedded import WaitTimedOut, free_port, wait_for, wait_port
from backend.errors import BackendError


def test_wait_for_returns_the_first_truthy_value() -> None:
    calls = iter([0, None, [], {"rows": 3}])
    assert wait_for(lambda: next(calls), timeout=5, interval=0.001) == {"rows": 3}


def test_wait_for_names_what_it_waited_for_and_tries_at_the_deadline() -> None:
    calls: list[float] = []

    def never() -> bool:
        calls.append(time.monotonic())
        return False

    start = time.monotonic()
    with pytest.raises(WaitTimedOut, match=r"timed out after 0.2s waiting for the stored receipt"):
        wait_for(never, timeout=0.2, what="the stored receipt", interval=0.05)
    assert calls[-1] - start >= 0.2  # the last try is at or after the deadline, not before it
    assert len(calls) >= 2
    assert issubclass(WaitTimedOut, BackendError)


def test_wait_for_does_not_swallow_the_condition_s_error() -> None:
    def broken() -> bool:
        raise ValueError("bad row")

    with pytest.raises(ValueError, match="bad row"):
        wait_for(broken, timeout=5)


def test_free_port_can_be_listened_on_and_wait_port_sees_it() -> None:
    port = free_port()
    with socket.socket() as server:
        server.bind(("127.0.0.1", port))
        server.listen()
        wait_port(port, timeout=5)


def test_wait_port_fails_early_when_the_server_exits() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait(30)
    start = time.monotonic()
    with pytest.raises(BackendError, match=r"exited \(3\) before listening"):
        wait_port(free_port(), timeout=60, proc=proc)
    assert time.monotonic() - start < 30  # not the whole timeout
