"""CPR numbers: sealed at rest (AES-GCM, the citizen's id bound in), opened only into the PHD
export's Patient, and a planted number appears in no log, metric, dead letter, audit detail,
outbox row or any other column of the database, whichever way it came in (kept for the citizen,
echoed by FUT in a refusal, sent by a third-party gateway in its Bundle)."""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from backend.fhir import cpr
from backend.fhir.cpr import CprError, CprKeys, cpr_of, normalise, seal, store_cpr, unseal
from backend.fhir.export import gateway_system_id, patient_bundle
from backend.fhir.fut import FutLink
from backend.fhir.upload import register_gateway
from backend.fut import FutClient, FutConfig, enqueue_new, link_patient, send_due
from tests.backend.fhir.test_conformance import random_cpr
from tests.backend.fut.fake_fut import FakeFut
from tests.backend.web._support import api_token, store_reading, web_login


def test_sealed_numbers_open_only_for_their_citizen_and_key() -> None:
    keys = CprKeys.from_env({"NEARCARE_CPR_KEY": CprKeys.generate()})
    assert keys is not None
    number = random_cpr()
    key_id, sealed = seal(keys, patient_id=7, cpr=f"{number[:6]}-{number[6:]}")
    assert number.encode() not in sealed and number[:6].encode() not in sealed
    assert unseal(keys, patient_id=7, key_id=key_id, sealed=sealed) == number
    with pytest.raises(CprError, match="does not open for this citizen") as moved:
        unseal(keys, patient_id=8, key_id=key_id, sealed=sealed)  # copied onto another citizen's row
    assert number not in str(moved.value)
    other = CprKeys(os.urandom(32))
    with pytest.raises(CprError, match="not configured"):
        unseal(other, patient_id=7, key_id=key_id, sealed=sealed)
    # A rotated key: the old one, retired, still opens what it sealed.
    rotated = CprKeys(other.current, retired=(keys.current,))
    assert unseal(rotated, patient_id=7, key_id=key_id, sealed=sealed) == number
    assert base64.urlsafe_b64encode(keys.current).decode().rstrip("=") not in repr(keys)


def test_bad_numbers_and_keys_are_refused_without_echoing_them(tmp_path: Path) -> None:
    for bad in ("12345", "32019912345", "3201991234", "0113991234", "01019912a4"):
        with pytest.raises(CprError) as exc:
            normalise(bad)
        assert bad not in str(exc.value)
    assert normalise(" 010199-1234 ") == "0101991234"
    assert CprKeys.from_env({}) is None
    with pytest.raises(CprError, match="32 bytes"):
        CprKeys.from_env({"NEARCARE_CPR_KEY": base64.b64encode(b"short").decode()})
    with pytest.raises(CprError, match="not base64"):
        CprKeys.from_env({"NEARCARE_CPR_KEY": "!!!"})
    key_file = tmp_path / "cpr.key"
    key_file.write_text(CprKeys.generate() + "\n")
    assert CprKeys.from_env({"NEARCARE_CPR_KEY_FILE": str(key_file)}) is not None
    assert cpr.mask("CPR 010170-1234 og 0101701234, ikke 20260101123456") == "CPR <cpr> og <cpr>, ikke 20260101123456"


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as c:
        yield c


@pytest.fixture
def cpr_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[CprKeys]:
    """The live app's key, as NEARCARE_CPR_KEY in the process's environment."""
    key = CprKeys.generate()
    monkeypatch.setenv("NEARCARE_CPR_KEY", key)
    cpr.keys_from_environment.cache_clear()
    keys = cpr.keys_from_environment()
    assert keys is not None
    yield keys
    monkeypatch.delenv("NEARCARE_CPR_KEY")
    cpr.keys_from_environment.cache_clear()


def _whole_database_with(conn: psycopg.Connection[Any], needles: list[str]) -> list[str]:
    """Every table (and column text) of the database holding one of ``needles``."""
    found = []
    tables = [r[0] for r in conn.execute(
        "SELECT quote_ident(table_name) FROM information_schema.tables"
        " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'").fetchall()]
    patterns = [f"%{n}%" for n in needles]
    for t in tables:
        hit = conn.execute(f"SELECT count(*) FROM {t} x WHERE x::text LIKE ANY(%s)", (patterns,)).fetchone()
        if hit and hit[0]:
            found.append(f"{t} ({hit[0]} rows)")
    return found


