"""Where agent credentials are written (``NEARCARE_`` variables; see credentials.py)."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

from backend.admin.credentials import CredentialError, CredentialStore, DynsecCredentials, PasswordFileCredentials
from backend.settings import Settings
from vitals.broker import parse_broker_url


class AdminSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NEARCARE_", env_file=".env", extra="ignore")

    dynsec_admin_url: str | None = None
    """e.g. mqtt://admin:secret@127.0.0.1:1883: the dynamic-security plugin's admin account."""
    mosquitto_password_file: str | None = None
    """A mosquitto_passwd file the broker reads (reload Mosquitto with SIGHUP after changes)."""
    agent_broker_url: str | None = None
    """The broker address handed to enrolled agents (default: the backend's own mqtt_url)."""


def credential_store(settings: Settings, admin: AdminSettings | None = None) -> CredentialStore:
    admin = admin or AdminSettings()
    if admin.dynsec_admin_url:
        return DynsecCredentials(parse_broker_url(admin.dynsec_admin_url), settings.topics)
    if admin.mosquitto_password_file:
        return PasswordFileCredentials(admin.mosquitto_password_file)
    raise CredentialError(
        "no broker credential store configured: set NEARCARE_DYNSEC_ADMIN_URL (Mosquitto dynamic-security)"
        " or NEARCARE_MOSQUITTO_PASSWORD_FILE"
    )
