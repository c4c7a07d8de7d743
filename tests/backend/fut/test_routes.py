"""The admin's FUT page on the live app: the outbox's counts and the age of the oldest undelivered
measurement, the refused submissions with FUT's reason, and a "retry" that puts one back in line
(recorded in admin_audit) and is then sent; the same numbers on /metrics; admins only."""

from __future__ import annotations

import dataclasses
import random
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from backend.fhir.fut import FutLink
from backend.fut import FutClient, FutConfig, enqueue_new, link_patient, send_due
from tests.backend.fut.fake_fut import FakeFut
from tests.backend.web._support import store_reading, web_login

FUT = "https://fut.test/fhir"


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as c:
        yield c


def _metric(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.M)
    assert m, f"{name} not on /metrics"
    return float(m.group(1))


def test_refused_submissions_are_listed_with_their_reason_and_retried_on_request(
        live: Any, world: Any, client: httpx.Client, conn: psycopg.Connection[Any]) -> None:
    n = 8000 + random.randrange(10**6)
    good = FutLink(f"{FUT}/Patient/{n}", f"{FUT}/EpisodeOfCare/{n}", f"{FUT}/ServiceRequest/{n}", "2",
                   f"{FUT}/Device/{n}")
    stale = dataclasses.replace(good, service_request=f"{FUT}/ServiceRequest/withdrawn-{n}")
    fake = FakeFut(known={good.patient, good.episode_of_care, good.service_request, good.device}).start()
    fut = FutClient(FutConfig(base_url=fake.base_url, oauth=fake.oauth(), evaluation_wait_s=0))
    pid = world.other_patient_id  # a citizen no other test of this module links to FUT
    agent = f"fut-page-{uuid.uuid4().hex[:6]}"
    conn.execute("INSERT INTO agents (id, patient_id) VALUES (%s, %s)", (agent, pid))
    conn.execute("INSERT INTO devices (agent_id, address, model) VALUES (%s, 'AA:BB:CC:DD:EE:31', 'UA-651BLE')",
                 (agent,))
    admin = httpx.Client(base_url=live.url, follow_redirects=False, timeout=30)
    try:
        link_patient(conn, patient_id=pid, link=stale, submit_from=datetime.now(UTC) - timedelta(minutes=5))
        rid = store_reading(conn, live, patient_id=pid, agent_id=agent, kind="weight", components={"weight": 80.1},
                            unit="kg")
        enqueue_new(conn)
        send_due(conn, fut)
        assert conn.execute("SELECT state FROM fut_outbox WHERE measurement_id = %s", (rid,)).fetchone()[0] == "refused"

        csrf = web_login(admin, world.admin)
        page = admin.get("/admin/fut", headers={"accept": "text/html"})
        assert page.status_code == 200
        row = re.search(rf"<tr>\s*<td><code>{rid}</code></td>.*?</tr>", page.text, re.S)
        assert row, page.text[-3000:]
        assert f"ServiceRequest/withdrawn-{n}" in row.group(0)  # FUT's reason, as FUT gave it
        counts = {m.group(1): m.group(2) for m in re.finditer(r'data-state="(\w+)">([^<]*)<', page.text)}
        db = dict(conn.execute("SELECT state, count(*) FROM fut_outbox GROUP BY state").fetchall())
        assert int(counts["refused"]) == db["refused"] and int(counts["sent"]) == db.get("sent", 0)
        metrics = client.get("/metrics").text
        assert _metric(metrics, 'nearcare_fut_outbox_rows{state="refused"}') == db["refused"]
        assert 'nearcare_fut_oldest_pending_age_seconds' in metrics

        # Not without the session's CSRF token, and not for a nurse.
        assert admin.post(f"/admin/fut/{rid}/retry").status_code == 403
        nurse = httpx.Client(base_url=live.url, follow_redirects=False, timeout=30)
        with nurse:
            nurse_csrf = web_login(nurse, world.nurse)
            assert nurse.post(f"/admin/fut/{rid}/retry", data={"csrf": nurse_csrf}).status_code == 403
        assert conn.execute("SELECT state FROM fut_outbox WHERE measurement_id = %s", (rid,)).fetchone()[0] == "refused"

        # The link is put right; the admin retries: audited, and the sender delivers it once.
        link_patient(conn, patient_id=pid, link=good)
        done = admin.post(f"/admin/fut/{rid}/retry", data={"csrf": csrf})
        assert done.status_code == 303 and done.headers["location"] == f"/admin/fut?retried={rid}"
        audit = conn.execute("SELECT actor, patient_id, before, after FROM admin_audit WHERE action = 'fut retry'"
                             " AND after->>'measurement_id' = %s", (str(rid),)).fetchall()
        assert len(audit) == 1
        actor, audited_pid, before, after = audit[0]
        assert world.admin in actor and audited_pid == pid
        assert before["state"] == "refused" and "withdrawn" in before["reason"] and after["state"] == "retrying"
        again = admin.post(f"/admin/fut/{rid}/retry", data={"csrf": csrf})  # no longer refused: nothing to do
        assert again.headers["location"] == f"/admin/fut?gone={rid}"
        send_due(conn, fut)
        assert conn.execute("SELECT state FROM fut_outbox WHERE measurement_id = %s", (rid,)).fetchone()[0] == "sent"
        assert list(fake.created.values()) == [1]
        page = admin.get(f"/admin/fut?retried={rid}", headers={"accept": "text/html"})
        assert f"<code>{rid}</code>" not in page.text and 'id="fut-retried"' in page.text
    finally:
        admin.close()
        fut.close()
        fake.stop()


