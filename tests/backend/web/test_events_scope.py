"""Issue 12, finding 9: /events told a citizen or an admin the timing of other citizens'
readings. Now each viewer hears only of citizens in their scope, and an admin hears nothing."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import psycopg

from backend.embedded import wait_for
from tests.backend.web._support import api_token, build_world, store_reading


class _Listener:
    """An /events stream read in a thread, each event with the time it arrived."""

    def __init__(self, url: str, token: str) -> None:
        self.events: list[tuple[float, str]] = []
        self.open = threading.Event()
        self._url, self._token = url, token
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self.open.wait(30), "the event stream did not open"

    def _run(self) -> None:
        self._client = httpx.Client(base_url=self._url, timeout=httpx.Timeout(5, read=60))
        try:
            with self._client.stream("GET", "/events", headers={"authorization": f"Bearer {self._token}"}) as r:
                for line in r.iter_lines():
                    if line.startswith(": connected"):
                        self.open.set()
                    if line.startswith("event: "):
                        self.events.append((time.monotonic(), line[7:]))
        except (httpx.HTTPError, RuntimeError):
            pass  # closed by close()

    def close(self) -> None:
        """End the stream (an open one would hold the server's shutdown)."""
        self._client.close()
        self._thread.join(10)


def test_a_citizen_hears_only_of_their_own_readings_and_an_admin_of_none(live: Any, client: httpx.Client) -> None:
    with psycopg.connect(live.app.state.settings.database_url, autocommit=True) as conn:
        w = build_world(conn)
        r = client.get("/events", headers={"authorization": f"Bearer {api_token(client, w.admin)}"})
        assert r.status_code == 403
        citizen = _Listener(live.url, api_token(client, w.citizen))
        # The other municipality's nurse hears of her own citizen's reading: proof it was sent.
        other_nurse = _Listener(live.url, api_token(client, w.other_nurse))
        try:
            _check(conn, live, w, citizen, other_nurse)
        finally:
            citizen.close()
            other_nurse.close()


def _check(conn: psycopg.Connection, live: Any, w: Any, citizen: _Listener, other_nurse: _Listener) -> None:
    store_reading(conn, live, patient_id=w.other_patient_id, agent_id=w.agent_id, kind="spo2",
                  components={"spo2": 96.0}, unit="%")
    wait_for(lambda: other_nurse.events, what="the other nurse hears of her citizen's reading", timeout=30)
    own_at = time.monotonic()
    store_reading(conn, live, patient_id=w.patient_id, agent_id=w.agent_id, kind="spo2",
                  components={"spo2": 96.0}, unit="%")
    wait_for(lambda: citizen.events, what="the citizen hears of her own reading", timeout=30)
    # Nothing reached the citizen before her own reading was stored.
    assert all(at >= own_at for at, _ in citizen.events), citizen.events
