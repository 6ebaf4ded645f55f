"""The cartooniser as a use case, the same for every transport: image bytes and a style name in, the
module's envelope with the stylised PNG out; what the sender can fix raises the module errors.
Loading, decoding, inference and the PNG run as one job on the shared inference queue (about a
second at most for the default 1024 px: no job long enough for the systemd watchdog)."""

from __future__ import annotations

import base64
import time
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from edgewatch.daemon.imaging import ImageError, decode_image
from edgewatch.daemon.inference_queue import InferenceQueue
from edgewatch.daemon.modules.cartoon.schemas import CartoonResponse
from edgewatch.daemon.modules.cartoon.styles import Style, accepted, resolve
from edgewatch.daemon.modules.envelope import envelope_fields
from edgewatch.daemon.modules.errors import BadRequest
from edgewatch.daemon.modules.requests import queued
from edgewatch.models.runtime.stylise import TooSmall

if TYPE_CHECKING:
    from edgewatch.daemon.modules.cartoon.module import CartoonModule, StyleModel

COMMAND = "cartoonise"


def answer(module: CartoonModule, command: str, received_at: float, *, success: bool = True, code: int = 200,
           message: str = "", error: str | None = None, inference_ms: float = 0.0, process_ms: float = 0.0,
           **fields: Any) -> CartoonResponse:
    """The module's envelope for ``command`` with the Cartooniser's ``fields``."""
    return CartoonResponse(**envelope_fields(module, command, success=success, received_at=received_at, code=code,
                                             message=message, error=error),
                           inferenceMs=round(inference_ms), processMs=round(process_ms), **fields)


def style_for(model: StyleModel, raw: str | None, default: str) -> Style:
    """The style ``raw`` names (the form's ``model``), or ``default`` when absent or empty; BadRequest
    listing the accepted names otherwise."""
    sent = raw is not None and raw.strip() != ""
    name = raw if sent else default
    try:
        return resolve(name, model.styles)
    except KeyError:
        which = "model" if sent else "the default_style setting"
        raise BadRequest(f"{which} {name!r} is not a style here: this cartooniser is a painterly style transfer "
                         f"({model.manifest.name}), and accepts {', '.join(accepted(model.styles))}") from None


def png(image_bgr: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image_bgr)
    if not ok:
        raise RuntimeError("OpenCV could not encode the PNG")
    return data.tobytes()


async def cartoonise(module: CartoonModule, queue: InferenceQueue, data: bytes, style_name: str | None,
                     received_at: float) -> CartoonResponse:
    settings = module.settings

    def job() -> tuple[str, Style, bytes, int, int, float, float]:
        start = time.perf_counter()
        model = module.model()
        style = style_for(model, style_name, settings.default_style)
        try:
            # the answer is a picture to look at: turned upright as its EXIF orientation says; a large
            # JPEG is decoded reduced (DCT scaling) to no less than the work size
            image, _ = decode_image(data, module.config.server.max_image_pixels,
                                    (settings.max_side, settings.max_side), exif_orientation=True)
        except ImageError as exc:
            raise BadRequest(str(exc)) from None
        try:
            out = model.stylise(image, style, settings.max_side)
        except TooSmall as exc:
            raise BadRequest(f"{exc}: send a larger image") from None
        height, width = out.image.shape[:2]
        return (model.manifest.name, style, png(out.image), width, height, out.inference_ms,
                (time.perf_counter() - start) * 1000)

    model_name, style, image_png, width, height, inference_ms, process_ms = await queued(queue, job)
    message = (f"Stylised with the painterly style {style.describe()} of {model_name}, a neural style transfer, "
               f"not an anime GAN (no cartoon model ships offline); {width}x{height} PNG")
    return answer(module, COMMAND, received_at, message=message, inference_ms=inference_ms, process_ms=process_ms,
                  imageBase64=base64.b64encode(image_png).decode("ascii"), style=style.name, width=width,
                  height=height)
