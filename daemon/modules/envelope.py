"""The CodeProject.AI answer envelope every vision module's answers carry, success or not, over
REST and MQTT alike; its ``moduleId``, ``moduleName`` and ``command`` come from the module and
command that handled the request."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

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


class Envelope(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The fields every CodeProject.AI answer carries; each module's answers add their own."""

    success: bool
    message: str
    moduleId: str
    moduleName: str
    command: str
    executionProvider: str
    canUseGPU: bool
    analysisRoundTripMs: int
    code: int
    timestampUTC: str
    error: str | None = None


def envelope_fields(module: CapabilityModule, command: str, *, success: bool, received_at: float, code: int = 200,
                    message: str = "", error: str | None = None, execution_provider: str | None = None,
                    can_use_gpu: bool | None = None) -> dict[str, Any]:
    """The :class:`Envelope` fields of ``module``'s answer to ``command``; ``received_at``
    (perf_counter) times the round trip. Without the provider that ran (errors before inference),
    the module's default one."""
    if execution_provider is None:
        execution_provider, can_use_gpu = module.execution_provider()
    return {"success": success, "message": message or (error or ""), "moduleId": module.module_id,
            "moduleName": module.module_name, "command": command, "executionProvider": execution_provider,
            "canUseGPU": bool(can_use_gpu), "analysisRoundTripMs": round((time.perf_counter() - received_at) * 1000),
            "code": code, "timestampUTC": datetime.now(timezone.utc).strftime("%a, %d %b %Y %H:%M:%S GMT"),
            "error": error}


class VisionResponse(Envelope, kw_only=True, omit_defaults=True):
    """The envelope of detection answers."""

    predictions: list[Prediction]
    count: int
    inferenceMs: int
    processMs: int


def envelope(module: CapabilityModule, command: str, *, success: bool, received_at: float, code: int = 200,
             message: str = "", predictions: list[Prediction] | None = None, inference_ms: float = 0.0,
             process_ms: float = 0.0, error: str | None = None, execution_provider: str | None = None,
             can_use_gpu: bool | None = None) -> VisionResponse:
    """``module``'s detection envelope for ``command`` (see :func:`envelope_fields`)."""
    predictions = predictions or []
    return VisionResponse(
        **envelope_fields(module, command, success=success, received_at=received_at, code=code, message=message,
                          error=error, execution_provider=execution_provider, can_use_gpu=can_use_gpu),
        predictions=predictions, count=len(predictions), inferenceMs=round(inference_ms), processMs=round(process_ms))
