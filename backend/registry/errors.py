"""Errors of the registry, under the backend's one root."""

from __future__ import annotations

from backend.errors import BackendError


class RegistryError(BackendError):
    """A registry change was refused."""


class RegistryNotFound(RegistryError):
    """The patient, agent, team or device named does not exist."""


class RegistryConflict(RegistryError):
    """The change clashes with what exists (a duplicate key, a device of another agent)."""
