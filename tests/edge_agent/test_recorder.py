from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from edge_agent.devices.recipes import Capture
from edge_agent.errors import SpoolFullError
from edge_agent.gatt import decode, readings_from
from edge_agent.recorder import Recorder, to_measurements
from edge_agent.spool import Spool
from vitals.wire import Device

CPH = ZoneInfo("Europe/Copenhagen")
DEVICE = Device(address="00:09:1F:00:00:01", model="A&D UA-651BLE", firmware="1.07")


def _bp_capture(stamp_hex: str, received: datetime) -> Capture:
    data = bytes.fromhex("1e" "8000" "5200" "6100" + stamp_hex + "4800" "01" "0000")
    return Capture("2A35", data, received, readings_from(decode("2A35", data)))


def test_trusted_device_time_gets_the_agent_zone() -> None:
    received = datetime(2026, 11, 22, 6, 31, tzinfo=UTC)
    bp, pulse = to_measurements(_bp_capture("ea070b16071e00", received), device=DEVICE, zone=CPH)
    assert bp.measured_at == datetime(2026, 11, 22, 7, 30, tzinfo=CPH) and bp.device_clock_trusted
    assert bp.received_at == received and bp.unit == "mm[Hg]" and bp.user_index == 1
    assert bp.raw is not None and bp.raw.characteristic == "2A35" and bp.raw.data[:1] == b"\x1e"
    assert pulse.kind.value == "pulse" and bp.id != pulse.id and bp.id.version == 7


def test_a_wrong_device_clock_falls_back_to_receipt_time_with_a_flag() -> None:
    received = datetime(2026, 11, 22, 6, 31, tzinfo=UTC)
    (bp, _) = to_measurements(_bp_capture("d0070101000000", received), device=DEVICE, zone=CPH)  # 2000-01-01
    assert bp.measured_at == received and not bp.device_clock_trusted
    assert "device_clock_implausible" in bp.quality
    (ahead, _) = to_measurements(_bp_capture("ea070b160f0000", received), device=DEVICE, zone=CPH)  # 15:00 local
    assert not ahead.device_clock_trusted


def test_recorder_appends_before_returning_and_refuses_loudly_when_full(tmp_path: Path, caplog) -> None:
    spool = Spool(tmp_path / "s.sqlite", capacity=100)
    rec = Recorder(spool, zone=CPH)
    now = datetime.now(UTC)
    for _ in range(50):
        ms = rec.record(_bp_capture("ea070b16071e00", now), device=DEVICE)
        assert {m.id for m in ms} <= spool.ids()
    with pytest.raises(SpoolFullError):
        rec.record(_bp_capture("ea070b16071e00", now), device=DEVICE)
    assert rec.refused == 2 and spool.depth == 100
    assert "NOT recorded" in caplog.text and "1e80005200" in caplog.text
    rec.sink_for(DEVICE)(_bp_capture("ea070b16071e00", now))  # the BLE sink logs, it does not crash the session
    assert rec.refused == 4