@pytest.fixture
def no_cpr_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from backend.fhir import cpr

    monkeypatch.delenv("NEARCARE_CPR_KEY", raising=False)
    monkeypatch.delenv("NEARCARE_CPR_KEY_FILE", raising=False)
    cpr.keys_from_environment.cache_clear()
    yield
    cpr.keys_from_environment.cache_clear()


def test_an_admin_links_a_citizen_to_fut_and_the_cpr_number_is_kept_sealed(
        live: Any, world: Any, conn: psycopg.Connection[Any], no_cpr_key: None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from backend.fhir import cpr
    from tests.backend.fhir.test_conformance import random_cpr

    ref = f"fut-link-{uuid.uuid4().hex[:8]}"
    pid = conn.execute("INSERT INTO patients (external_ref, name, programme, municipality) VALUES (%s, 'L', 'copd',"
                       " 'Aarhus') RETURNING id", (ref,)).fetchone()[0]
    n = random.randrange(10**6)
    number = random_cpr()
    typed = {"patient_ref": ref, "fut_patient": f"{FUT}/Patient/{n}", "episode_of_care": f"{FUT}/EpisodeOfCare/{n}",
             "service_request": f"{FUT}/ServiceRequest/{n}", "service_request_version": "4",
             "device": f"{FUT}/Device/{n}", "cpr_number": f"{number[:6]}-{number[6:]}"}
    admin = httpx.Client(base_url=live.url, follow_redirects=False, timeout=30)
    with admin:
        csrf = web_login(admin, world.admin)

        def post(**change: str) -> httpx.Response:
            return admin.post("/admin/fut/links", data={"csrf": csrf, **typed, **change})

        # Refused, with words, keeping what was typed except the CPR number; nothing kept.
        for change, words in (({"fut_patient": f"Patient/{n}"}, "fulde adresse"),
                              ({"service_request_version": "4 5"}, "FHIR-id"),
                              ({"patient_ref": "nobody-" + ref, "cpr_number": ""}, "ingen borger"),
                              ({"cpr_number": "3213991234"}, "ti cifre"), ({}, "krypteringsnøgle")):
            r = post(**change)
            assert r.status_code == 400 and words in r.text, change
            assert typed["episode_of_care"] in r.text and number not in r.text and number[:6] + "-" not in r.text
        assert conn.execute("SELECT count(*) FROM fut_links WHERE patient_id = %s", (pid,)).fetchone()[0] == 0

        monkeypatch.setenv("NEARCARE_CPR_KEY", cpr.CprKeys.generate())
        cpr.keys_from_environment.cache_clear()
        keys = cpr.keys_from_environment()
        done = post()
        assert done.status_code == 303 and done.headers["location"] == f"/admin/fut?linked={ref}"
        assert cpr.cpr_of(conn, keys, patient_id=pid) == number
        link = conn.execute("SELECT fut_patient, service_request_version FROM fut_links WHERE patient_id = %s",
                            (pid,)).fetchone()
        assert link == (typed["fut_patient"], "4")
        page = admin.get(f"/admin/fut?linked={ref}", headers={"accept": "text/html"})
        row = re.search(rf'<tr data-patient="{ref}">.*?</tr>', page.text, re.S)
        assert row and typed["device"] in row.group(0) and "ja, krypteret" in row.group(0)
        assert number not in page.text

        # A new Device reference, no CPR typed: the number stays as kept.
        assert post(device=f"{FUT}/Device/new-{n}", cpr_number="").status_code == 303
        assert cpr.cpr_of(conn, keys, patient_id=pid) == number
    audit = conn.execute("SELECT before, after, coalesce(before::text, '') || after::text FROM admin_audit"
                         " WHERE action = 'fut link' AND patient_id = %s ORDER BY id", (pid,)).fetchall()
    assert len(audit) == 2 and audit[0][0] is None and audit[0][1]["cpr"] == "kept, sealed"
    assert audit[1][0]["device"] == typed["device"] and audit[1][1]["device"] == f"{FUT}/Device/new-{n}"
    assert audit[1][1]["cpr"] == "unchanged"
    assert all(number not in text and typed["cpr_number"] not in text for _, _, text in audit)
