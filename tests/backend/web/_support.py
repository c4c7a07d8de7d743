"""Shared test support for the web, API and browser tests: a live uvicorn server on a free
port and a small world of teams, users and patients. (Imported as tests.backend.web._support.)"""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from backend.embedded import free_port

PASSWORD = "test-password-1"


class LiveServer:
    """The real app under uvicorn in a thread (lifespan, pool, services and all)."""

    def __init__(self, settings: Any, **state: Any) -> None:
        import uvicorn

        from backend.app import create_app

        self.app = create_app(settings)
        for k, v in state.items():
            setattr(self.app.state, k, v)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                host="127.0.0.1",
                port=self.port,
                log_level="warning",
                timeout_graceful_shutdown=1,
                lifespan="on",
                proxy_headers=False,
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the app did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(20)


@dataclass
class World:
    tag: str
    municipality: str
    other_municipality: str
    department: str
    nurse: str
    other_nurse: str
    specialist: str
    citizen: str
    admin: str
    patient_id: int
    patient_ref: str
    other_patient_id: int
    hospital_patient_id: int
    agent_id: str
    device_id: int


def _team(
    conn: psycopg.Connection, key: str, name: str, sector: str, municipality: str | None, department: str | None
) -> int:
    row = conn.execute("SELECT id FROM teams WHERE key = %s", (key,)).fetchone()
    if row:
        return int(row[0])
    row = conn.execute(
        "INSERT INTO teams (key, name, sector, municipality, department) VALUES (%s,%s,%s,%s,%s) RETURNING id",
        (key, name, sector, municipality, department),
    ).fetchone()
    assert row
    return int(row[0])


def build_world(conn: psycopg.Connection, *, municipality: str | None = None) -> World:
    """Two municipalities (each with a nurse team), one hospital department; a patient in each
    place, an agent with a device for the first patient; one user per role. Unique per call."""
    from backend.accounts.store import create_user

    tag = secrets.token_hex(3)
    mun = municipality or f"Kommune-{tag}"
    other = f"Andenkommune-{tag}"
    dep = f"Afdeling-{tag}"
    t_mun = _team(conn, f"sygepleje-{tag}", f"{mun} sygepleje", "municipal", mun, None)
    t_other = _team(conn, f"sygepleje2-{tag}", f"{other} sygepleje", "municipal", other, None)
    t_hosp = _team(conn, f"lungeteam-{tag}", f"{dep} lungeteam", "hospital", None, dep)

    def patient(ref: str, name: str, m: str, d: str | None) -> int:
        row = conn.execute(
            "INSERT INTO patients (external_ref, name, programme, municipality, department) VALUES (%s,%s,'copd',%s,%s)"
            " RETURNING id",
            (ref, name, m, d),
        ).fetchone()
        assert row
        return int(row[0])

    pid = patient(f"ref-{tag}-1", f"Karen Test {tag}", mun, None)
    other_pid = patient(f"ref-{tag}-2", f"Ole Anden {tag}", other, None)
    hosp_pid = patient(f"ref-{tag}-3", f"Hanne Hospital {tag}", other, dep)
    agent = f"agent-{tag}"
    conn.execute("INSERT INTO agents (id, patient_id) VALUES (%s, %s)", (agent, pid))
    row = conn.execute(
        "INSERT INTO devices (agent_id, address, model, manufacturer, serial, firmware)"
        " VALUES (%s, 'AA:BB:CC:DD:EE:01', 'UA-651BLE', 'A&D', 'SN1', '1.2') RETURNING id",
        (agent,),
    ).fetchone()
    assert row
    names = {r: f"{r}-{tag}" for r in ("nurse", "other", "spec", "citizen", "admin")}
    create_user(conn, username=names["nurse"], display_name="Sara Test", role="nurse", password=PASSWORD, team_id=t_mun)
    create_user(
        conn, username=names["other"], display_name="Rasmus Test", role="nurse", password=PASSWORD, team_id=t_other
    )
    create_user(
        conn, username=names["spec"], display_name="Lars Test", role="specialist", password=PASSWORD, team_id=t_hosp
    )
    create_user(
        conn, username=names["citizen"], display_name="Karen Test", role="citizen", password=PASSWORD, patient_id=pid
    )
    create_user(conn, username=names["admin"], display_name="Anne Test", role="admin", password=PASSWORD)
    return World(
        tag,
        mun,
        other,
        dep,
        names["nurse"],
        names["other"],
        names["spec"],
        names["citizen"],
        names["admin"],
        pid,
        f"ref-{tag}-1",
        other_pid,
        hosp_pid,
        agent,
        int(row[0]),
    )


