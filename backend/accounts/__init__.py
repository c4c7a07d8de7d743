"""Accounts and access: users, argon2 passwords, web sessions, API bearer tokens, CSRF,
login rate limiting, roles and the patient scope each role may read.

Identity is local today; ``users.oidc_issuer``/``oidc_subject`` are where an external login
will map later (the rest of the app only ever sees a :class:`User`).
"""

from backend.accounts.model import AccessDenied, AuthError, RateLimited, Role, User
from backend.accounts.scope import can_read_patient, scope_clause
from backend.accounts.store import (
    authenticate,
    create_api_token,
    create_session,
    create_user,
    delete_session,
    hash_password,
    session_user,
    token_user,
    verify_password,
)

__all__ = [
    "AccessDenied",
    "AuthError",
    "RateLimited",
    "Role",
    "User",
    "authenticate",
    "can_read_patient",
    "create_api_token",
    "create_session",
    "create_user",
    "delete_session",
    "hash_password",
    "scope_clause",
    "session_user",
    "token_user",
    "verify_password",
]
