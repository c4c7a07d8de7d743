"""The admin's gateway-token page on the live app: a token is issued (shown once, only its hash
kept), works on the PHD upload endpoint, is listed, and once revoked is refused; issuing and
revoking are in admin_audit without the token; bad input is refused with words; admins only."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from backend.fhir.export import patient_bundle
from backend.fhir.gateways import GatewayError, normalise_sysid
from tests.backend.web._support import web_login

SYSID = "fe:ed:ab:ee:de:ad:be:01"


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as c:
        yield c


def test_system_ids_are_eui64() -> None:
    assert normalise_sysid(SYSID) == "FE-ED-AB-EE-DE-AD-BE-01"
    assert normalise_sysid("FEEDABEEDEADBE01") == "FE-ED-AB-EE-DE-AD-BE-01"
    for bad in ("FE-ED", "GG-ED-AB-EE-DE-AD-BE-01", ""):
        with pytest.raises(GatewayError):
            normalise_sysid(bad)


def _bundle(world: Any, sysid: str) -> dict[str, Any]:
    at = datetime.now(UTC) - timedelta(minutes=1)
    bundle = patient_bundle(
        patient={"external_ref": world.patient_ref, "name": "x"},
        readings=[{"id": uuid.uuid4(), "kind": "weight", "components": {"weight": 79.5}, "measured_at": at,
                   "agent_received_at": at, "quality": [], "flags": [], "device_clock_trusted": True,
                   "agent_id": world.agent_id, "device_id": 1}],
        devices={1: {"address": "AA:BB:CC:DD:EE:01", "model": "Scale", "manufacturer": "Third", "firmware": "3"}},
    )
    for e in bundle["entry"]:  # the third-party gateway names itself with its own system id
        for ident in e["resource"].get("identifier") or []:
            if ident.get("system") == "urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680":
                ident["value"] = sysid
    return bundle


def test_an_admin_issues_lists_and_revokes_gateway_tokens(live: Any, world: Any, client: httpx.Client,
                                                          conn: psycopg.Connection[Any]) -> None:
    admin = httpx.Client(base_url=live.url, follow_redirects=False, timeout=30)
    label = f"Tredjepart {uuid.uuid4().hex[:6]}"
    with admin:
        csrf = web_login(admin, world.admin)
        assert 'href="/admin/gateways"' in admin.get("/admin", headers={"accept": "text/html"}).text
        # Bad input: refused with words, nothing kept.
        bad = admin.post("/admin/gateways", data={"csrf": csrf, "agent_id": world.agent_id, "sysid": "12-34"})
        assert bad.status_code == 400 and "EUI-64" in bad.text
        nobody = admin.post("/admin/gateways", data={"csrf": csrf, "agent_id": "no-such-agent", "sysid": SYSID})
        assert nobody.status_code == 400 and 'role="alert"' in nobody.text
        assert admin.post("/admin/gateways", data={"agent_id": world.agent_id, "sysid": SYSID}).status_code == 403

        made = admin.post("/admin/gateways", data={"csrf": csrf, "agent_id": world.agent_id, "sysid": SYSID,
                                                   "label": label})
        assert made.status_code == 200
        token = re.search(r'id="gateway-token">([^<]+)<', made.text)
        assert token, made.text[-2000:]
        secret = token.group(1)
        row = conn.execute("SELECT id, token_sha256, sysid, issued_by FROM phd_gateways WHERE label = %s",
                           (label,)).fetchone()
        assert row is not None
        gid, digest, sysid, issued_by = row
        assert bytes(digest) == hashlib.sha256(secret.encode()).digest() and sysid == "FE-ED-AB-EE-DE-AD-BE-01"
        assert issued_by == world.admin
        listed = admin.get("/admin/gateways", headers={"accept": "text/html"})
        assert label in listed.text and secret not in listed.text  # shown once, never again

        # The token works for its own gateway's Bundles...
        gateway = {"Authorization": f"Bearer {secret}", "Content-Type": "application/fhir+json"}
        ok = client.post("/fhir/phd", json=_bundle(world, sysid), headers=gateway)
        assert ok.status_code == 200 and [e["response"]["status"] for e in ok.json()["entry"]] == ["201 Created"]
        lower = client.post("/fhir/phd", json=_bundle(world, "fe:ed:ab:ee:de:ad:be:01"), headers=gateway)
        assert lower.status_code == 200  # the same EUI-64, written another way
        assert client.post("/fhir/phd", json=_bundle(world, "FE-ED-00-00-00-00-00-02"),
                           headers=gateway).status_code == 403  # ...not for another gateway's

        # A nurse cannot revoke it; the admin can, once; then the token is refused.
        nurse = httpx.Client(base_url=live.url, follow_redirects=False, timeout=30)
        with nurse:
            n_csrf = web_login(nurse, world.nurse)
            assert nurse.post(f"/admin/gateways/{gid}/revoke", data={"csrf": n_csrf}).status_code == 403
        done = admin.post(f"/admin/gateways/{gid}/revoke", data={"csrf": csrf})
        assert done.status_code == 303 and done.headers["location"] == f"/admin/gateways?revoked={gid}"
        assert admin.post(f"/admin/gateways/{gid}/revoke", data={"csrf": csrf}).status_code == 404
        assert client.post("/fhir/phd", json=_bundle(world, sysid), headers=gateway).status_code == 401
        page = admin.get(f"/admin/gateways?revoked={gid}", headers={"accept": "text/html"})
        listed_row = re.search(rf'<tr data-gateway="{gid}">.*?</tr>', page.text, re.S)
        assert listed_row and world.admin in listed_row.group(0) and "revoke" not in listed_row.group(0)

    audit = conn.execute("SELECT action, before::text, after::text FROM admin_audit WHERE action LIKE 'phd gateway%%'"
                         " AND coalesce(after->>'gateway_id', '') = %s ORDER BY id", (str(gid),)).fetchall()
    assert [a for a, _, _ in audit] == ["phd gateway issued", "phd gateway revoked"]
    assert all(secret not in (b or "") + (a or "") for _, b, a in audit)
