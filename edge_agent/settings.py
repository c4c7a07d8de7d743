"""The agent's configuration: ``NEARCARE_AGENT_*`` environment variables (or a ``.env`` file)."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vitals.broker import BrokerUrl, parse_broker_url
from vitals.errors import VitalsError
from vitals.wire import AGENT_ID_PATTERN, DEFAULT_ROOT, Topics

# ~20 readings a day for 90 days is 1,800 rows; the default leaves two orders of magnitude of
# headroom (a Nonin spot-check session or a RACP download of a year of records stays far below).
DEFAULT_SPOOL_CAPACITY = 200_000

RESEND_AFTER_S = 30.0
"""A sent reading with no receipt this long after its PUBACK is sent again (same id)."""
RESEND_MAX_S = 600.0
"""The re-send interval doubles per attempt up to this, so a backend that is down for hours is
not flooded with the same readings: every reading is still tried at least this often."""


class AgentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NEARCARE_AGENT_", env_file=".env", extra="ignore")

    agent_id: str = Field(pattern=AGENT_ID_PATTERN)
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    """``mqtt[s]://user:pass@host:port?protocol=5&ca=/etc/nearcare/ca.pem`` (per-agent credentials)."""
    topic_root: str = DEFAULT_ROOT
    spool_path: Path = Path("/var/lib/nearcare/spool.sqlite")
    spool_capacity: int = Field(default=DEFAULT_SPOOL_CAPACITY, ge=100)
    timezone: str = "Europe/Copenhagen"
    devices_file: Path = Path("/etc/nearcare/devices.yaml")
    batch_size: int = Field(default=50, ge=1, le=1000)
    status_interval_s: float = Field(default=60.0, gt=0)
    reconnect_min_s: float = Field(default=1.0, gt=0)
    reconnect_max_s: float = Field(default=60.0, gt=0)
    keepalive_s: int = Field(default=30, ge=5)
    resend_after_s: float = Field(default=RESEND_AFTER_S, gt=0)
    """A sent reading with no receipt from the backend this long is sent again (same id)."""
    resend_max_s: float = Field(default=RESEND_MAX_S, gt=0)
    """The re-send interval doubles per attempt up to this."""
    session_timeout_s: float = Field(default=60.0, gt=0)
    """How long a standard-profile session may collect before the agent hangs up."""
    reconnect_cooldown_s: float = Field(default=20.0, ge=0)
    """After a session, ignore the same device's advertisements for this long."""
    adapter: str | None = None
    """BlueZ adapter (``hci0``); None means the default."""
    screen_host: str = "127.0.0.1"
    """Where the citizen's home screen listens. Another address shows the readings to that network."""
    screen_port: int | None = Field(default=8080, ge=0, le=65535)
    """The home screen's port (0: any free port); empty, ``none`` or ``off`` disables it."""

    @field_validator("screen_port", mode="before")
    @classmethod
    def _screen_off(cls, v: object) -> object:
        if isinstance(v, str) and v.strip().lower() in ("", "none", "off", "false"):
            return None
        return v

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v

    @field_validator("mqtt_url")
    @classmethod
    def _valid_url(cls, v: str) -> str:
        try:
            parse_broker_url(v)
        except VitalsError as exc:
            raise ValueError(str(exc)) from None
        return v

    @property
    def broker(self) -> BrokerUrl:
        return parse_broker_url(self.mqtt_url)

    @property
    def topics(self) -> Topics:
        return Topics(self.topic_root)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)
