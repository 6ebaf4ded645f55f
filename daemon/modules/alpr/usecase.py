"""Plate reading as a use case, the same for every transport: image bytes and ``min_confidence`` in,
the module's envelope with one prediction per plate read out; what the sender can fix raises the
module errors. Decoding and both models run on the shared inference queue."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from edgewatch.daemon.imaging import ImageError, decode_image
from edgewatch.daemon.inference_queue import InferenceQueue
from edgewatch.daemon.modules.alpr.schemas import AlprResponse, PlatePrediction
from edgewatch.daemon.modules.envelope import envelope_fields
from edgewatch.daemon.modules.errors import BadRequest
from edgewatch.daemon.modules.requests import confidence_value, queued
from edgewatch.models.runtime.plates import PlateRead

if TYPE_CHECKING:
    from edgewatch.daemon.modules.alpr.module import AlprModule

COMMAND = "alpr"


def answer(module: AlprModule, command: str, received_at: float, *, success: bool = True, code: int = 200,
           message: str = "", error: str | None = None, predictions: list[PlatePrediction] | None = None,
           inference_ms: float = 0.0, process_ms: float = 0.0, **fields: Any) -> AlprResponse:
    predictions = predictions or []
    return AlprResponse(**envelope_fields(module, command, success=success, received_at=received_at, code=code,
                                          message=message, error=error),
                        predictions=predictions, count=len(predictions), inferenceMs=round(inference_ms),
                        processMs=round(process_ms), **fields)


def prediction(plate: PlateRead) -> PlatePrediction:
    x1, y1, x2, y2 = plate.box
    return PlatePrediction(label=f"Plate: {plate.text}", plate=plate.text, confidence=round(plate.ocr_confidence, 4),
                           x_min=round(x1), y_min=round(y1), x_max=round(x2), y_max=round(y2),
                           plate_confidence=round(plate.score, 4), ocr_confidence=round(plate.ocr_confidence, 4))


async def read_image(module: AlprModule, queue: InferenceQueue, data: bytes, min_confidence: str | None,
                     received_at: float) -> AlprResponse:
    min_conf = confidence_value(min_confidence or "", module.settings.min_confidence)

    def job() -> tuple[list[PlateRead], float, float]:
        start = time.perf_counter()
        try:
            image, _ = decode_image(data, module.config.server.max_image_pixels)
        except ImageError as exc:
            raise BadRequest(str(exc)) from None
        plates, inference_ms = module.read(image)
        return plates, inference_ms, (time.perf_counter() - start) * 1000

    plates, inference_ms, process_ms = await queued(queue, job)
    kept = [prediction(p) for p in plates if module.accepted(p, min_conf)]
    unread = len(plates) - len(kept)
    if kept:
        message = f"Found {len(kept)} plate{'s' if len(kept) > 1 else ''}: " + ", ".join(p.plate for p in kept)
    else:
        message = "No plates found"
    if unread:
        message += f" ({unread} more plate-like region{'s' if unread > 1 else ''} not read with confidence)"
    return answer(module, COMMAND, received_at, message=message, predictions=kept, inference_ms=inference_ms,
                  process_ms=process_ms)
