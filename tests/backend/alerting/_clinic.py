"""A small clinic of its own for the view tests (worklist, review, population): a municipality
with a nurse team, a hospital department with a specialist team, patients, alerts written as
alerting writes them, and readings. Every name carries a fresh tag, so tests sharing the session
database never see each other's rows."""

from __future__ import annotations

import json
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from backend.accounts.model import Role, User


@dataclass
class Clinic:
    conn: Any
    tag: str = field(default_factory=lambda: secrets.token_hex(3))

    def __post_init__(self) -> None:
        self.municipality = f"Viewkommune-{self.tag}"
        self.department = f"Viewafdeling-{self.tag}"
        self.nurse_team = self._team(f"view-sygepleje-{self.tag}", "municipal", self.municipality, None)
        self.other_team = self._team(f"view-akut-{self.tag}", "municipal", self.municipality, None)
        self.hospital_team = self._team(f"view-lunge-{self.tag}", "hospital", None, self.department)

    def _team(self, key: str, sector: str, municipality: str | None, department: str | None) -> tuple[int, str]:
        row = self.conn.execute(
            "INSERT INTO teams (key, name, sector, municipality, department) VALUES (%s,%s,%s,%s,%s) RETURNING id",
            (key, f"Team {key}", sector, municipality, department),
        ).fetchone()
        return int(row[0]), key

    def nurse(self) -> User:
        team_id, key = self.nurse_team
        return User(
            id=1,
            username=f"nurse-{self.tag}",
            display_name="Sara View",
            role=Role.NURSE,
            team_id=team_id,
            team_key=key,
            municipality=self.municipality,
        )

    def specialist(self) -> User:
        team_id, key = self.hospital_team
        return User(
            id=2,
            username=f"spec-{self.tag}",
            display_name="Lars View",
            role=Role.SPECIALIST,
            team_id=team_id,
            team_key=key,
            department=self.department,
        )

    def patient(
        self, *, municipality: str | None = None, department: str | None = None, programme: str = "copd"
    ) -> int:
        ref = f"view-{self.tag}-{secrets.token_hex(3)}"
        row = self.conn.execute(
            "INSERT INTO patients (external_ref, name, programme, municipality, department)"
            " VALUES (%s,%s,%s,%s,%s) RETURNING id",
            (ref, f"Borger {ref}", programme, municipality or self.municipality, department),
        ).fetchone()
        pid = int(row[0])
        self.conn.execute("INSERT INTO agents (id, patient_id) VALUES (%s, %s)", (f"ag-{ref}", pid))
        return pid

    def agent(self, patient_id: int) -> str:
        return str(self.conn.execute("SELECT id FROM agents WHERE patient_id = %s", (patient_id,)).fetchone()[0])

    def alert(
        self,
        patient_id: int,
        *,
        severity: str,
        team_key: str,
        state: str = "open",
        opened: timedelta = timedelta(minutes=30),
        rule_id: str | None = None,
    ) -> int:
        at = datetime.now(UTC) - opened
        row = self.conn.execute(
            """INSERT INTO alerts (patient_id, rule_id, rule_kind, measurement, severity, state, title, opened_at,
                                   updated_at, last_value, team_key, owner_since, acknowledged_by, acknowledged_at)
               VALUES (%s, %s, 'absolute', 'spo2', %s, %s, %s, %s, %s, 85, %s, %s, %s, %s) RETURNING id""",
            (
                patient_id,
                rule_id or f"view.{severity}.{secrets.token_hex(2)}",
                severity,
                state,
                f"{severity} alert",
                at,
                at,
                team_key,
                at,
                "someone" if state == "acknowledged" else None,
                at if state == "acknowledged" else None,
            ),
        ).fetchone()
        return int(row[0])

    def reading(
        self, patient_id: int, *, kind: str = "spo2", value: float = 95.0, at: datetime | None = None
    ) -> uuid.UUID:
        at = at or datetime.now(UTC)
        component = "systolic" if kind == "blood_pressure" else kind
        rid = uuid.uuid4()
        self.conn.execute(
            """INSERT INTO measurements (id, measured_at, patient_id, agent_id, kind, value, components, unit,
                                         device_clock_trusted, agent_received_at)
               VALUES (%s, %s, %s, %s, %s, %s, %s, '%%', true, %s)""",
            (rid, at, patient_id, self.agent(patient_id), kind, value, json.dumps({component: value}), at),
        )
        return rid
