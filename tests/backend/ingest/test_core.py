"""The pure core: plain values and the golden payloads in, decisions out. No I/O."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from backend.ingest.core import DeadLetter, Decision, StatusUpdate, decide, status_refusal
from backend.registry.snapshot import AgentEntry, DeviceEntry, RegistrySnapshot
from vitals.wire import Topics, new_measurement_id

GOLDEN = Path(__file__).parents[2] / "golden"
T = Topics("nearcare/v1")
NOW = datetime(2026, 11, 22, 8, 5, tzinfo=UTC)

BP_CUFF = DeviceEntry(11, "agent-0001", "5C:F8:21:0A:11:22")
OXIMETER = DeviceEntry(12, "agent-0001", "00:1c:05:ff:3a:10")  # registered in lower case on purpose
SCALE = DeviceEntry(21, "agent-0002", "5C:F8:21:0B:33:44")


def registry(**over: object) -> RegistrySnapshot:
    kw: dict[str, object] = {
        "agents": [AgentEntry("agent-0001", 101, True), AgentEntry("agent-0002", 201, True)],
        "devices": [BP_CUFF, OXIMETER, SCALE],
        "device_users": {(21, 1): 201, (21, 2): 202},
    }
    kw.update(over)
    return RegistrySnapshot.build(**kw)  # type: ignore[arg-type]


def golden(name: str) -> bytes:
    return (GOLDEN / name).read_bytes()


def run(payload: bytes | dict, topic_agent: str = "agent-0001", reg: RegistrySnapshot | None = None,
        now: datetime = NOW) -> Decision:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return decide(T.measurements(topic_agent), raw, topics=T, registry=reg or registry(), now=now)


def test_blood_pressure_is_attributed_to_the_agents_patient() -> None:
    d = run(golden("envelope_bp_single.json"))
    assert d.dead_letter is None and d.held == ()
    (r,) = d.accepted
    assert r.id == uuid.UUID("01a1f5d2-6c00-7a3b-9c4d-0e1f2a3b4c5d")
    assert (r.patient_id, r.device_id, r.agent_id, r.kind) == (101, 11, "agent-0001", "blood_pressure")
    assert r.value == 142.0
    assert dict(r.components) == {"systolic": 142.0, "diastolic": 91.0, "mean_arterial": 108.0}
    assert r.measured_at == datetime(2026, 11, 22, 7, 30, 40, tzinfo=UTC)
    assert r.quality == ("body_movement",)
    assert r.flags == ()
    assert r.raw_characteristic == "2a35"
    assert r.raw == bytes.fromhex("1e8e005b006c00ea070b16071e284800000100")


def test_untrusted_clock_uses_receipt_time_and_is_flagged() -> None:
    d = run(golden("envelope_oximeter_batch.json"))
    assert [r.kind for r in d.accepted] == ["spo2", "pulse"]
    for r in d.accepted:
        assert r.flags == ("clock_not_set",)
        assert r.device_clock_trusted is False
        assert r.measured_at == r.agent_received_at == datetime(2026, 11, 22, 8, 1, 58, tzinfo=UTC)
        assert r.device_id == 12  # the address matched although spelt in another case


def test_untrusted_clock_takes_the_agents_receipt_time_not_the_device_time() -> None:
    env = json.loads(golden("envelope_oximeter_batch.json"))
    env["measurements"] = env["measurements"][:1]
    env["measurements"][0]["measured_at"] = "2020-01-01T00:00:00Z"
    (r,) = run(env).accepted
    assert r.measured_at == datetime(2026, 11, 22, 8, 1, 58, tzinfo=UTC)


def test_multi_user_scale_maps_the_user_slot_to_a_patient() -> None:
    d = run(golden("envelope_weight_user.json"), topic_agent="agent-0002")
    (r,) = d.accepted
    assert (r.patient_id, r.user_index, r.device_id) == (202, 2, 21)


def test_unmapped_slot_on_a_shared_scale_is_held_not_guessed() -> None:
    env = json.loads(golden("envelope_weight_user.json"))
    env["measurements"][0]["user_index"] = 7
    d = run(env, topic_agent="agent-0002")
    assert d.accepted == ()
    (h,) = d.held
    assert h.patient_id is None
    assert h.reason.startswith("unmapped_user: user 7")


def test_shared_scale_without_user_index_is_held() -> None:
    env = json.loads(golden("envelope_weight_user.json"))
    del env["measurements"][0]["user_index"]
    (h,) = run(env, topic_agent="agent-0002").held
    assert h.reason.startswith("unmapped_user:")


def test_implausible_value_is_held_with_its_reason() -> None:
    env = json.loads(golden("envelope_bp_single.json"))
    env["measurements"][0]["values"]["systolic"] = 420.0
    d = run(env)
    assert d.accepted == ()
    (h,) = d.held
    assert h.reason == "implausible_value: systolic 420 outside 0–300 mmHg"
    assert h.patient_id == 101
    assert h.measurement["values"]["systolic"] == 420.0
    assert h.kind == "blood_pressure" and h.device_address == "5C:F8:21:0A:11:22"


def test_implausible_reading_in_a_batch_holds_only_that_reading() -> None:
    env = json.loads(golden("envelope_oximeter_batch.json"))
    env["measurements"][0]["values"]["spo2"] = 40.0
    d = run(env)
    assert [r.kind for r in d.accepted] == ["pulse"]
    assert [h.reason for h in d.held] == ["implausible_value: spo2 40 outside 50–100 %"]


def test_missing_primary_value_is_held() -> None:
    env = json.loads(golden("envelope_oximeter_batch.json"))
    env["measurements"][0]["values"]["spo2"] = None
    (h,) = run(env).held
    assert h.reason.startswith("no_value: spo2")


def test_unknown_device_is_held_with_its_reason() -> None:
    env = json.loads(golden("envelope_bp_single.json"))
    env["measurements"][0]["device"]["address"] = "AA:BB:CC:DD:EE:FF"
    (h,) = run(env).held
    assert h.reason == "unknown_device: device AA:BB:CC:DD:EE:FF is not registered to agent agent-0001"
    assert h.patient_id == 101


def test_device_of_another_agent_is_unknown_to_this_one() -> None:
    env = json.loads(golden("envelope_weight_user.json"))
    env["agent_id"] = "agent-0001"
    (h,) = run(env, topic_agent="agent-0001").held
    assert h.reason.startswith("unknown_device:")


def test_unbound_agent_is_held() -> None:
    reg = registry(agents=[AgentEntry("agent-0001", None, True)])
    (h,) = run(golden("envelope_bp_single.json"), reg=reg).held
    assert h.reason == "unbound_agent: agent agent-0001 is not bound to a patient"


def test_a_reading_more_than_5_minutes_in_the_future_is_held_with_its_reason() -> None:
    # Issue 12, finding 1: year 2100 (and, before the wire bound, 9999) was stored with only a
    # future_time flag and fed to the rules.
    env = json.loads(golden("envelope_bp_single.json"))
    env["measurements"][0]["received_at"] = NOW.isoformat()
    env["measurements"][0]["measured_at"] = (NOW + timedelta(minutes=5, seconds=1)).isoformat()
    d = run(env)
    assert d.accepted == ()
    (h,) = d.held
    assert h.reason.startswith("future_time: measured_at 2026-11-22T08:10:01+00:00 is more than 5 minutes after")
    assert h.patient_id == 101
    env["measurements"][0]["measured_at"] = (NOW + timedelta(minutes=4, seconds=59)).isoformat()
    (r,) = run(env).accepted
    assert r.flags == ()


def test_a_reading_older_than_an_agent_can_have_spooled_is_held_with_its_reason() -> None:
    env = json.loads(golden("envelope_bp_single.json"))
    env["measurements"][0]["measured_at"] = "2024-11-01T00:00:00Z"
    (h,) = run(env).held
    assert h.reason.startswith("too_old: measured_at 2024-11-01T00:00:00+00:00 is more than 730 days before")
    env["measurements"][0]["measured_at"] = "2025-01-01T00:00:00Z"
    (r,) = run(env).accepted
    assert r.measured_at == datetime(2025, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("at", ["9999-12-31T23:59:59-14:00", "1970-01-01T00:00:00Z", "0001-01-01T00:00:00Z"])
def test_a_reading_outside_the_wire_bounds_is_a_dead_letter_naming_measured_at(at: str) -> None:
    env = json.loads(golden("envelope_bp_single.json"))
    env["measurements"][0]["measured_at"] = at
    d = run(env)
    assert d.accepted == () and d.held == ()
    assert d.dead_letter is not None and d.dead_letter.field == "measurements.0.measured_at"


def test_an_online_status_more_than_a_day_before_the_receipt_is_not_applied() -> None:
    raw = json.loads(golden("status_online.json"))
    raw["at"] = (NOW - timedelta(hours=24, seconds=1)).isoformat()
    d = decide(T.status("agent-0001"), json.dumps(raw).encode(), topics=T, registry=registry(), now=NOW)
    assert d.status is None and d.dead_letter is not None and d.dead_letter.field == "at"
    assert "more than 24 hours before the backend's receipt" in d.dead_letter.reason
    raw["at"] = (NOW - timedelta(hours=23)).isoformat()
    d = decide(T.status("agent-0001"), json.dumps(raw).encode(), topics=T, registry=registry(), now=NOW)
    assert d.status is not None and d.status.payload == json.dumps(raw).encode()
    # The broker's will is dated when the agent connected, which may be days ago: no such bound.
    raw = json.loads(golden("status_offline_lwt.json"))
    raw["at"] = (NOW - timedelta(days=9)).isoformat()
    d = decide(T.status("agent-0001"), json.dumps(raw).encode(), topics=T, registry=registry(), now=NOW)
    assert d.status is not None and not d.status.online


def _status(online: bool, at: datetime) -> StatusUpdate:
    return StatusUpdate(agent_id="agent-0001", online=online, at=at)


def test_which_statuses_are_applied_to_the_agent() -> None:
    t0 = NOW - timedelta(days=3)  # the session began (will written, first "online" sent)
    newest = NOW - timedelta(minutes=2)  # its latest heartbeat
    # A heartbeat older than the newest applied one is late: not applied, with the reason.
    why = status_refusal(_status(True, newest - timedelta(seconds=1)), status_at=newest, online_since=t0)
    assert why is not None and "older than the newest applied status" in why
    assert status_refusal(_status(True, newest), status_at=newest, online_since=t0) is None  # retained replay
    assert status_refusal(_status(True, NOW), status_at=None, online_since=None) is None
    # The will of the current session (written just before its first heartbeat) ends it, although
    # every heartbeat since is newer: before, a dead agent stayed "online".
    assert status_refusal(_status(False, t0 - timedelta(seconds=20)), status_at=newest, online_since=t0) is None
    assert status_refusal(_status(False, NOW), status_at=newest, online_since=t0) is None  # a clean stop
    # The will of an earlier connection, published after the agent reconnected: not applied.
    why = status_refusal(_status(False, t0 - timedelta(hours=5)), status_at=newest, online_since=t0)
    assert why is not None and "will of an earlier connection" in why
    assert status_refusal(_status(False, t0 - timedelta(hours=5)), status_at=newest, online_since=None) is None


def test_a_status_far_ahead_of_the_receipt_is_not_applied() -> None:
    # Issue 12, finding 5: a status at year 9999 froze the agent "online".
    raw = json.loads(golden("status_online.json"))
    raw["at"] = (NOW + timedelta(minutes=5, seconds=1)).isoformat()
    d = decide(T.status("agent-0001"), json.dumps(raw).encode(), topics=T, registry=registry(), now=NOW)
    assert d.status is None
    assert d.dead_letter is not None and d.dead_letter.field == "at" and "not applied" in d.dead_letter.reason
    raw["at"] = "2099-12-31T00:00:00Z"
    d = decide(T.status("agent-0001"), json.dumps(raw).encode(), topics=T, registry=registry(), now=NOW)
    assert d.status is None and d.dead_letter is not None
    raw["at"] = "9999-12-31T23:59:59Z"
    d = decide(T.status("agent-0001"), json.dumps(raw).encode(), topics=T, registry=registry(), now=NOW)
    assert d.status is None and d.dead_letter is not None and d.dead_letter.field == "at"
    raw["at"] = (NOW + timedelta(minutes=4)).isoformat()
    d = decide(T.status("agent-0001"), json.dumps(raw).encode(), topics=T, registry=registry(), now=NOW)
    assert d.status is not None and d.dead_letter is None


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("invalid_missing_field.json", "measurements.0.device"),
        ("invalid_naive_time.json", "measurements.0.measured_at"),
        ("invalid_schema_major.json", "schema"),
        ("invalid_unknown_kind.json", "measurements.0.kind"),
        ("invalid_wrong_type.json", "measurements.0.values.systolic"),
    ],
)
def test_invalid_golden_payloads_are_dead_letters_naming_the_field(name: str, field: str) -> None:
    data = json.loads(golden(name))
    assert data.pop("_expect_error_field") == field
    raw = json.dumps(data).encode()
    d = run(raw)
    assert d.accepted == () and d.held == ()
    assert isinstance(d.dead_letter, DeadLetter)
    assert d.dead_letter.field == field
    assert d.dead_letter.payload == raw
    assert d.dead_letter.topic == T.measurements("agent-0001")
    assert d.dead_letter.reason


def test_payload_agent_must_equal_topic_agent() -> None:
    d = run(golden("envelope_bp_single.json"), topic_agent="agent-0002")
    assert d.accepted == () and d.held == ()
    assert d.dead_letter is not None and d.dead_letter.field == "agent_id"
    assert "differs" in d.dead_letter.reason


@pytest.mark.parametrize("reg", [registry(agents=[]), registry(agents=[AgentEntry("agent-0001", 101, False)])])
def test_unknown_or_deactivated_agent_is_a_dead_letter(reg: RegistrySnapshot) -> None:
    d = run(golden("envelope_bp_single.json"), reg=reg)
    assert d.accepted == () and d.held == ()
    assert d.dead_letter is not None and d.dead_letter.field == "agent_id"


@pytest.mark.parametrize("payload", [b"", b"\xff\xfe", b"[]", b"null", b"{}", b'{"schema": "1.0"}'])
def test_garbage_is_a_dead_letter(payload: bytes) -> None:
    d = run(payload)
    assert d.dead_letter is not None and d.dead_letter.payload == payload and d.dead_letter.reason


def test_topic_outside_the_root_is_a_dead_letter() -> None:
    d = decide("elsewhere/agents/a/measurements", b"{}", topics=T, registry=registry(), now=NOW)
    assert d.dead_letter is not None and d.dead_letter.field == "topic"


def test_status_is_an_update_and_its_agent_must_match_the_topic() -> None:
    d = decide(T.status("agent-0001"), golden("status_online.json"), topics=T, registry=registry(), now=NOW)
    assert d.status is not None and d.status.online and d.status.version == "0.1.0" and d.status.spool_depth == 0
    d = decide(T.status("agent-0001"), golden("status_offline_lwt.json"), topics=T, registry=registry(), now=NOW)
    assert d.status is not None and not d.status.online
    d = decide(T.status("agent-0002"), golden("status_online.json"), topics=T, registry=registry(), now=NOW)
    assert d.status is None and d.dead_letter is not None and d.dead_letter.field == "agent_id"
    d = decide(T.status("agent-0001"), b"", topics=T, registry=registry(), now=NOW)
    assert d.ignored and d.dead_letter is None


def test_a_dead_letter_names_the_ids_it_can_read_so_the_agent_lets_go() -> None:
    from backend.ingest.service import receipts_for

    good, also = new_measurement_id(), new_measurement_id()
    payload = json.dumps({"schema": "9.0", "agent_id": "a1", "measurements": [
        {"id": str(good)}, {"id": "not-a-uuid"}, {"id": str(also)}, "junk", {"id": str(good)}]}).encode()
    dl = DeadLetter("nearcare/v1/agents/a1/measurements", "a1", payload, "unsupported schema major", "schema")
    assert dl.reading_ids() == (good, also)
    assert DeadLetter("t", "a1", b"\xff{not json", "not JSON").reading_ids() == ()
    at = datetime.now(UTC)
    [receipt] = receipts_for(batch_decisions=[Decision(agent_id="a1", dead_letter=dl)], at=at)
    assert (receipt.agent_id, receipt.status.value, receipt.ids, receipt.reason) == (
        "a1", "dead_letter", (good, also), "unsupported schema major")
    # A status topic's dead letter carries no readings: no receipt.
    status_dl = DeadLetter("nearcare/v1/agents/a1/status", "a1", payload, "bad status")
    assert receipts_for(batch_decisions=[Decision(agent_id="a1", dead_letter=status_dl)], at=at) == []
