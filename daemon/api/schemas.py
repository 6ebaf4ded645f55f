"""Typed response bodies (the OpenAPI schema is generated from these) and the vision envelope."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

import msgspec
from litestar import Request

from edgewatch.daemon.detection import MODULE_ID, MODULE_NAME


class PredictionBody(msgspec.Struct):
    label: str
    confidence: float
    x_min: int
    y_min: int
    x_max: int
    y_max: int


class VisionResponse(msgspec.Struct, omit_defaults=True):
    """The CodeProject.AI envelope every /v1/vision answer carries, success or not."""

    success: bool
    message: str
    predictions: list[PredictionBody]
    count: int
    inferenceMs: int
    processMs: int
    moduleId: str
    moduleName: str
    command: str
    executionProvider: str
    canUseGPU: bool
    analysisRoundTripMs: int
    code: int
    timestampUTC: str
    error: str | None = None


class CustomListResponse(msgspec.Struct):
    success: bool
    models: list[str]
    message: str
    moduleId: str
    moduleName: str
    command: str
    code: int


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


class VersionResponse(msgspec.Struct):
    success: bool
    message: str
    version: VersionInfo
    inference: InferenceSummary | None = None
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


class BackendsResponse(msgspec.Struct):
    success: bool
    active: str | None
    executionProvider: str | None
    backends: list[BackendStatus]
    notes: list[str]
    model: str | None = None  # the default detector
    modelReason: str = ""      # why: set in the config, or what `auto` measured and chose
    code: int = 200


class SettingsResponse(msgspec.Struct):
    success: bool
    moduleId: str
    settings: dict[str, Any]
    environmentVariables: dict[str, str]
    inference: InferenceSummary | None = None
    message: str = ""
    code: int = 200


def inference_summary(request: Request) -> InferenceSummary:
    module = request.app.state.detection
    active = module.backend
    model, reason = module.model_summary()
    return InferenceSummary(
        active=active.type_key if active else None,
        executionProvider=active.execution_provider if active else None,
        backends=[BackendStatus(k, p.available, p.reason) for k, p in request.app.state.probes.items()],
        notes=module.backend_notes, model=model, modelReason=reason)


def received_at(request: Request) -> float:
    """perf_counter when the request reached the app (set by middleware)."""
    return request.scope.get("state", {}).get("received_at", time.perf_counter())


def vision_envelope(request: Request, command: str, **fields: Any) -> VisionResponse:
    """The envelope for an HTTP request (timed from when it reached the app)."""
    return envelope(command, received_at=received_at(request), module=request.app.state.get("detection"), **fields)


def envelope(command: str, *, success: bool, received_at: float, module: Any = None, code: int = 200,
             message: str = "", predictions: list[PredictionBody] | None = None, inference_ms: float = 0.0,
             process_ms: float = 0.0, error: str | None = None, execution_provider: str | None = None,
             can_use_gpu: bool | None = None) -> VisionResponse:
    """The CodeProject.AI envelope, for HTTP and MQTT alike; without the provider that ran
    (errors before inference), the default detector's."""
    if execution_provider is None:
        backend = module.backend if module is not None else None
        execution_provider = backend.execution_provider if backend else "CPU"
        can_use_gpu = bool(backend and backend.can_use_gpu)
    predictions = predictions or []
    return VisionResponse(
        success=success,
        message=message or (error or ""),
        predictions=predictions,
        count=len(predictions),
        inferenceMs=round(inference_ms),
        processMs=round(process_ms),
        moduleId=MODULE_ID,
        moduleName=MODULE_NAME,
        command=command,
        executionProvider=execution_provider,
        canUseGPU=bool(can_use_gpu),
        analysisRoundTripMs=round((time.perf_counter() - received_at) * 1000),
        code=code,
        timestampUTC=datetime.now(timezone.utc).strftime("%a, %d %b %Y %H:%M:%S GMT"),
        error=error,
    )