def test_a_planted_cpr_is_in_the_export_and_nowhere_else(
        live: Any, world: Any, client: httpx.Client, conn: psycopg.Connection[Any], cpr_key: CprKeys,
        caplog: pytest.LogCaptureFixture) -> None:
    planted = random_cpr()
    needles = [planted, f"{planted[:6]}-{planted[6:]}"]
    caplog.set_level(logging.DEBUG)
    pid = world.patient_id
    store_cpr(conn, cpr_key, patient_id=pid, cpr=needles[1])
    assert cpr_of(conn, cpr_key, patient_id=pid) == planted
    store_reading(conn, live, patient_id=pid, agent_id=world.agent_id, kind="spo2", components={"spo2": 93.0},
                  unit="%")

    # 1. The export (audited like any look at the citizen) carries it; nothing about it is kept.
    nurse = {"Authorization": f"Bearer {api_token(client, world.nurse)}"}
    export = client.get(f"/api/v1/patients/{pid}/fhir", headers=nurse)
    assert export.status_code == 200, export.text
    (patient,) = [e["resource"] for e in export.json()["entry"] if e["resource"]["resourceType"] == "Patient"]
    assert {"use": "official", "system": "urn:oid:1.2.208.176.1.2", "value": planted} in patient["identifier"]

    # 2. FUT echoes the number in a refusal: masked before it is kept or logged.
    class EchoingFut(FakeFut):
        def check(self, body: Any) -> list[dict[str, Any]]:
            raise ValueError(f"Patient {needles[1]} ({planted}) has no active EpisodeOfCare")

    n = 7000 + random.randrange(10**6)
    link = FutLink(*(f"https://fut.test/fhir/{r}/{n}" for r in ("Patient", "EpisodeOfCare", "ServiceRequest")),
                   "1", f"https://fut.test/fhir/Device/{n}")
    fake = EchoingFut(known={link.patient, link.episode_of_care, link.service_request, link.device}).start()
    fut = FutClient(FutConfig(base_url=fake.base_url, oauth=fake.oauth(), evaluation_wait_s=0))
    try:
        link_patient(conn, patient_id=pid, link=link, submit_from=datetime.now(UTC) - timedelta(hours=1))
        enqueue_new(conn)
        send_due(conn, fut)
    finally:
        fut.close()
        fake.stop()
    assert fake.answers["refused"] >= 1
    assert conn.execute("SELECT count(*) FROM fut_outbox WHERE patient_id = %s AND state = 'refused'"
                        " AND reason LIKE '%%<cpr>%%'", (pid,)).fetchone()[0] >= 1

    # 3. The admin's FUT page shows the refusal (masked); looking at it is audited.
    admin = httpx.Client(base_url=live.url, follow_redirects=False, timeout=30)
    with admin:
        web_login(admin, world.admin)
        page = admin.get("/admin/fut", headers={"accept": "text/html"})
        assert page.status_code == 200 and "has no active EpisodeOfCare" in page.text
        assert all(x not in page.text for x in needles)

    # 4. A third-party gateway sends a Bundle whose Patient carries the number, one reading from a
    # device nobody registered (held) and, separately, a broken Bundle with the number in it.
    at = datetime.now(UTC) - timedelta(minutes=1)
    bundle = patient_bundle(
        patient={"external_ref": world.patient_ref, "name": "x", "cpr": planted},
        readings=[{"id": uuid.uuid4(), "kind": "spo2", "components": {"spo2": 95.0}, "measured_at": at,
                   "agent_received_at": at, "quality": [], "flags": [], "device_clock_trusted": True,
                   "agent_id": world.agent_id, "device_id": 1}],
        devices={1: {"address": "AA:BB:CC:DD:EE:7F", "model": "Oximeter", "manufacturer": "Third", "firmware": "9"}},
    )
    token = register_gateway(conn, agent_id=world.agent_id, sysid=gateway_system_id(world.agent_id))
    gateway = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
    sent = client.post("/fhir/phd", json=bundle, headers=gateway)
    assert sent.status_code == 200 and [e["response"]["status"] for e in sent.json()["entry"]] == ["202 Accepted"]
    broken = json.loads(json.dumps(bundle))
    broken["entry"][0]["resource"]["birthDate"] = planted  # not a date: the Bundle is not valid FHIR
    refused = client.post("/fhir/phd", json=broken, headers=gateway)
    assert refused.status_code == 400 and all(x not in refused.text for x in needles)

    # Nowhere: not in any table (sealed in patient_cpr, masked in fut_outbox, absent from audit_log,
    # dead_letters, rejected_readings...), not in /metrics, not in any log line.
    assert _whole_database_with(conn, needles) == []
    assert any(t.startswith("patients ") for t in _whole_database_with(conn, [world.patient_ref]))  # it can find
    audited = conn.execute("SELECT action, coalesce(detail, '') FROM audit_log WHERE patient_id = %s",
                           (pid,)).fetchall()
    assert "fhir export" in {a for a, _ in audited}  # the export was audited...
    assert all(x not in d for _, d in audited for x in needles)  # ...without the number
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and "nearcare_fut_outbox_rows" in metrics.text
    assert all(x not in metrics.text for x in needles)
    assert all(x not in caplog.text for x in needles)
    assert "has no active EpisodeOfCare" in caplog.text and "<cpr>" in caplog.text  # logged, masked


def test_a_kept_number_without_its_key_fails_the_export_loudly(conn: psycopg.Connection[Any]) -> None:
    from backend.accounts.access import Patient
    from backend.fhir.query import export_patient

    ref = f"cpr-{uuid.uuid4().hex[:8]}"
    pid = conn.execute("INSERT INTO patients (external_ref, name, programme, municipality) VALUES (%s, 'C', 'copd',"
                       " 'Aarhus') RETURNING id", (ref,)).fetchone()[0]
    planted = random_cpr()
    keys = CprKeys(os.urandom(32))
    store_cpr(conn, keys, patient_id=pid, cpr=planted)
    patient = Patient(pid, ref, "C", None, "copd", "Aarhus", None, True)
    other = dataclasses.replace(keys, current=os.urandom(32))
    with pytest.raises(CprError) as exc:
        export_patient(conn, patient=patient, cpr_keys=other)
    assert planted not in str(exc.value)
    bundle = export_patient(conn, patient=patient, cpr_keys=keys)
    assert planted in json.dumps(bundle)
