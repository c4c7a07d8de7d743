"""The read audit: every look at a patient's data, allowed or refused (Sundhedsloven § 42 a).

Rows go to ``audit_log`` (0001). Citizens see the rows about themselves as "Min Log"; admins
see all of them. A refused read is written and committed before the refusal is raised, so a
rolled-back request never hides an attempt.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import psycopg


class Actor(Protocol):
    """Who looked. An accounts ``User`` is one; the audit needs only these, so it does not depend on
    the accounts component, which writes through it."""

    @property
    def username(self) -> str: ...

    @property
    def display_name(self) -> str: ...

    @property
    def team_name(self) -> str | None: ...

    @property
    def role(self) -> str: ...


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    actor_role: str
    patient_id: int | None
    action: str
    detail: str | None
    remote_addr: str | None
    allowed: bool


def record(
    conn: psycopg.Connection,
    *,
    actor: Actor,
    patient_id: int | None,
    action: str,
    detail: str | None = None,
    remote_addr: str | None = None,
    allowed: bool = True,
    commit: bool = False,
) -> None:
    """One audit row. ``actor`` is written as "username (display name, team)" so the log still
    reads well after a user is renamed or leaves."""
    who = actor.username
    extra = ", ".join(x for x in (actor.display_name, actor.team_name) if x)
    if extra:
        who = f"{who} ({extra})"
    conn.execute(
        """INSERT INTO audit_log (actor, actor_role, patient_id, action, detail, remote_addr, allowed)
           VALUES (%s, %s, %s, %s, %s, %s, %s)""",
        (who, str(actor.role), patient_id, action, detail, remote_addr, allowed),
    )
    if commit:
        conn.commit()


def entries(
    conn: psycopg.Connection,
    *,
    patient_id: int | None = None,
    actor_prefix: str | None = None,
    allowed: bool | None = None,
    limit: int = 200,
    offset: int = 0,
) -> list[AuditEntry]:
    where, params = ["true"], {}  # type: ignore[var-annotated]
    params_: dict[str, Any] = params
    if patient_id is not None:
        where.append("patient_id = %(pid)s")
        params_["pid"] = patient_id
    if actor_prefix:
        where.append("actor LIKE %(actor)s")
        params_["actor"] = actor_prefix.replace("%", r"\%").replace("_", r"\_") + "%"
    if allowed is not None:
        where.append("allowed = %(allowed)s")
        params_["allowed"] = allowed
    params_["limit"], params_["offset"] = max(1, min(limit, 1000)), max(0, offset)
    rows = conn.execute(
        "SELECT id, at, actor, actor_role, patient_id, action, detail, remote_addr, allowed FROM audit_log"
        f" WHERE {' AND '.join(where)} ORDER BY at DESC, id DESC LIMIT %(limit)s OFFSET %(offset)s",
        params_,
    ).fetchall()
    return [AuditEntry(*r) for r in rows]
