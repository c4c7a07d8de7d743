"""Who may read which patient. Pure: the rules in one place, used by the web, the API and SQL.

- citizen: their own patient row only
- nurse: patients whose municipality is their team's municipality
- specialist: patients referred to their team's hospital department
- admin: no clinical data at all
"""

from __future__ import annotations

from typing import Any

from backend.accounts.model import Role, User


def can_read_patient(user: User, *, patient_id: int, municipality: str, department: str | None) -> tuple[bool, str]:
    """(allowed, why) for one patient row."""
    if user.role is Role.CITIZEN:
        return (user.patient_id == patient_id, "own data" if user.patient_id == patient_id else "not own data")
    if user.role is Role.NURSE:
        ok = user.municipality is not None and user.municipality == municipality
        return ok, ("team municipality" if ok else f"patient is in {municipality}, team covers {user.municipality}")
    if user.role is Role.SPECIALIST:
        ok = user.department is not None and user.department == department
        return ok, ("referred to department" if ok else "patient is not referred to the team's department")
    return False, "admins see no clinical data"


def scope_clause(user: User, alias: str = "p") -> tuple[str, dict[str, Any]]:
    """A SQL condition on ``patients`` (aliased ``alias``) selecting what ``user`` may read."""
    if user.role is Role.CITIZEN:
        return f"{alias}.id = %(scope_patient)s", {"scope_patient": user.patient_id}
    if user.role is Role.NURSE:
        return f"{alias}.municipality = %(scope_municipality)s", {"scope_municipality": user.municipality}
    if user.role is Role.SPECIALIST:
        return f"{alias}.department = %(scope_department)s", {"scope_department": user.department}
    return "false", {}
