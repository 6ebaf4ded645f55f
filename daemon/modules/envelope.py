"""The CodeProject.AI answer envelope every vision module's answers carry, success or not, over
REST and MQTT alike; its ``moduleId``, ``moduleName`` and ``command`` come from the module and
command that handled the request."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from edgewatch.daemon.modules.base import CapabilityModule


class Prediction(msgspec.Struct, frozen=True):
    """One thing found: a label, its confidence, and its box in original-image pixels."""

    label: str
    confidence: float
    x_min: int
    y_min: int
    x_max: int
    y_max: int


class VisionResponse(msgspec.Struct, omit_defaults=True):
    """The CodeProject.AI envelope."""

    success: bool
    message: str
    predictions: list[Prediction]
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


def envelope(module: CapabilityModule, command: str, *, success: bool, received_at: float, code: int = 200,
             message: str = "", predictions: list[Prediction] | None = None, inference_ms: float = 0.0,
             process_ms: float = 0.0, error: str | None = None, execution_provider: str | None = None,
             can_use_gpu: bool | None = None) -> VisionResponse:
    """``module``'s envelope for ``command``; ``received_at`` (perf_counter) times the round trip.
    Without the provider that ran (errors before inference), the module's default one."""
    if execution_provider is None:
        execution_provider, can_use_gpu = module.execution_provider()
    predictions = predictions or []
    return VisionResponse(
        success=success,
        message=message or (error or ""),
        predictions=predictions,
        count=len(predictions),
        inferenceMs=round(inference_ms),
        processMs=round(process_ms),
        moduleId=module.module_id,
        moduleName=module.module_name,
        command=command,
        executionProvider=execution_provider,
        canUseGPU=bool(can_use_gpu),
        analysisRoundTripMs=round((time.perf_counter() - received_at) * 1000),
        code=code,
        timestampUTC=datetime.now(timezone.utc).strftime("%a, %d %b %Y %H:%M:%S GMT"),
        error=error,
    )
