"""The loaded rules and routing, and the notifier settings (``NEARCARE_ALERT_*``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from alert_rules.loader import ROUTING_FILE, Ruleset, default_dir, load_model, load_ruleset
from alert_rules.routing import RoutingConfig


@dataclass(frozen=True)
class AlertingConfig:
    ruleset: Ruleset
    routing: RoutingConfig
    directory: Path


def load_config(directory: str | Path | None = None) -> AlertingConfig:
    """Rules and routing from ``directory`` (the packaged alert_rules/ when None), read now.

    Called once per process, by its composition root (:func:`backend.roles.open_parts`), which
    passes the result down: there is no cache to fall back to. Raises
    :class:`alert_rules.errors.RuleFileError` naming file, line and field."""
    path = Path(directory) if directory else default_dir()
    return AlertingConfig(
        ruleset=load_ruleset(path), routing=load_model(path / ROUTING_FILE, RoutingConfig), directory=path
    )


class NotifierSettings(BaseSettings):
    """Where webhooks and emails go. Unset channels are not used (events always are)."""

    model_config = SettingsConfigDict(env_prefix="NEARCARE_ALERT_", env_file=".env", extra="ignore")

    webhook_url: str | None = None
    webhook_secret: str | None = None
    webhook_timeout_s: float = 5.0
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str = "nearcare@localhost"
    max_attempts: int = 8
    backoff_base_s: float = 2.0
    backoff_max_s: float = 600.0
    web_base_url: str = "http://127.0.0.1:8000"
