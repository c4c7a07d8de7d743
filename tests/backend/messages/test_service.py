"""Messages to the citizen, pure: what is stored (trimmed, bounded) and what the tablet receives."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from backend.messages.service import MAX_LENGTH, EmptyMessage, MessageTooLong, checked_body
from vitals.wire import TeamMessage, Topics, WireError, parse_team_message


def test_a_message_is_trimmed_and_bounded() -> None:
    assert checked_body("  Husk vægten.\n ") == "Husk vægten."
    assert checked_body("x" * MAX_LENGTH) == "x" * MAX_LENGTH
    with pytest.raises(EmptyMessage):
        checked_body(" \n\t ")
    with pytest.raises(MessageTooLong) as exc:
        checked_body("x" * (MAX_LENGTH + 1))
    assert exc.value.length == MAX_LENGTH + 1


def test_the_tablet_message_round_trips_on_its_own_topic() -> None:
    at = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    msg = TeamMessage(agent_id="tab-1", id=7, text="Husk vægten.", at=at, by="Anne Hansen, sygeplejerske")
    assert parse_team_message(msg.to_json()) == msg
    assert Topics("nearcare/v1").messages("tab-1") == "nearcare/v1/agents/tab-1/messages"
    with pytest.raises(WireError):
        parse_team_message(b'{"schema": "1.0", "agent_id": "tab-1", "id": 7, "text": "", "at": "2026-11-30T09:00:00Z",'
                           b' "by": "x"}')
