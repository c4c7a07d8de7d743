"""The registry as ingest needs it: a frozen, in-memory copy, loaded in one consistent read.

Ingest decides authority and attribution from this snapshot (never from the payload), and
reloads it whenever ``registry_version`` moved, which every attribution-relevant change bumps
in the same transaction (migration 0100).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import psycopg


@dataclass(frozen=True, slots=True)
class AgentEntry:
    id: str
    patient_id: int | None
    active: bool


@dataclass(frozen=True, slots=True)
class DeviceEntry:
    id: int
    agent_id: str
    address: str


def _frozen_map(d: Mapping[Any, Any] | None = None) -> Mapping[Any, Any]:
    return MappingProxyType(dict(d or {}))


@dataclass(frozen=True, slots=True)
class RegistrySnapshot:
    version: int = 0
    agents: Mapping[str, AgentEntry] = field(default_factory=_frozen_map)
    devices: Mapping[tuple[str, str], DeviceEntry] = field(default_factory=_frozen_map)
    """(agent_id, normalised address) -> device."""
    device_users: Mapping[tuple[int, int], int] = field(default_factory=_frozen_map)
    """(device_id, user_index) -> patient_id."""
    multi_user_devices: frozenset[int] = frozenset()
    """Devices with at least one user slot mapped: their readings are attributed per slot."""

    def device(self, agent_id: str, address: str) -> DeviceEntry | None:
        return self.devices.get((agent_id, normalise_address(address)))

    @classmethod
    def build(
        cls,
        *,
        version: int = 0,
        agents: list[AgentEntry] | tuple[AgentEntry, ...] = (),
        devices: list[DeviceEntry] | tuple[DeviceEntry, ...] = (),
        device_users: Mapping[tuple[int, int], int] | None = None,
    ) -> RegistrySnapshot:
        users = dict(device_users or {})
        return cls(
            version=version,
            agents=_frozen_map({a.id: a for a in agents}),
            devices=_frozen_map({(d.agent_id, normalise_address(d.address)): d for d in devices}),
            device_users=_frozen_map(users),
            multi_user_devices=frozenset(dev for dev, _ in users),
        )


def normalise_address(address: str) -> str:
    """BLE addresses arrive as 5c:f8:… or 5C-F8-…; one spelling for lookups."""
    return address.strip().upper().replace("-", ":")


def registry_version(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT version FROM registry_version").fetchone()
    return int(row[0]) if row else 0


def load_snapshot(conn: psycopg.Connection) -> RegistrySnapshot:
    """Read version and tables in one REPEATABLE READ transaction, so they agree."""
    outer = conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
    with conn.transaction():
        if not outer:  # inside a caller's transaction its snapshot already holds
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        version = registry_version(conn)
        agents = [
            AgentEntry(str(r[0]), None if r[1] is None else int(r[1]), bool(r[2]))
            for r in conn.execute("SELECT id, patient_id, active FROM agents")
        ]
        devices = [
            DeviceEntry(int(r[0]), str(r[1]), str(r[2]))
            for r in conn.execute("SELECT id, agent_id, address FROM devices WHERE removed_at IS NULL")
        ]
        users = {
            (int(r[0]), int(r[1])): int(r[2])
            for r in conn.execute("SELECT device_id, user_index, patient_id FROM device_users")
        }
    return RegistrySnapshot.build(version=version, agents=agents, devices=devices, device_users=users)
