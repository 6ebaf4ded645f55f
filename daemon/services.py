"""What the daemon's parts share, in one typed object: built at start-up, kept in the app's state,
and handed to route handlers by Litestar's dependency injection as the parameter ``services``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from litestar.datastructures import State
from litestar.di import Dependency

from edgewatch.backends.base import ProbeResult
from edgewatch.daemon.config import Settings
from edgewatch.daemon.inference_queue import InferenceQueue
from edgewatch.daemon.logbuffer import LogBuffer
from edgewatch.daemon.metrics import Metrics
from edgewatch.daemon.module_settings import ModuleSettingsStore
from edgewatch.daemon.modules.base import CapabilityModule
from edgewatch.daemon.mqtt.link import MqttLink
from edgewatch.daemon.pipeline.camera_service import CameraService
from edgewatch.models.store import ModelStore


@dataclass
class Services:
    config: Settings                      # the running configuration (replaced on reload)
    store: ModelStore
    settings_store: ModuleSettingsStore   # module settings changed through the API
    log_buffer: LogBuffer                 # recent log lines for /v1/log
    modules: dict[str, CapabilityModule]  # by module id, in start order
    queue: InferenceQueue                 # the one bounded inference pool REST, MQTT and cameras share
    probes: dict[str, ProbeResult] = field(default_factory=dict)
    mqtt: MqttLink | None = None          # None when no broker is configured
    cameras: CameraService | None = None  # None until the cameras have started
    reload: Callable[[], Awaitable[None]] | None = None  # what SIGHUP runs, once started
    config_file: Path | None = None
    metrics: Metrics | None = None        # the Prometheus registry GET /metrics answers, once started


ServicesDep = Annotated[Services, Dependency(kind="named")]
"""A handler's ``services: ServicesDep`` parameter: what :func:`provide_services` gives."""


def provide_services(state: State) -> Services:
    """Litestar dependency: the daemon's services."""
    return state.services
