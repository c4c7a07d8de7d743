"""Per-device session recipes and the home's device registry.

Recipes are written against :class:`~edge_agent.devices.transport.Transport`, so they run the
same over bleak (:mod:`edge_agent.ble`) and over a fake built from byte vectors in the tests.
"""

from __future__ import annotations

from edge_agent.devices.recipes import (
    Capture,
    SessionReport,
    and_session,
    nonin_session,
    run_recipe,
    standard_session,
)
from edge_agent.devices.registry import DeviceEntry, DeviceRegistry, load_registry
from edge_agent.devices.transport import Transport

__all__ = [
    "Capture",
    "DeviceEntry",
    "DeviceRegistry",
    "SessionReport",
    "Transport",
    "and_session",
    "load_registry",
    "nonin_session",
    "run_recipe",
    "standard_session",
]
