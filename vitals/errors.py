"""The one root error of the wire contract."""

from __future__ import annotations


class VitalsError(Exception):
    """Root of every error raised by :mod:`vitals`."""


class WireError(VitalsError):
    """A payload or topic that does not fit the wire contract.

    ``field`` names the offending field as a dotted path (``measurements.0.kind``), so that a
    dead letter says exactly what was wrong; ``reason`` is the human sentence.
    """

    def __init__(self, reason: str, *, field: str | None = None) -> None:
        self.reason = reason
        self.field = field
        super().__init__(f"{field}: {reason}" if field else reason)
