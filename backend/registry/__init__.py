"""Who is who: teams, patients, agents, devices and user slots, and the snapshot ingest
attributes readings through.

Keyword-only service functions over a psycopg connection the caller owns. Each runs in its own
transaction (a savepoint when the caller already has one open), so they work on autocommit and
on transactional connections alike. Used by tests, the demo seed and the admin UI.
"""

from backend.registry.errors import RegistryConflict, RegistryError, RegistryNotFound
from backend.registry.service import (
    Agent,
    Device,
    Patient,
    Team,
    bind_agent,
    create_patient,
    create_team,
    deactivate_agent,
    enrol_agent,
    get_agent,
    get_patient,
    get_patient_by_ref,
    get_team_by_key,
    list_agents,
    list_device_users,
    list_devices,
    map_device_user,
    register_device,
    unmap_device_user,
)
from backend.registry.snapshot import (
    AgentEntry,
    DeviceEntry,
    RegistrySnapshot,
    load_snapshot,
    registry_version,
)

__all__ = [
    "Agent",
    "AgentEntry",
    "Device",
    "DeviceEntry",
    "Patient",
    "RegistryConflict",
    "RegistryError",
    "RegistryNotFound",
    "RegistrySnapshot",
    "Team",
    "bind_agent",
    "create_patient",
    "create_team",
    "deactivate_agent",
    "enrol_agent",
    "get_agent",
    "get_patient",
    "get_patient_by_ref",
    "get_team_by_key",
    "list_agents",
    "list_device_users",
    "list_devices",
    "load_snapshot",
    "map_device_user",
    "register_device",
    "registry_version",
    "unmap_device_user",
]
