"""Messages from the care team to the citizen (issue 13: "a message to the citizen" was missing).

A nurse or doctor writes a short message on the worklist or the patient page; it is stored (never
deleted), the caller audits it, the citizen reads it on their own page (``/me``), and each of the
citizen's active tablets gets it through the outbox (:mod:`backend.outbox`, in the same
transaction: sent if and only if the message is stored), retained on the agent's ``messages``
topic so a tablet that was away gets the newest one when it comes back."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg

from backend import outbox
from backend.accounts.model import User
from backend.errors import BackendError
from vitals.wire import TeamMessage, Topics

MAX_LENGTH = 1000
"""Characters in one message (the tablet shows it on one screen)."""

ROLE_WORDS = {"nurse": ("sygeplejerske", "nurse"), "specialist": ("læge", "doctor"),
              "admin": ("administrator", "administrator")}


class MessageError(BackendError):
    """A message that cannot be sent."""


class EmptyMessage(MessageError):
    pass


class MessageTooLong(MessageError):
    def __init__(self, length: int) -> None:
        super().__init__(f"a message is at most {MAX_LENGTH} characters, this one {length}")
        self.length = length


@dataclass(frozen=True, slots=True)
class CitizenMessage:
    id: int
    patient_id: int
    body: str
    sent_by_name: str
    sent_by_role: str
    sent_at: datetime
    read_at: datetime | None
    tablets: int = 0
    """Tablets the message was queued for (when just sent)."""


def checked_body(body: str) -> str:
    """Pure: the message as stored (trimmed), or why not."""
    text = body.strip()
    if not text:
        raise EmptyMessage("an empty message")
    if len(text) > MAX_LENGTH:
        raise MessageTooLong(len(text))
    return text


def send_message(
    conn: psycopg.Connection, *, patient_id: int, body: str, user: User, topics: Topics, now: datetime
) -> CitizenMessage:
    """Store the message and queue it for the citizen's active tablets, in the caller's transaction."""
    text = checked_body(body)
    row = conn.execute(
        "INSERT INTO citizen_messages (patient_id, body, sent_by, sent_by_name, sent_by_role, sent_at)"
        " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
        (patient_id, text, user.id, user.display_name, user.role.value, now),
    ).fetchone()
    if row is None:  # INSERT ... RETURNING always returns the row
        raise MessageError("the message was not stored")
    message_id = int(row[0])
    by = f"{user.display_name}, {ROLE_WORDS.get(user.role.value, (user.role.value,))[0]}"
    agents = [r[0] for r in conn.execute(
        "SELECT id FROM agents WHERE patient_id = %s AND active ORDER BY id", (patient_id,)).fetchall()]
    for agent_id in agents:
        msg = TeamMessage(agent_id=agent_id, id=message_id, text=text, at=now, by=by[:200])
        outbox.enqueue(conn, topic=topics.messages(agent_id), payload=msg.to_json(), retain=True)
    return CitizenMessage(message_id, patient_id, text, user.display_name, user.role.value, now, None, len(agents))


def messages_for(conn: psycopg.Connection, *, patient_id: int, limit: int = 20) -> list[CitizenMessage]:
    """The citizen's messages, newest first."""
    rows = conn.execute(
        "SELECT id, patient_id, body, sent_by_name, sent_by_role, sent_at, read_at FROM citizen_messages"
        " WHERE patient_id = %s ORDER BY sent_at DESC, id DESC LIMIT %s",
        (patient_id, max(1, min(limit, 200))),
    ).fetchall()
    return [CitizenMessage(*r) for r in rows]


def mark_read(conn: psycopg.Connection, *, patient_id: int, now: datetime) -> int:
    """The citizen has seen their messages (their own page was shown): returns how many were new."""
    return conn.execute(
        "UPDATE citizen_messages SET read_at = %s WHERE patient_id = %s AND read_at IS NULL", (now, patient_id)
    ).rowcount
