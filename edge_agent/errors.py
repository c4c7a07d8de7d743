"""The one root error of the edge agent, with structured fields where they help."""

from __future__ import annotations


class AgentError(Exception):
    """Root of every error the edge agent raises on purpose."""


class SpoolError(AgentError):
    """The durable outbox could not do what was asked."""


class SpoolFullError(SpoolError):
    """The spool holds ``capacity`` readings and refuses more rather than drop any."""

    def __init__(self, depth: int, capacity: int) -> None:
        self.depth = depth
        self.capacity = capacity
        super().__init__(f"spool is full ({depth} of {capacity} readings); refusing the new reading")


class SpoolCorruptError(SpoolError):
    """The spool file was unreadable; it was moved aside to ``moved_to``."""

    def __init__(self, path: str, moved_to: str, reason: str) -> None:
        self.path = path
        self.moved_to = moved_to
        self.reason = reason
        super().__init__(f"spool {path} is corrupt ({reason}); moved aside to {moved_to}")


class DeviceRegistryError(AgentError):
    """The device registry file is missing or malformed."""


class SessionError(AgentError):
    """A device session did not follow the device's protocol."""

    def __init__(self, address: str, reason: str) -> None:
        self.address = address
        self.reason = reason
        super().__init__(f"{address}: {reason}")
