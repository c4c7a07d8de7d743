"""A citizen's readings as a spreadsheet (issue 13): pure formatting, and the route against the
real app (clinician in scope only, audited so the citizen's Min Log shows it)."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime
from typing import Any

from backend.api.clinical import Reading
from backend.web.export import readings_csv
from tests.backend.web._support import add_readings, web_login


def _reading(kind: str, components: dict[str, Any], *, flags: list[str] | None = None, model: str | None = None,
             trusted: bool = True) -> Reading:
    at = datetime(2026, 11, 30, 8, 5, tzinfo=UTC)
    return Reading(uuid.uuid4(), kind, components, "", at, at, at, trusted, [], flags or [], "tab-1", 1, model,
                   "AA:BB:CC:DD:EE:FF", None)


def _rows(text: str, delimiter: str) -> list[list[str]]:
    assert text.startswith("\ufeff")
    return list(csv.reader(io.StringIO(text[1:]), delimiter=delimiter))


def test_danish_spreadsheet_one_line_per_value_with_decimal_comma() -> None:
    bp = _reading("blood_pressure", {"systolic": 126.0, "diastolic": 78.0, "mean_arterial": 94.3},
                  flags=["cuff_loose"])
    weight = _reading("weight", {"weight": 80.45}, trusted=False)
    rows = _rows(readings_csv([bp, weight], lang="da", tz="Europe/Copenhagen"), ";")
    assert rows[0][0] == "Målt (Europe/Copenhagen)" and rows[0][3] == "Værdi"
    assert len(rows) == 1 + 3 + 1
    assert rows[1][:5] == ["2026-11-30 09:05:00", "Blodtryk", "Systolisk", "126", "mmHg"]
    assert rows[3][3] == "94,3"
    assert rows[1][7] == "manchetten sad løst"
    assert rows[4][1:5] == ["Vægt", "Vægt", "80,45", "kg"] and "ur" in rows[4][7]
    assert rows[4][8] == str(weight.id)


def test_english_spreadsheet_uses_commas_and_points() -> None:
    rows = _rows(readings_csv([_reading("spo2", {"spo2": 94.5})], lang="en", tz="UTC"), ",")
    assert rows[0][0] == "Measured (UTC)"
    assert rows[1][:5] == ["2026-11-30 08:05:00", "Oxygen saturation", "SpO2", "94.5", "%"]


def test_text_a_spreadsheet_would_run_as_a_formula_is_quoted() -> None:
    rows = _rows(readings_csv([_reading("pulse", {"pulse": 70.0}, model="=HYPERLINK(\"x\")")], lang="da",
                              tz="UTC"), ";")
    assert rows[1][6].startswith("'=HYPERLINK")


def test_export_route_is_for_clinicians_in_scope_and_shows_in_min_log(client: Any, world: Any, db: Any) -> None:
    add_readings(db, patient_id=world.patient_id, agent_id=world.agent_id, device_id=world.device_id, days=2)
    stored = db.execute("SELECT count(*) FROM measurements WHERE patient_id = %s", (world.patient_id,)).fetchone()[0]
    web_login(client, world.nurse)
    r = client.get(f"/patients/{world.patient_id}/readings.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"].startswith('attachment; filename="maalinger-')
    assert "no-store" in r.headers.get("cache-control", "")
    rows = _rows(r.content.decode("utf-8"), ";")
    ids = {row[8] for row in rows[1:]}
    assert len(ids) == stored  # every reading of the last year, none dropped
    assert db.execute(
        "SELECT count(*) FROM audit_log WHERE patient_id = %s AND action = 'readings export' AND allowed",
        (world.patient_id,)).fetchone()[0] >= 1

    client.cookies.clear()
    web_login(client, world.other_nurse)
    r = client.get(f"/patients/{world.patient_id}/readings.csv", headers={"accept": "text/html"})
    assert r.status_code == 403 and not r.headers["content-type"].startswith("text/csv")

    client.cookies.clear()
    web_login(client, world.citizen)
    r = client.get(f"/patients/{world.patient_id}/readings.csv", headers={"accept": "text/html"})
    assert r.status_code == 403
    assert "hentede dine målinger som regneark" in client.get("/min-log", headers={"accept": "text/html"}).text
