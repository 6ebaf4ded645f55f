"""Typed response bodies of the daemon's own routes (status, settings); the OpenAPI schema is
generated from these. Modules bring their own (see edgewatch.daemon.modules)."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from litestar import Request

from edgewatch.daemon.modules.base import ModuleStatus
from edgewatch.daemon.modules.detection import MODULE_ID as DETECTION
from edgewatch.daemon.mqtt.state import MqttState
from edgewatch.daemon.services import Services


class VersionInfo(msgspec.Struct):
    major: int
    minor: int
    patch: int
    preRelease: str | None
    securityUpdate: bool
    build: int
    file: str
    releaseNotes: str


class BackendStatus(msgspec.Struct):
    type: str
    available: bool
    reason: str


class InferenceSummary(msgspec.Struct):
    """Which backend runs, and what the probe found for each, as in `edgewatch probe`."""

    active: str | None
    executionProvider: str | None
    backends: list[BackendStatus]
    notes: list[str]
    model: str | None = None  # the default detector
    modelReason: str = ""      # why: set in the config, or what `auto` measured and chose


class StorageSummary(msgspec.Struct):
    """The data dir's disk (faces, settings, models, uploads)."""
    freeBytes: int
    totalBytes: int
    low: bool  # under 256 MB free: model installs and uploads may not fit


class AccessSummary(msgspec.Struct):
    detect: str                   # open | key
    admin: str                    # trusted only | key
    trusted_networks: list[str]   # clients that need no key


class VersionResponse(msgspec.Struct):
    success: bool
    message: str
    version: VersionInfo
    inference: InferenceSummary | None = None
    modules: list[ModuleStatus] | None = None  # each capability module: ready, or what to do
    access: AccessSummary | None = None  # what needs a key (never a key, hash or key name)
    storage: StorageSummary | None = None  # the data dir's disk, when it can be read
    code: int = 200


class UpdateResponse(msgspec.Struct):
    success: bool
    message: str
    version: VersionInfo | None
    current: VersionInfo
    latest: VersionInfo | None
    updateAvailable: bool
    code: int = 200


class LogEntry(msgspec.Struct):
    id: int
    timestamp: str
    entry: str
    level: str
    category: str
    label: str


class LogResponse(msgspec.Struct):
    success: bool
    entries: list[LogEntry]
    code: int = 200


class BackendsResponse(InferenceSummary, kw_only=True):
    success: bool
    code: int = 200


class MqttResponse(msgspec.Struct):
    success: bool
    mqtt: MqttState


class CameraFacesStatus(msgspec.Struct):
    """A camera's face recognition: people recognised and unknown faces saved since it started, and
    why it cannot recognise now (None when it can)."""

    recognised: int
    unknown_saved: int
    error: str | None


class CameraStatus(msgspec.Struct, omit_defaults=True):
    """A camera's configuration (password hidden) and live state; the reader's and the worker's
    figures are there while it runs."""

    name: str
    url: str | None
    enabled: bool
    fps_cap: float | None
    running: bool
    connected: bool
    last_error: str | None
    detect_error: str | None
    invalid: bool = False  # a saved entry that no longer validates (not started)
    kind: str | None = None  # rtsp, snapshot, mjpeg, file, v4l2
    fps_in: float | None = None
    fps_out: float | None = None
    frames_out: int | None = None
    last_frame_age_s: float | None = None
    reconnects: int | None = None
    retry_in_s: float | None = None
    open_time_s: float | None = None
    width: int | None = None
    height: int | None = None
    frames_seen: int | None = None
    detections: int | None = None
    skipped_busy: int | None = None
    tracked: dict[str, int] | None = None  # confirmed objects in view now, per label
    faces: CameraFacesStatus | None = None  # when the camera recognises faces


class CamerasResponse(msgspec.Struct):
    success: bool
    cameras: list[CameraStatus]


class CameraResponse(msgspec.Struct):
    success: bool
    camera: CameraStatus


class CameraRemovedResponse(msgspec.Struct):
    success: bool
    removed: str


class SettingsResponse(msgspec.Struct):
    success: bool
    moduleId: str
    settings: dict[str, Any]
    environmentVariables: dict[str, str]
    inference: InferenceSummary | None = None
    message: str = ""
    code: int = 200


def inference_summary(services: Services) -> InferenceSummary:
    """The backends, and the default detector with the backend it runs on."""
    module = services.modules[DETECTION]
    active = module.backend
    model, reason = module.model_summary()
    return InferenceSummary(
        active=active.type_key if active else None,
        executionProvider=active.execution_provider if active else None,
        backends=[BackendStatus(k, p.available, p.reason) for k, p in services.probes.items()],
        notes=module.backend_notes, model=model, modelReason=reason)


def received_at(request: Request) -> float:
    """perf_counter when the request reached the app (set by middleware)."""
    return request.scope.get("state", {}).get("received_at", time.perf_counter())
