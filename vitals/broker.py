"""Where the MQTT broker is, as one URL: ``mqtt[s]://user:pass@host:port?protocol=5``.

Shared by the agent and the backend so that both read the same configuration the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from vitals.errors import VitalsError


@dataclass(frozen=True, slots=True)
class BrokerUrl:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None
    protocol: str = "5"
    """"5" (MQTT v5, shared subscriptions) or "3.1.1" (e.g. the amqtt demo broker)."""
    ca_file: str | None = None

    @property
    def is_v5(self) -> bool:
        return self.protocol == "5"

    def redacted(self) -> str:
        auth = f"{self.username}:***@" if self.username else ""
        scheme = "mqtts" if self.tls else "mqtt"
        return f"{scheme}://{auth}{self.host}:{self.port}?protocol={self.protocol}"


def parse_broker_url(url: str) -> BrokerUrl:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise VitalsError(f"broker URL must start with mqtt:// or mqtts://, got {url!r}")
    if not parts.hostname:
        raise VitalsError(f"broker URL has no host: {url!r}")
    query = parse_qs(parts.query)
    protocol = query.get("protocol", ["5"])[0]
    if protocol not in ("5", "3.1.1"):
        raise VitalsError(f"broker URL protocol must be 5 or 3.1.1, got {protocol!r}")
    tls = parts.scheme == "mqtts"
    return BrokerUrl(
        host=parts.hostname,
        port=parts.port or (8883 if tls else 1883),
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        protocol=protocol,
        ca_file=query.get("ca", [None])[0],
    )
