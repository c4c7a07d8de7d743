"""The wire contract against the golden payloads both sides test against."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from vitals import (
    Envelope,
    MeasurementKind,
    ReceiptStatus,
    Topics,
    WireError,
    new_measurement_id,
    parse_envelope,
    parse_plan,
    parse_receipt,
    parse_status,
)

GOLDEN = Path(__file__).parent.parent / "golden"
TOPICS = Topics()


def golden(name: str) -> dict:
    return json.loads((GOLDEN / name).read_text())


def test_blood_pressure_envelope_round_trips() -> None:
    raw = golden("envelope_bp_single.json")
    env = parse_envelope(raw, topic="nearcare/v1/agents/agent-0001/measurements")
    m = env.measurements[0]
    assert env.agent_id == "agent-0001"
    assert m.kind is MeasurementKind.BLOOD_PRESSURE
    assert dict(m.values) == {"systolic": 142.0, "diastolic": 91.0, "mean_arterial": 108.0}
    assert m.primary_value == 142.0
    assert m.quality == ("body_movement",)
    assert m.raw is not None and m.raw.data == bytes.fromhex("1e8e005b006c00ea070b16071e284800000100")
    assert m.device.model == "UA-651BLE"
    again = parse_envelope(env.to_json())
    assert again == env


def test_batch_and_minor_version_are_accepted() -> None:
    batch = parse_envelope(golden("envelope_oximeter_batch.json"))
    assert [m.kind for m in batch.measurements] == [MeasurementKind.SPO2, MeasurementKind.PULSE]
    assert batch.measurements[0].device_clock_trusted is False
    newer_minor = parse_envelope(golden("envelope_weight_user.json"))
    assert newer_minor.schema_version == "1.1"
    assert newer_minor.measurements[0].user_index == 2


@pytest.mark.parametrize(
    "name",
    [
        "invalid_missing_field.json",
        "invalid_wrong_type.json",
        "invalid_schema_major.json",
        "invalid_unknown_kind.json",
        "invalid_naive_time.json",
    ],
)
def test_invalid_envelopes_name_the_field(name: str) -> None:
    raw = golden(name)
    expected = raw.pop("_expect_error_field")
    with pytest.raises(WireError) as info:
        parse_envelope(raw)
    assert info.value.field == expected
    assert expected in str(info.value)


def test_topic_agent_must_equal_payload_agent() -> None:
    raw = golden("envelope_bp_single.json")
    with pytest.raises(WireError) as info:
        parse_envelope(raw, topic="nearcare/v1/agents/agent-0002/measurements")
    assert info.value.field == "agent_id"
    assert "agent-0002" in info.value.reason


def test_measurements_only_on_the_measurements_topic() -> None:
    with pytest.raises(WireError) as info:
        parse_envelope(golden("envelope_bp_single.json"), topic="nearcare/v1/agents/agent-0001/status")
    assert info.value.field == "topic"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b"not json", "payload"),
        (b"[1, 2]", "payload"),
        (b"{}", "schema"),
        (b'{"schema": "1.0"}', "agent_id"),
        ("\udcff", "payload"),
    ],
)
def test_garbage_is_a_wire_error(payload: bytes | str, field: str) -> None:
    with pytest.raises(WireError) as info:
        parse_envelope(payload)
    assert info.value.field == field


def test_unit_must_be_canonical_and_components_known() -> None:
    raw = golden("envelope_bp_single.json")
    raw["measurements"][0]["unit"] = "kPa"
    with pytest.raises(WireError, match="canonical"):
        parse_envelope(raw)
    raw = golden("envelope_bp_single.json")
    raw["measurements"][0]["values"]["heart"] = 1.0
    with pytest.raises(WireError, match="unknown component"):
        parse_envelope(raw)


def test_empty_batch_is_refused() -> None:
    raw = golden("envelope_bp_single.json")
    raw["measurements"] = []
    with pytest.raises(WireError) as info:
        parse_envelope(raw)
    assert info.value.field == "measurements"


def test_status_receipt_and_plan_goldens() -> None:
    status = parse_status(golden("status_online.json"))
    assert (status.state.value, status.spool_depth) == ("online", 0)
    assert parse_status(golden("status_offline_lwt.json")).state.value == "offline"
    receipt = parse_receipt(golden("receipt_seen.json"))
    assert receipt.status is ReceiptStatus.SEEN and receipt.by == "Sygeplejerske Hanne"
    assert parse_receipt(golden("receipt_stored.json")).ids == (
        uuid.UUID("01a1f5d2-6c00-7a3b-9c4d-0e1f2a3b4c5d"),
    )
    plan = parse_plan(golden("config_plan.json"))
    assert [p.kind.value for p in plan.measurements] == ["spo2", "blood_pressure"]
    assert plan.measurements[1].weekdays == (0, 2, 4)


def test_topics_build_and_parse() -> None:
    assert TOPICS.measurements("agent-0001") == "nearcare/v1/agents/agent-0001/measurements"
    assert TOPICS.shared("measurements") == "$share/ingest/nearcare/v1/agents/+/measurements"
    t = TOPICS.parse("nearcare/v1/agents/agent-0001/receipts")
    assert (t.agent_id, t.kind.value) == ("agent-0001", "receipts")
    for bad in ["other/v1/agents/a/measurements", "nearcare/v1/agents/a/b/c", "nearcare/v1/agents/a/weird",
                "nearcare/v1/agents/+/measurements"]:
        with pytest.raises(WireError):
            TOPICS.parse(bad)
    with pytest.raises(WireError):
        TOPICS.status("no/slash")


def test_measurement_ids_are_uuid7_and_time_ordered() -> None:
    t = datetime(2026, 11, 22, 7, 30, tzinfo=UTC).timestamp()
    a, b = new_measurement_id(t), new_measurement_id(t + 0.002)
    assert a.version == 7 and b.version == 7
    assert a.variant == uuid.RFC_4122
    assert int(a.hex[:12], 16) == int(t * 1000)
    assert a < b
    assert len({new_measurement_id() for _ in range(1000)}) == 1000


def test_envelope_is_frozen() -> None:
    env = parse_envelope(golden("envelope_bp_single.json"))
    with pytest.raises(Exception, match="frozen"):
        env.agent_id = "agent-0002"  # type: ignore[misc]
    assert isinstance(env, Envelope)


# Issue 12, finding 1: a reading dated year 10000 (9999-12-31T23:59:59-14:00 is 10000-01-01 in
# UTC) was stored and broke every page of that citizen and every later evaluation; 1970 and
# year 1 were stored with no flag.
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("measured_at", "9999-12-31T23:59:59-14:00"),
        ("measured_at", "9999-12-31T23:59:59Z"),
        ("measured_at", "2100-01-01T00:00:00Z"),
        ("measured_at", "1970-01-01T00:00:00Z"),
        ("measured_at", "0001-01-01T00:00:00+14:00"),
        ("received_at", "9999-12-31T23:59:59-14:00"),
        ("received_at", "1999-12-31T23:59:59Z"),
    ],
)
def test_a_measurement_time_outside_2000_to_2100_is_refused_naming_the_field(field: str, value: str) -> None:
    raw = golden("envelope_bp_single.json")
    raw["measurements"][0][field] = value
    with pytest.raises(WireError) as err:
        parse_envelope(raw)
    assert err.value.field == f"measurements.0.{field}"
    assert "outside 2000-01-01..2100-01-01" in err.value.reason


def test_a_reading_measured_more_than_a_day_after_its_receipt_is_refused_naming_measured_at() -> None:
    raw = golden("envelope_bp_single.json")
    received = datetime.fromisoformat(raw["measurements"][0]["received_at"])
    raw["measurements"][0]["measured_at"] = (received + timedelta(hours=24, seconds=1)).isoformat()
    with pytest.raises(WireError) as err:
        parse_envelope(raw)
    assert err.value.field == "measurements.0.measured_at"
    assert "more than 24 h after received_at" in err.value.reason
    raw["measurements"][0]["measured_at"] = (received + timedelta(hours=23, minutes=59)).isoformat()
    assert parse_envelope(raw).measurements[0].measured_at == received + timedelta(hours=23, minutes=59)


@pytest.mark.parametrize(("field", "value"), [("at", "9999-12-31T23:59:59Z"), ("at", "1970-01-01T00:00:00Z"),
                                              ("spool_oldest_at", "9999-12-31T00:00:00Z")])
def test_a_status_time_outside_2000_to_2100_is_refused_naming_the_field(field: str, value: str) -> None:
    raw = golden("status_online.json")
    raw[field] = value
    with pytest.raises(WireError) as err:
        parse_status(raw)
    assert err.value.field == field


def test_an_envelope_sent_in_year_9999_is_refused() -> None:
    raw = golden("envelope_bp_single.json")
    raw["sent_at"] = "9999-12-31T23:59:59Z"
    with pytest.raises(WireError) as err:
        parse_envelope(raw)
    assert err.value.field == "sent_at"
