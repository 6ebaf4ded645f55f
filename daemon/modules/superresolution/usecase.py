"""Super-resolution as a use case, the same for every transport: image bytes in, the module's
envelope with the upscaled PNG out; what the sender can fix raises the module errors.

Work runs on the shared inference queue as separate jobs: decoding, then each tile (about a
second each, see module.auto_tile), then the PNG. Other requests run between them, and no job runs
long enough for the systemd watchdog to take it for a hang.
"""

from __future__ import annotations

import base64
import io
import time
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from PIL import Image

from edgewatch.backends.base import BackendError
from edgewatch.daemon.imaging import ImageError, decode_image
from edgewatch.daemon.inference_queue import InferenceQueue
from edgewatch.daemon.modules.envelope import envelope_fields
from edgewatch.daemon.modules.errors import BadRequest, TooLarge, Unavailable
from edgewatch.daemon.modules.requests import queued
from edgewatch.daemon.modules.superresolution.schemas import SuperResolutionResponse
from edgewatch.daemon.modules.superresolution.tiling import Canvas, Tile, plan

if TYPE_CHECKING:
    from edgewatch.daemon.modules.superresolution.module import SrModel, SuperResolutionModule

COMMAND = "superresolution"
SCALE = 4  # what the size limit assumes before the model says (every catalogue model is x4)


def answer(module: SuperResolutionModule, command: str, received_at: float, *, success: bool = True,
           code: int = 200, message: str = "", error: str | None = None, inference_ms: float = 0.0,
           process_ms: float = 0.0, **fields: Any) -> SuperResolutionResponse:
    """The module's envelope for ``command`` with the Super Resolution ``fields``."""
    return SuperResolutionResponse(**envelope_fields(module, command, success=success, received_at=received_at,
                                                     code=code, message=message, error=error),
                                   inferenceMs=round(inference_ms), processMs=round(process_ms), **fields)


def _header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the image header, without decoding; None if unreadable (decoding says why)."""
    try:
        return Image.open(io.BytesIO(data)).size
    except Exception:  # noqa: BLE001 - any unreadable header is decode_image's to explain
        return None


def check_size(module: SuperResolutionModule, width: int, height: int, scale: int = SCALE) -> None:
    """TooLarge when the upscaled image would be over max_output_pixels; the message says what fits."""
    limit = module.settings.max_output_pixels
    if width * height * scale * scale <= limit:
        return
    fit = (limit / (scale * scale) / (width * height)) ** 0.5
    raise TooLarge(f"the image is {width}x{height}; upscaled x{scale} it would be {width * scale}x{height * scale} = "
                   f"{width * height * scale * scale} pixels, over max_output_pixels {limit}: send at most "
                   f"{int(width * fit)}x{int(height * fit)} (or a crop of it), or raise max_output_pixels with "
                   f"POST /v1/settings/{module.module_id}")


def check_time(module: SuperResolutionModule, model: SrModel, tiles: list[Tile]) -> None:
    """TooLarge when the tiles would take longer than max_seconds at the speed measured at install."""
    per_pixel, limit = model.ms_per_pixel, module.settings.max_seconds
    if per_pixel is None:
        return
    seconds = per_pixel * sum(t.width * t.height for t in tiles) / 1000
    if seconds > limit:
        raise TooLarge(f"upscaling this image with {model.manifest.name} would take about {seconds:.0f} s here, over "
                       f"max_seconds {limit:g}: send a smaller image, set model to realesr-animevideov3 (the fast "
                       f"one), or raise max_seconds with POST /v1/settings/{module.module_id}")


def _decode(module: SuperResolutionModule, data: bytes) -> np.ndarray:
    """The upload as H×W×3 BGR, turned as its EXIF orientation says (the answer is a picture to view)."""
    try:
        image, _ = decode_image(data, module.config.server.max_image_pixels, exif_orientation=True)
    except ImageError as exc:
        raise BadRequest(str(exc)) from None
    return image


def _png_base64(bgr: np.ndarray) -> str:
    ok, png = cv2.imencode(".png", bgr)
    if not ok:
        raise RuntimeError("OpenCV could not encode the PNG")
    return base64.b64encode(png.tobytes()).decode("ascii")


async def superresolution(module: SuperResolutionModule, queue: InferenceQueue, data: bytes,
                          received_at: float) -> SuperResolutionResponse:
    began = time.perf_counter()
    size = _header_size(data)
    if size is not None:
        check_size(module, *size)  # before anything is decoded

    def prepare() -> tuple[SrModel, np.ndarray, list[Tile], int]:
        model = module.model()
        bgr = _decode(module, data)
        height, width = bgr.shape[:2]
        check_size(module, width, height, model.scale)
        tile = module.settings.tile_size or model.auto_tile()
        tiles = plan(height, width, tile)
        check_time(module, model, tiles)
        color = cv2.COLOR_BGR2RGB if model.manifest.preprocessing.color == "rgb" else None
        return model, cv2.cvtColor(bgr, color) if color is not None else bgr, tiles, tile

    model, image, tiles, tile = await queued(queue, prepare)
    canvas = Canvas(image.shape[0], image.shape[1], tile)

    def run(t: Tile) -> float:
        start = time.perf_counter()
        try:
            pixels = model.upscale(image[t.y: t.y + t.height, t.x: t.x + t.width])
        except BackendError as exc:  # the model was closed by a settings change between two tiles
            raise Unavailable(f"the super-resolution model changed while this image was upscaled ({exc}): "
                              "send it again", retry_after=1) from None
        spent = time.perf_counter() - start
        canvas.add(t, pixels)
        return spent

    inference_s = 0.0
    for t in tiles:
        inference_s += await queued(queue, lambda t=t: run(t))

    def encode() -> tuple[str, int, int]:
        out = canvas.image()
        if model.manifest.preprocessing.color == "rgb":
            out = cv2.cvtColor(out, cv2.COLOR_RGB2BGR)
        return _png_base64(out), out.shape[1], out.shape[0]

    png, width, height = await queued(queue, encode)
    return answer(module, COMMAND, received_at,
                  message=f"upscaled {image.shape[1]}x{image.shape[0]} to {width}x{height} with "
                          f"{model.manifest.name} ({len(tiles)} tile{'s' if len(tiles) > 1 else ''})",
                  inference_ms=inference_s * 1000, process_ms=(time.perf_counter() - began) * 1000,
                  imageBase64=png, width=width, height=height, scale=canvas.scale)
