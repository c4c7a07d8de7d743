"""Backend configuration: pydantic-settings, every variable prefixed ``NEARCARE_``."""

from __future__ import annotations

from functools import cached_property
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from vitals.broker import BrokerUrl, parse_broker_url
from vitals.wire import DEFAULT_ROOT, Topics

DEMO_SECRET = "demo-only-secret-never-in-production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NEARCARE_", env_file=".env", extra="ignore")

    database_url: str = "postgresql://postgres@127.0.0.1:5432/nearcare"
    timescale: Literal["auto", "on", "off"] = "auto"
    """TimescaleDB for a new database: where the server offers it (auto), required (on), or
    plain PostgreSQL chosen knowingly (off). A migrated database keeps its flavour."""
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    topic_root: str = DEFAULT_ROOT
    ingest_group: str = "ingest"
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    demo: bool = False
    secret_key: str = DEMO_SECRET
    """At least 32 bytes outside demo mode (the app refuses to start otherwise)."""
    trusted_proxies: list[str] = Field(default_factory=list)
    """Addresses or networks (CIDR) of the reverse proxies in front of the api, e.g.
    ``["10.0.0.5"]`` or ``["172.16.0.0/12"]``: only from these is ``X-Forwarded-For`` believed
    (the client address in audit rows, sessions and the login limit). Empty: never."""
    timezone: str = "Europe/Copenhagen"
    alert_rules_dir: str | None = None
    """Rule and routing YAML; the packaged alert_rules/ when unset."""
    pool_min_size: int = Field(default=2, ge=1)
    pool_max_size: int = Field(default=10, ge=1)
    ingest_batch_size: int = Field(default=500, ge=1, le=10_000)
    ingest_batch_window_ms: int = Field(default=20, ge=1, le=5_000)
    """The longest a message waits for company before its batch commits; under load batches
    fill first (``ingest_batch_size``), so this only adds latency when traffic is light."""
    scheduler_election_s: float = Field(default=10.0, gt=0)
    """How often a standby scheduler tries to take the lead (a dead leader's lock goes with its
    database session): the longest takeover, plus the time PostgreSQL needs to see it gone."""
    escalation_check_s: float = Field(default=15.0, gt=0)
    missed_check_s: float = Field(default=60.0, gt=0)

    @cached_property
    def broker(self) -> BrokerUrl:
        return parse_broker_url(self.mqtt_url)

    @cached_property
    def topics(self) -> Topics:
        return Topics(self.topic_root)
