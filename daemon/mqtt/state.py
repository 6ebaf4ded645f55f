"""The broker connection's state, as the status API reports it (importable without paho)."""

from __future__ import annotations

import msgspec


class MqttState(msgspec.Struct):
    """The broker connection as /v1/status/mqtt reports it."""

    enabled: bool
    connected: bool
    last_error: str | None
    host: str | None = None
    port: int | None = None
    protocol: str | None = None
    tls: bool | None = None
    client_id: str | None = None
    prefix: str | None = None
    message: str | None = None  # what to do when MQTT is off

    @classmethod
    def off(cls) -> MqttState:
        return cls(enabled=False, connected=False, last_error=None,
                   message="no broker configured: set mqtt.host or EDGEWATCH_MQTT_HOST")
