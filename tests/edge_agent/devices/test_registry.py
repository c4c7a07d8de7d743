from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.devices.registry import DeviceRegistry, load_registry
from edge_agent.errors import DeviceRegistryError


def test_registry_maps_addresses_models_and_user_slots(tmp_path: Path) -> None:
    f = tmp_path / "devices.yaml"
    f.write_text("""
devices:
  - address: "00:09:1f:8a:12:34"
    model: "A&D UA-651BLE"
    users: {1: "Karen Jensen", 2: "Jens Jensen"}
  - address: "00-1C-05-AA-BB-CC"
    model: "Nonin 3230"
  - address: "C0:4E:30:00:00:03"
    model: "Generic scale"
    pair: true
""")
    reg = load_registry(f)
    assert len(reg) == 3
    ad = reg.lookup("00:09:1F:8A:12:34")
    assert ad is not None and ad.recipe == "and" and ad.pair is True
    assert reg.citizen_for("00:09:1f:8a:12:34", 2) == "Jens Jensen"
    assert reg.citizen_for("00:09:1f:8a:12:34", 3) is None
    nonin = reg.lookup("00:1c:05:aa:bb:cc")
    assert nonin is not None and nonin.recipe == "nonin" and nonin.pair is False
    assert reg.lookup("C0:4E:30:00:00:03").recipe == "standard"
    assert reg.lookup("11:22:33:44:55:66") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("devices: [{address: 'nope', model: x}]", "not a Bluetooth address"),
        ("devices: [{address: '00:00:00:00:00:01'}]", "model"),
        ("devices: [{address: '00:00:00:00:00:01', model: x, colour: red}]", "colour"),
        ("devices: [{address: '00:00:00:00:00:01', model: x, users: {300: a}}]", "outside 0..254"),
        ("devices: [", "not valid YAML"),
    ],
)
def test_bad_registry_gives_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "devices.yaml"
    f.write_text(text)
    with pytest.raises(DeviceRegistryError, match=message):
        load_registry(f)


def test_duplicate_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DeviceRegistryError, match="listed twice"):
        DeviceRegistry.from_mapping({"devices": [{"address": "00:00:00:00:00:01", "model": "x"}] * 2})
    with pytest.raises(DeviceRegistryError, match="cannot read"):
        load_registry(tmp_path / "missing.yaml")
