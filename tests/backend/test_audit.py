"""The read audit's list-view rows: one per citizen shown, and a page's own periodic refresh folded
to one row per citizen, viewer and clock hour (issue 13: the audit list got a "worklist refresh"
row every 25-60 s per open tab)."""

from __future__ import annotations

import secrets
from typing import Any

from backend import audit
from backend.accounts.model import Role, User


def _patients(db: Any, n: int) -> list[int]:
    tag = secrets.token_hex(3)
    return [int(db.execute(
        "INSERT INTO patients (external_ref, name, programme, municipality) VALUES (%s, %s, 'copd', 'Aarhus')"
        " RETURNING id", (f"fold-{tag}-{i}", f"Fold {i}")).fetchone()[0]) for i in range(n)]


def _rows(db: Any, actor: str, action: str, pids: list[int]) -> int:
    row = db.execute("SELECT count(*) FROM audit_log WHERE actor LIKE %s AND action = %s AND patient_id = ANY(%s)",
                     (actor + "%", action, pids)).fetchone()
    return int(row[0])


def test_a_pages_own_refresh_is_one_row_per_citizen_viewer_and_hour(db: Any) -> None:
    pids = _patients(db, 3)
    sara = User(9001, f"sara-{secrets.token_hex(3)}", "Sara Fold", Role.NURSE, team_name="Team", municipality="Aarhus")
    lars = User(9002, f"lars-{secrets.token_hex(3)}", "Lars Fold", Role.NURSE, team_name="Team", municipality="Aarhus")
    assert audit.record_shown(db, actor=sara, patient_ids=pids[:2], action="worklist refresh") == 2
    for _ in range(5):  # the tab refreshes every 25 s
        assert audit.record_shown(db, actor=sara, patient_ids=pids, action="worklist refresh") in (0, 1)
    assert _rows(db, sara.username, "worklist refresh", pids) == 3  # the third citizen joined the list later
    # Another viewer's look is their own row; a first load (not a refresh) is written each time.
    assert audit.record_shown(db, actor=lars, patient_ids=pids, action="worklist refresh") == 3
    assert audit.record_shown(db, actor=sara, patient_ids=pids, action="worklist") == 3
    assert audit.record_shown(db, actor=sara, patient_ids=pids, action="worklist") == 3
    assert _rows(db, sara.username, "worklist", pids) == 6
    # The next clock hour writes the refresh again.
    db.execute("UPDATE audit_log SET at = at - interval '1 hour' WHERE actor LIKE %s AND action = 'worklist refresh'",
               (sara.username + "%",))
    assert audit.record_shown(db, actor=sara, patient_ids=pids, action="worklist refresh") == 3
    # Every citizen still sees the look in Min Log.
    for pid in pids:
        whats = {e.what for e in audit.min_log(db, patient_id=pid, limit=50, offset=0).entries}
        assert "så dig på arbejdslisten" in whats
