"""The population page and API on the live app: every patient of the nurse's municipality ranked,
with open alerts, adherence and the team burden; audited as an overview."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.backend.web._support import api_token, web_login


def test_population_page_ranks_the_nurses_patients(client: Any, world: Any, db: Any) -> None:
    db.execute(
        "INSERT INTO monitoring_plans (patient_id, measurements, updated_by, starts_at) VALUES (%s, %s, 'test', %s)",
        (world.patient_id, json.dumps([{"kind": "spo2", "times": ["08:00"]}]), datetime.now(UTC) - timedelta(days=9)),
    )
    db.execute(
        """INSERT INTO alerts (patient_id, rule_id, rule_kind, measurement, severity, state, title, opened_at,
                               updated_at, team_key, owner_since)
           VALUES (%s, 'copd.spo2.absolute', 'absolute', 'spo2', 'red', 'open', 'Lav iltmætning', now(), now(),
                   %s, now())""",
        (world.patient_id, f"sygepleje-{world.tag}"),
    )
    web_login(client, world.nurse)
    r = client.get("/population", headers={"accept": "text/html"})
    assert r.status_code == 200
    risk = r.text[r.text.index('id="risk"') :]
    first = re.search(r'<tr><td class="num risk-cell"><strong>([0-9,]+)</strong>.*?<a href="/patients/(\d+)"', risk,
                      re.S)
    assert first and int(first.group(2)) == world.patient_id
    assert float(first.group(1).replace(",", ".")) >= 100 + 20  # one open red, no planned measurement taken
    # The score is explained: in general above the table, and term by term in the row.
    assert "Sådan regnes risikoen" in r.text and "rød 100, gul 30" in r.text
    body = risk[risk.index("<tbody>"):]
    row = body[: body.index("</tr>")]
    assert "100 (1 rød) + 20 (100 % ikke taget)" in row
    assert 'class="sev sev-red" title="Rød">1</span>' in row and "0 %" in row and "(0 af " in row
    assert f"/patients/{world.other_patient_id}" not in risk  # another municipality
    row = db.execute(
        "SELECT actor, detail FROM audit_log WHERE action = 'population view' ORDER BY id DESC LIMIT 1"
    ).fetchone()
    assert row[0].startswith(world.nurse) and row[1].endswith("patients")

    tok = api_token(client, world.nurse)
    pop = client.get("/api/v1/population", headers={"Authorization": f"Bearer {tok}"}).json()
    top = pop["patients"][0]
    assert top["patient_id"] == world.patient_id and top["open"]["red"] == 1 and top["adherence"] == 0.0
    assert top["planned"] >= 8 and top["taken"] == 0
    assert client.get("/population", headers={"accept": "text/html"}).status_code == 200
    client.cookies.clear()
    web_login(client, world.citizen)
    assert client.get("/population", headers={"accept": "text/html"}).status_code == 403
