"""A real mosquitto broker on a free loopback port, and an MQTT v5 test client."""

from __future__ import annotations

from pathlib import Path

import pytest

from mqtt_harness import Broker, Client

@pytest.fixture()
def broker(tmp_path: Path):
    b = Broker(tmp_path)
    b.start()
    yield b
    b.stop()


@pytest.fixture()
def client(broker: Broker):
    c = Client(broker.port, "edgewatch-test-client")
    yield c
    c.close()
