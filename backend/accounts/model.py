"""Value types of the accounts component."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from backend.errors import BackendError


class Role(StrEnum):
    CITIZEN = "citizen"
    NURSE = "nurse"
    SPECIALIST = "specialist"
    ADMIN = "admin"

    @property
    def clinical(self) -> bool:
        """Roles that read other people's health data."""
        return self in (Role.NURSE, Role.SPECIALIST)


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    display_name: str
    role: Role
    team_id: int | None = None
    team_key: str | None = None
    team_name: str | None = None
    municipality: str | None = None
    """The municipality of a nurse's team."""
    department: str | None = None
    """The hospital department of a specialist's team."""
    patient_id: int | None = None
    """A citizen's own patient row."""
    lang: str = "da"


class AuthError(BackendError):
    """Wrong username or password, or an unknown/expired session or token."""


class WrongPassword(AuthError):
    """Wrong username or password; ``tries_left`` is how many more wrong tries the account has
    before each further try must wait (the same for an unknown username, so it tells nothing)."""

    def __init__(self, tries_left: int) -> None:
        super().__init__("wrong username or password")
        self.tries_left = tries_left


class PendingApproval(AuthError):
    """The right password, but a second admin has not yet approved the account (four-eyes)."""

    def __init__(self) -> None:
        super().__init__("the account awaits a second admin's approval")


class PasswordChangeRequired(AuthError):
    """The right password, but an administrator set it: the user must choose their own first
    (ASVS 2.3.1)."""

    def __init__(self) -> None:
        super().__init__("the password was set by an administrator and must be changed first")


class PasswordNotChanged(AuthError):
    """The new password is the one an administrator set."""

    def __init__(self) -> None:
        super().__init__("the new password must differ from the one an administrator set")


class WeakPassword(AuthError):
    """A new password shorter than :data:`backend.accounts.store.MIN_PASSWORD` characters."""

    def __init__(self, minimum: int) -> None:
        super().__init__(f"a password needs at least {minimum} characters")
        self.minimum = minimum


class RateLimited(AuthError):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"too many failed logins; try again in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class AccessDenied(BackendError):
    """The user may not read this patient's data (outside their team's scope, or admin)."""

    def __init__(self, *, user: str, patient_id: int | None, why: str) -> None:
        super().__init__(f"{user} may not read patient {patient_id}: {why}")
        self.user = user
        self.patient_id = patient_id
        self.why = why
