"""Issue 13: with its port taken, the demo says so and how to choose another, before it starts
any server or prints its banner (it used to print the banner, then die on the bind error)."""

from __future__ import annotations

import socket

import pytest

from backend.demo import port_taken, run_demo


def test_a_taken_port_is_refused_before_anything_starts(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert port_taken("127.0.0.1", port) is not None
        with pytest.raises(SystemExit) as exc:
            run_demo(port=port)
    assert f"port {port}" in str(exc.value) and f"--port {port + 1}" in str(exc.value)
    assert "nearcare demo\n" not in capsys.readouterr().out  # no banner
    assert port_taken("127.0.0.1", port) is None  # free again once the listener is gone
