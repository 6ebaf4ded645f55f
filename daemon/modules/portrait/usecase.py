"""The portrait filter as a use case, the same for every transport: image bytes and ``strength`` in,
the module's envelope with a base64 JPEG out; what the sender can fix raises the module errors.
Decoding, inference and the blur run on the shared inference queue."""

from __future__ import annotations

import base64
import math
import time
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from edgewatch.daemon.imaging import ImageError, decode_image
from edgewatch.daemon.inference_queue import InferenceQueue
from edgewatch.daemon.modules.envelope import envelope_fields
from edgewatch.daemon.modules.errors import BadRequest
from edgewatch.daemon.modules.portrait.blur import portrait
from edgewatch.daemon.modules.portrait.schemas import PortraitResponse
from edgewatch.daemon.modules.requests import queued

if TYPE_CHECKING:
    from edgewatch.daemon.modules.portrait.module import PortraitModule

COMMAND = "filter"
JPEG_QUALITY = 95


def answer(module: PortraitModule, command: str, received_at: float, *, success: bool = True, code: int = 200,
           message: str = "", error: str | None = None, inference_ms: float = 0.0, process_ms: float = 0.0,
           **fields: Any) -> PortraitResponse:
    """The module's envelope for ``command`` with the Portrait Filter's ``fields``."""
    return PortraitResponse(**envelope_fields(module, command, success=success, received_at=received_at, code=code,
                                              message=message, error=error),
                            inferenceMs=round(inference_ms), processMs=round(process_ms), **fields)


def strength_value(raw: str | None, default: float) -> float:
    """``strength`` as sent (text), or ``default`` when absent or empty; BadRequest unless a number in [0, 1]."""
    text = (raw or "").strip()
    if text == "":
        return default
    try:
        value = float(text)
    except ValueError:
        raise BadRequest(f"strength must be a number from 0.0 (no blur) to 1.0 (most blur), got {raw!r}") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise BadRequest(f"strength must be between 0.0 (no blur) and 1.0 (most blur), got {raw!r}")
    return value


def jpeg(image_bgr: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError("OpenCV could not encode the JPEG")
    return data.tobytes()


async def filter_portrait(module: PortraitModule, queue: InferenceQueue, data: bytes, strength: float,
                          received_at: float) -> PortraitResponse:
    max_blur = module.settings.max_blur

    def job() -> tuple[bytes, float, float, float]:
        start = time.perf_counter()
        try:
            # the answer is an image to look at: turned upright as its EXIF orientation says
            image, _ = decode_image(data, module.config.server.max_image_pixels, exif_orientation=True)
        except ImageError as exc:
            raise BadRequest(str(exc)) from None
        mask = module.mask(image)
        sigma = strength * max_blur * max(image.shape[:2])
        out = jpeg(portrait(image, mask.prob, sigma))
        return out, mask.inference_ms, (time.perf_counter() - start) * 1000, float(mask.prob.mean())

    out, inference_ms, process_ms, person_share = await queued(queue, job)
    message = (f"Background blurred (strength {strength:g})" if person_share >= 0.005 else
               f"No person found: the whole image blurred (strength {strength:g})")
    return answer(module, COMMAND, received_at, message=message, inference_ms=inference_ms, process_ms=process_ms,
                  filtered_image=base64.b64encode(out).decode("ascii"))
