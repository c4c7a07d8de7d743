"""The read audit: every look at a patient's data, allowed or refused (Sundhedsloven § 42 a).

Rows go to ``audit_log`` (0001). Citizens see the rows about themselves as "Min Log"; admins
see all of them. A refused read is written and committed before the refusal is raised, so a
rolled-back request never hides an attempt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import psycopg

from backend.web.i18n import min_log_words


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

    @property
    def municipality(self) -> str | None: ...

    @property
    def department(self) -> str | None: ...


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


def _who(actor: Actor) -> tuple[str, str, str | None]:
    """(the actor column "username (display name, team)", the name, the organisation)."""
    who = actor.username
    extra = ", ".join(x for x in (actor.display_name, actor.team_name) if x)
    if extra:
        who = f"{who} ({extra})"
    org = ", ".join(x for x in (actor.team_name, actor.municipality or actor.department) if x) or None
    return who, actor.display_name, org


_INSERT = (
    "INSERT INTO audit_log (actor, actor_role, actor_name, actor_org, patient_id, action, detail, remote_addr,"
    " allowed) "
)


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
    who, name, org = _who(actor)
    conn.execute(
        _INSERT + "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (who, str(actor.role), name, org, patient_id, action, detail, remote_addr, allowed),
    )
    if commit:
        conn.commit()


def record_refusal(
    conn: psycopg.Connection,
    *,
    actor: Actor,
    action: str,
    detail: str,
    patient_id: int | None = None,
    alert_id: int | None = None,
    remote_addr: str | None = None,
) -> None:
    """A refused attempt (a role gate, an unknown or out-of-scope id), committed at once. The
    citizen it concerns, where the ids name one that exists, sees it in Min Log."""
    who, name, org = _who(actor)
    conn.execute(
        _INSERT + "SELECT %s, %s, %s, %s, coalesce((SELECT id FROM patients WHERE id = %s),"
        " (SELECT patient_id FROM alerts WHERE id = %s)), %s, %s, %s, false",
        (who, str(actor.role), name, org, patient_id, alert_id, action, detail, remote_addr),
    )
    conn.commit()


FOLDED_ACTIONS = frozenset({"worklist refresh"})
"""List views a page refreshes by itself (the worklist every 25-60 s): written once per citizen,
viewer and clock hour (issue 13: the audit list got a row per refresh and open tab). The page's
first load, and every other look, is written each time."""


def record_shown(
    conn: psycopg.Connection,
    *,
    actor: Actor,
    patient_ids: Sequence[int],
    action: str,
    detail: str | None = None,
    remote_addr: str | None = None,
    commit: bool = False,
) -> int:
    """One row per citizen a list view showed (worklist, population, patient list), in one
    multi-row INSERT: each of them sees the look in Min Log. A page's own periodic refresh
    (:data:`FOLDED_ACTIONS`) is folded: one row per citizen, viewer and clock hour. Returns the
    rows written."""
    ids = sorted(set(patient_ids))
    written = 0
    if ids:
        who, name, org = _who(actor)
        fold = (" WHERE NOT EXISTS (SELECT 1 FROM audit_log a WHERE a.patient_id = pid AND a.actor = %s"
                " AND a.action = %s AND a.at >= date_trunc('hour', now()))") if action in FOLDED_ACTIONS else ""
        cur = conn.execute(
            _INSERT + "SELECT %s, %s, %s, %s, pid, %s, %s, %s, true FROM unnest(%s::bigint[]) AS pid" + fold,
            (who, str(actor.role), name, org, action, detail, remote_addr, ids,
             *((who, action) if fold else ())),
        )
        written = cur.rowcount
    if commit:
        conn.commit()
    return written


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


# ---- Min Log: the citizen's own view, in their language (Danish first) ------------------------



@dataclass(frozen=True, slots=True)
class MinLogEntry:
    """One row of Min Log as the citizen reads it: who (name, role, organisation; never an
    address), what, when and why; a refused attempt says so."""

    at: datetime
    who: str
    role: str
    organisation: str | None
    what: str
    why: str
    allowed: bool


@dataclass(frozen=True, slots=True)
class MinLogPage:
    entries: list[MinLogEntry]
    total: int
    limit: int
    offset: int

    @property
    def next_offset(self) -> int | None:
        return self.offset + self.limit if self.offset + self.limit < self.total else None

    @property
    def previous_offset(self) -> int | None:
        return max(0, self.offset - self.limit) if self.offset > 0 else None


def _name_of(actor: str) -> str:
    """The display name from "username (display name, team)" (rows written before 0400)."""
    if "(" in actor and actor.endswith(")"):
        return actor[actor.index("(") + 1 : -1].split(",")[0].strip()
    return actor


def min_log(conn: psycopg.Connection, *, patient_id: int, limit: int = 50, offset: int = 0,
            lang: str = "da") -> MinLogPage:
    """Every look at the citizen's data, newest first, a page at a time (all of it, however long),
    in the reader's language (the words: :func:`backend.web.i18n.min_log_words`)."""
    limit, offset = max(1, min(limit, 500)), max(0, offset)
    total_row = conn.execute("SELECT count(*) FROM audit_log WHERE patient_id = %s", (patient_id,)).fetchone()
    total = int(total_row[0]) if total_row else 0
    rows = conn.execute(
        "SELECT at, actor, actor_role, actor_name, actor_org, action, allowed FROM audit_log WHERE patient_id = %s"
        " ORDER BY at DESC, id DESC LIMIT %s OFFSET %s",
        (patient_id, limit, offset),
    ).fetchall()
    out = []
    for at, actor, role, name, org, action, allowed in rows:
        what, why, role_words = min_log_words(action, str(role), bool(allowed), lang)
        out.append(MinLogEntry(at=at, who=name or _name_of(actor), role=role_words, organisation=org,
                               what=what, why=why, allowed=bool(allowed)))
    return MinLogPage(out, total, limit, offset)
