"""Background removal as a use case, the same for every transport: image bytes and
``use_alphamatting`` in, the module's envelope with a base64 RGBA PNG out; what the sender can fix
raises the module errors. Decoding, inference and matting run on the shared inference queue."""

from __future__ import annotations

import base64
import time
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from edgewatch.daemon.imaging import ImageError, decode_image
from edgewatch.daemon.inference_queue import InferenceQueue
from edgewatch.daemon.modules.background.matting import levels
from edgewatch.daemon.modules.background.schemas import BackgroundResponse
from edgewatch.daemon.modules.envelope import envelope_fields
from edgewatch.daemon.modules.errors import BadRequest, Unavailable
from edgewatch.daemon.modules.requests import queued

if TYPE_CHECKING:
    from edgewatch.daemon.modules.background.module import BackgroundModule

COMMAND = "removebackground"
TRUE, FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off", ""}


def answer(module: BackgroundModule, command: str, received_at: float, *, success: bool = True, code: int = 200,
           message: str = "", error: str | None = None, inference_ms: float = 0.0, process_ms: float = 0.0,
           **fields: Any) -> BackgroundResponse:
    """The module's envelope for ``command`` with the Background Remover's ``fields``."""
    return BackgroundResponse(**envelope_fields(module, command, success=success, received_at=received_at, code=code,
                                                message=message, error=error),
                              inferenceMs=round(inference_ms), processMs=round(process_ms), **fields)


def flag_value(raw: str | None) -> bool:
    """``use_alphamatting`` as sent (text; absent or empty is false); BadRequest for anything but a boolean."""
    value = (raw or "").strip().lower()
    if value in TRUE or value in FALSE:
        return value in TRUE
    raise BadRequest(f"use_alphamatting must be true or false, got {raw!r}: send use_alphamatting=true to refine "
                     "the edges, or leave it out")


def rgba_png(image_bgr: np.ndarray, alpha: np.ndarray) -> bytes:
    """``image_bgr`` with ``alpha`` (0–1) as its alpha channel, PNG-encoded."""
    bgra = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2BGRA)
    bgra[..., 3] = np.clip(alpha * 255 + 0.5, 0, 255).astype(np.uint8)
    ok, png = cv2.imencode(".png", bgra, [cv2.IMWRITE_PNG_COMPRESSION, 1])  # speed over size: it is sent once
    if not ok:
        raise RuntimeError("OpenCV could not encode the PNG")
    return png.tobytes()


async def remove_background(module: BackgroundModule, queue: InferenceQueue, data: bytes, use_alphamatting: bool,
                            received_at: float) -> BackgroundResponse:
    settings = module.settings
    if use_alphamatting and not module.matting.ready.is_set():
        raise Unavailable("alpha matting is still being prepared (pymatting compiles once, about a minute after the "
                          "first start): retry shortly, or send use_alphamatting=false", retry_after=30)
    if use_alphamatting and module.matting.error:
        raise Unavailable(f"alpha matting cannot run on this box ({module.matting.error}): send "
                          "use_alphamatting=false, or install the matting extra into edgewatch's environment "
                          "(pip install 'edgewatch[matting]', i.e. pymatting) and restart")

    def job() -> tuple[bytes, float, float, bool]:
        start = time.perf_counter()
        try:
            # the answer is an image to look at: turned upright as its EXIF orientation says
            image, _ = decode_image(data, module.config.server.max_image_pixels, exif_orientation=True)
        except ImageError as exc:
            raise BadRequest(str(exc)) from None
        mask = module.mask(image)
        colours, alpha, matted = image, levels(mask.prob), False
        if use_alphamatting:
            colours, alpha, matted = module.matting.refine(image, mask.prob, settings.matting_max_side,
                                                           settings.matting_band)
        png = rgba_png(colours, alpha)
        return png, mask.inference_ms, (time.perf_counter() - start) * 1000, matted

    png, inference_ms, process_ms, matted = await queued(queue, job)
    if not use_alphamatting:
        message = "Background removed"
    elif matted:
        message = "Background removed, edges alpha-matted"
    else:
        message = "Background removed; no alpha matting: the mask has no sure foreground or background to start from"
    return answer(module, COMMAND, received_at, message=message, inference_ms=inference_ms, process_ms=process_ms,
                  imageBase64=base64.b64encode(png).decode("ascii"))
