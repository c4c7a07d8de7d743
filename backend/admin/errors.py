"""The admin component's root error."""

from __future__ import annotations

from typing import Any

from backend.errors import BackendError


def N_(key: str) -> str:  # gettext's name for "mark for extraction, translate later"
    """A key of the web's catalogue named here, so ``pybabel extract -k N_`` finds it (the admin
    page translates an :class:`AdminError`'s ``key``)."""
    return key


class AdminError(BackendError):
    """An admin action that cannot be done as asked. ``key`` (with ``params``) names the message
    in the web's catalogue, so the admin page says it in the admin's language."""

    def __init__(self, message: str, *, key: str | None = None, **params: Any) -> None:
        super().__init__(message)
        self.key = key
        self.params = params


class AdminNotFound(AdminError):
    """The user, device, agent, team or citizen named does not exist (the API's 404)."""


class AdminConflict(AdminError):
    """The action clashes with what is (a name taken, already approved or removed; the API's 409)."""


class AdminForbidden(AdminError):
    """Not for this admin to do (approving one's own account, deactivating oneself; the API's 403)."""
