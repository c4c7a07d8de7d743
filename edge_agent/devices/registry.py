"""Which devices belong to this home, and which scale/cuff user slot is which citizen.

A YAML file (``NEARCARE_AGENT_DEVICES_FILE``)::

    devices:
      - address: "00:09:1F:8A:12:34"
        model: "A&D UA-651BLE"        # the recipe follows from the model unless given
        pair: true                    # bond on first contact (A&D sends data only to its bonded host)
        users: {1: "Karen Jensen"}    # user index on a shared scale or cuff -> citizen
      - address: "00:1C:05:AA:BB:CC"
        model: "Nonin 3230"
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edge_agent.errors import DeviceRegistryError

Recipe = Literal["standard", "and", "nonin"]
_ADDRESS = re.compile(r"^[0-9A-F]{2}(:[0-9A-F]{2}){5}$")


def recipe_for_model(model: str) -> Recipe:
    m = model.lower()
    if m.startswith(("a&d", "and ")) or "ua-651" in m or "uc-352" in m:
        return "and"
    if "nonin" in m or "3230" in m:
        return "nonin"
    return "standard"


def normalize_address(address: str) -> str:
    return address.strip().upper().replace("-", ":")


@dataclass(frozen=True, slots=True)
class DeviceEntry:
    address: str
    model: str
    recipe: Recipe
    pair: bool = False
    users: dict[int, str] = field(default_factory=dict)


class _EntryFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str
    model: str = Field(min_length=1, max_length=128)
    recipe: Recipe | None = None
    pair: bool | None = None
    users: dict[int, str] = {}

    @field_validator("address")
    @classmethod
    def _mac(cls, v: str) -> str:
        v = normalize_address(v)
        if not _ADDRESS.match(v):
            raise ValueError(f"not a Bluetooth address: {v!r}")
        return v

    @field_validator("users")
    @classmethod
    def _slots(cls, v: dict[int, str]) -> dict[int, str]:
        for k in v:
            if not 0 <= k <= 254:
                raise ValueError(f"user index {k} is outside 0..254")
        return v


class _RegistryFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    devices: list[_EntryFile] = []


class DeviceRegistry:
    def __init__(self, entries: list[DeviceEntry]) -> None:
        self._by_address: dict[str, DeviceEntry] = {}
        for e in entries:
            if e.address in self._by_address:
                raise DeviceRegistryError(f"device {e.address} is listed twice")
            self._by_address[e.address] = e

    def __len__(self) -> int:
        return len(self._by_address)

    def __iter__(self) -> Iterator[DeviceEntry]:
        return iter(self._by_address.values())

    def lookup(self, address: str) -> DeviceEntry | None:
        return self._by_address.get(normalize_address(address))

    def citizen_for(self, address: str, user_index: int | None) -> str | None:
        entry = self.lookup(address)
        if entry is None or user_index is None:
            return None
        return entry.users.get(user_index)

    @classmethod
    def from_mapping(cls, data: object) -> DeviceRegistry:
        try:
            parsed = _RegistryFile.model_validate(data if data is not None else {})
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in err["loc"])
            raise DeviceRegistryError(f"device registry: {where}: {err['msg']}") from None
        return cls([
            DeviceEntry(
                address=e.address,
                model=e.model,
                recipe=e.recipe or recipe_for_model(e.model),
                pair=e.pair if e.pair is not None else recipe_for_model(e.model) == "and",
                users=dict(e.users),
            )
            for e in parsed.devices
        ])


def load_registry(path: Path) -> DeviceRegistry:
    try:
        text = path.read_text()
    except OSError as exc:
        raise DeviceRegistryError(f"cannot read device registry {path}: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DeviceRegistryError(f"device registry {path} is not valid YAML: {exc}") from None
    return DeviceRegistry.from_mapping(data)
