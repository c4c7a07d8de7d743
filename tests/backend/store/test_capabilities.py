"""Which flavour a database gets: the pure decision, every case, no server needed.

The servers behind these cases (TimescaleDB preloaded, installed but not preloaded) are
exercised for real in test_timescale.py where a private TimescaleDB cluster is available.
"""

from __future__ import annotations

from typing import cast

import pytest

from backend.errors import StoreError
from backend.store.capabilities import Capabilities, Flavour, TimescaleChoice, choose_flavour
from backend.store.migrate import recorded_flavour

NONE = Capabilities(150000, timescaledb_available=False, timescaledb_installed=False)
OFFERED = Capabilities(150000, timescaledb_available=True, timescaledb_installed=False, timescaledb_preloaded=True)
NOT_PRELOADED = Capabilities(150000, timescaledb_available=True, timescaledb_installed=False)
CREATED = Capabilities(150000, timescaledb_available=True, timescaledb_installed=True, timescaledb_preloaded=True)
CREATED_NOT_PRELOADED = Capabilities(150000, timescaledb_available=True, timescaledb_installed=True)


@pytest.mark.parametrize(
    ("caps", "choice", "recorded", "flavour"),
    [
        (NONE, "auto", None, "plain"),
        (NONE, "off", None, "plain"),
        (OFFERED, "auto", None, "timescale"),
        (OFFERED, "on", None, "timescale"),
        (OFFERED, "off", None, "plain"),  # chosen knowingly
        (NOT_PRELOADED, "off", None, "plain"),
        (CREATED, "auto", "timescale", "timescale"),
        (CREATED, "auto", None, "timescale"),
        # A plain database stays plain when the server gains TimescaleDB later.
        (OFFERED, "auto", "plain", "plain"),
        (NOT_PRELOADED, "auto", "plain", "plain"),
        (NONE, "auto", "plain", "plain"),
    ],
)
def test_the_flavour_follows_the_server_the_database_and_the_wish(
    caps: Capabilities, choice: TimescaleChoice, recorded: Flavour | None, flavour: Flavour
) -> None:
    assert choose_flavour(caps, choice=choice, recorded=recorded) == flavour


def test_installed_but_not_preloaded_says_how_to_preload_or_choose_plain() -> None:
    with pytest.raises(StoreError) as e:
        choose_flavour(NOT_PRELOADED, choice="auto", recorded=None)
    text = str(e.value)
    assert "not preloaded" in text
    assert "shared_preload_libraries = 'timescaledb'" in text and "postgresql.conf" in text and "restart" in text
    assert "NEARCARE_TIMESCALE=off" in text
    with pytest.raises(StoreError, match="shared_preload_libraries = 'timescaledb'"):
        choose_flavour(NOT_PRELOADED, choice="on", recorded=None)


def test_a_timescale_database_on_a_server_that_stopped_preloading_only_offers_the_preload() -> None:
    with pytest.raises(StoreError) as e:
        choose_flavour(CREATED_NOT_PRELOADED, choice="auto", recorded="timescale")
    assert "shared_preload_libraries = 'timescaledb'" in str(e.value)
    assert "NEARCARE_TIMESCALE=off" not in str(e.value)  # off cannot change a migrated database


@pytest.mark.parametrize(
    ("caps", "choice", "recorded", "says"),
    [
        (NONE, "on", None, "not installed on this PostgreSQL server"),
        (OFFERED, "on", "plain", "migrated for plain PostgreSQL"),
        (CREATED, "off", "timescale", "keeps its flavour"),
        (CREATED, "off", None, "DROP EXTENSION timescaledb"),
        (CREATED, "auto", "plain", "DROP EXTENSION timescaledb"),
        (OFFERED, "auto", "timescale", "CREATE EXTENSION timescaledb"),
        (OFFERED, cast(TimescaleChoice, "maybe"), None, "auto, on or off"),
    ],
)
def test_contradictions_are_refused_with_what_to_do(
    caps: Capabilities, choice: TimescaleChoice, recorded: Flavour | None, says: str
) -> None:
    with pytest.raises(StoreError, match=says):
        choose_flavour(caps, choice=choice, recorded=recorded)


def test_the_recorded_flavour_is_that_of_a_migration_with_two_forms() -> None:
    assert recorded_flavour({}) is None
    assert recorded_flavour({1: "plain"}) is None  # 0001 has one form: it says nothing yet
    assert recorded_flavour({1: "plain", 2: "plain"}) == "plain"
    assert recorded_flavour({1: "plain", 2: "timescale", 100: "plain"}) == "timescale"
