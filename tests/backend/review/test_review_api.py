"""Kvittér alle grønne over the JSON API: a clinician's scope only, audited per patient."""

from __future__ import annotations

from typing import Any

from tests.backend.web._support import add_readings, api_token


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_specialist_acknowledges_the_green_patients_of_her_department(client: Any, world: Any, db: Any) -> None:
    add_readings(db, patient_id=world.hospital_patient_id, agent_id=world.agent_id, device_id=None, days=1)
    url = "/api/v1/worklist/green/acknowledge"
    assert client.post(url).status_code == 401
    assert client.post(url, headers=_h(api_token(client, world.citizen))).status_code == 403
    tok = api_token(client, world.specialist)
    before = client.get("/api/v1/worklist", headers=_h(tok)).json()
    assert world.hospital_patient_id in {g["patient_id"] for g in before["green"]}
    r = client.post(url, headers=_h(tok))
    assert r.status_code == 200, r.text
    assert r.json() == {"patients": 1, "reviewed_by": world.specialist}
    after = client.get("/api/v1/worklist", headers=_h(tok)).json()
    assert after["green"] == [] and after["green_total"] == 0 and after["counts"]["green"] == 0
    audited = db.execute(
        "SELECT actor FROM audit_log WHERE patient_id = %s AND action = 'kvittering (green)'",
        (world.hospital_patient_id,),
    ).fetchall()
    assert len(audited) == 1 and audited[0][0].startswith(world.specialist)
    # The patient is outside the nurse's municipality, and nothing in it is green: nothing to acknowledge.
    assert client.post(url, headers=_h(api_token(client, world.nurse))).json()["patients"] == 0
