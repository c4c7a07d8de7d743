"""The small GATT transport the session recipes need, and nothing of bleak."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

NotifyCallback = Callable[[bytes], None]


class Transport(Protocol):
    """One connected peripheral. UUIDs are short SIG forms ("2A35") or full 128-bit strings."""

    @property
    def address(self) -> str: ...

    @property
    def is_connected(self) -> bool: ...

    def has(self, uuid: str) -> bool:
        """Whether the peripheral exposes this characteristic."""
        ...

    def properties(self, uuid: str) -> frozenset[str]:
        """GATT properties of the characteristic: read, write, notify, indicate…"""
        ...

    async def read(self, uuid: str) -> bytes: ...

    async def write(self, uuid: str, data: bytes, *, response: bool = True) -> None: ...

    async def start_notify(self, uuid: str, callback: NotifyCallback) -> None:
        """Enable notifications or indications (whichever the characteristic has)."""
        ...

    async def wait_disconnected(self, timeout: float) -> bool:
        """True when the peripheral disconnected within ``timeout`` seconds."""
        ...

    async def disconnect(self) -> None: ...
