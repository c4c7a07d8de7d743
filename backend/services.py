"""The shape every long-running part of a backend process has (see :mod:`backend.roles`)."""

from __future__ import annotations

from typing import Protocol


class Service(Protocol):
    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def ready(self) -> tuple[bool, str]:
        """(ready, a short word for /readyz)."""
        ...