def add_readings(
    conn: psycopg.Connection,
    *,
    patient_id: int,
    agent_id: str,
    device_id: int | None,
    days: int = 10,
    per_day: int = 2,
    now: datetime | None = None,
) -> int:
    """SpO2, pulse, weight and blood pressure readings, ``per_day`` a day for ``days`` days."""
    now = now or datetime.now(UTC)
    n = 0
    for d in range(days):
        for k in range(per_day):
            t = now - timedelta(days=d, hours=3 + 8 * k)
            for kind, comps, unit in (
                ("spo2", {"spo2": 93 + (d + k) % 4}, "%"),
                ("pulse", {"pulse": 70 + (d * 3 + k) % 12}, "/min"),
                ("weight", {"weight": 80.0 + (d % 3) * 0.4}, "kg"),
                ("blood_pressure", {"systolic": 128 + d % 9, "diastolic": 82 + d % 5, "mean_arterial": 97.0}, "mm[Hg]"),
            ):
                conn.execute(
                    """INSERT INTO measurements (id, measured_at, patient_id, agent_id, device_id, kind, value,
                       components, unit, device_clock_trusted, agent_received_at, quality, raw_characteristic, raw)
                       VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,true,%s,%s,%s,%s)""",
                    (
                        uuid.uuid4(),
                        t,
                        patient_id,
                        agent_id,
                        device_id,
                        kind,
                        next(iter(comps.values())),
                        json.dumps(comps),
                        unit,
                        t + timedelta(seconds=40),
                        ["cuff_loose"] if kind == "blood_pressure" and d == 0 else [],
                        "2A35" if kind == "blood_pressure" else None,
                        b"\x1e\x80\x00" if kind == "blood_pressure" else None,
                    ),
                )
                n += 1
    return n


def sign_in(page: Any, url: str, username: str, password: str = PASSWORD, *, lang: str | None = None) -> None:
    """Sign in through the login page in a Playwright page (the browser tests); the caller waits
    for what the sign-in should lead to."""
    page.goto(f"{url}/login" + (f"?lang={lang}" if lang else ""))
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def web_login(client: Any, username: str, password: str = PASSWORD) -> str:
    """Log in through the form; returns the CSRF token of the session."""
    import re

    r = client.get("/login")
    assert r.status_code == 200
    token = re.search(r'name="csrf" value="([^"]+)"', r.text)
    assert token
    r = client.post("/login", data={"username": username, "password": password, "csrf": token.group(1)})
    assert r.status_code == 303, r.text
    page = client.get(
        r.headers["location"] if r.headers["location"] != "/admin" else "/admin", headers={"accept": "text/html"}
    )
    m = re.search(r'<meta name="csrf-token" content="([^"]+)"', page.text)
    assert m, page.text[:500]
    return m.group(1)


def api_token(client: Any, username: str, password: str = PASSWORD) -> str:
    r = client.post("/api/v1/auth/token", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def store_reading(
    conn: psycopg.Connection,
    live: LiveServer,
    *,
    patient_id: int,
    agent_id: str,
    kind: str,
    components: dict[str, float],
    unit: str,
    at: datetime | None = None,
) -> uuid.UUID:
    """A reading stored by ingest's own writer (measurement, rules inbox and NOTIFYs in one
    transaction): the running app's rules role evaluates it, as in production."""
    from backend.ingest.core import AcceptedReading, Decision
    from backend.ingest.writer import prepare, write_batch
    from vitals.wire import new_measurement_id

    at = at or datetime.now(UTC)
    rid = new_measurement_id()
    row = conn.execute("SELECT id FROM devices WHERE agent_id = %s ORDER BY id LIMIT 1", (agent_id,)).fetchone()
    if row is None:
        from backend import registry

        device_id = registry.register_device(conn, agent_id=agent_id, address="00:09:1F:00:00:01", model="test").id
    else:
        device_id = int(row[0])
    reading = AcceptedReading(rid, at, patient_id, agent_id, device_id, kind, next(iter(components.values())),
                              components, unit, True, at)
    prepare(conn)
    write_batch(conn, [Decision(agent_id=agent_id, accepted=(reading,))], received_at=datetime.now(UTC))
    return rid


def open_alert_id(conn: psycopg.Connection, patient_id: int, severity: str = "red", timeout: float = 10) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT id FROM alerts WHERE patient_id = %s AND severity = %s AND state = 'open' ORDER BY id DESC LIMIT 1",
            (patient_id, severity),
        ).fetchone()
        if row:
            return int(row[0])
        time.sleep(0.1)
    raise AssertionError(f"no open {severity} alert for patient {patient_id}")
