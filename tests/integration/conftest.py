"""Backend roles as OS processes (``nearcare backend <role>``), for the integration tests that run
the production topology."""

from __future__ import annotations

import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
START_S = 60.0  # a busy two-core machine starting six Python processes at once


class Role:
    """One ``nearcare backend <role>`` process; its stdout is read on a thread."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.args = args
        self.proc = subprocess.Popen([sys.executable, "-m", "nearcare_cli", "backend", *args], cwd=ROOT, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)

    def wait_line(self, pattern: str, timeout: float = START_S) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            if re.search(pattern, line):
                return line
        raise AssertionError(f"backend {' '.join(self.args)} printed no {pattern!r}:\n{''.join(self.output)[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def roles() -> Iterator[Callable[..., Role]]:
    """``roles(env, "ingest", "--no-migrate")`` starts a role; all are stopped after the test."""
    started: list[Role] = []

    def start(env: dict[str, str], *args: str) -> Role:
        r = Role(env, *args)
        started.append(r)
        return r

    try:
        yield start
    finally:
        for r in reversed(started):
            r.stop()
