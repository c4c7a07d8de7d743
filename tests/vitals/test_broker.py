from __future__ import annotations

import pytest

from vitals.broker import BrokerUrl, parse_broker_url
from vitals.errors import VitalsError


def test_parse_broker_urls() -> None:
    assert parse_broker_url("mqtt://127.0.0.1:1883") == BrokerUrl("127.0.0.1", 1883)
    b = parse_broker_url("mqtts://agent-1:p%40ss@broker.example:8884?protocol=3.1.1&ca=/etc/ca.pem")
    assert (b.tls, b.username, b.password, b.port, b.protocol, b.ca_file) == (
        True, "agent-1", "p@ss", 8884, "3.1.1", "/etc/ca.pem",
    )
    assert "p@ss" not in b.redacted()
    assert parse_broker_url("mqtts://h").port == 8883


@pytest.mark.parametrize("url", ["http://h:1", "mqtt://", "mqtt://h?protocol=4"])
def test_bad_broker_urls(url: str) -> None:
    with pytest.raises(VitalsError):
        parse_broker_url(url)
