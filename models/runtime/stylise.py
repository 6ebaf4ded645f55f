"""The one run path of a style transfer model (multistyle26): image → work size → backend with one
style's weights → image head → a stylised image.

The network is fully convolutional: it takes any H×W that is a multiple of ``input.multiple_of`` (4:
it downsamples twice by 2), so the image is fed at its own size, or shrunk (area) so its longer side
is at most ``max_side``; it is reflect-padded to the multiple and the padding cut off again. Its
strokes have a fixed size in pixels, so the work size decides how much of the photo's structure
survives (README: Cartooniser). Style ``i`` is the one-hot weight vector with 1 at ``i``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from edgewatch.models.runtime.heads import HEADS

if TYPE_CHECKING:
    from edgewatch.backends.base import Backend
    from edgewatch.models.manifest import ModelManifest

MIN_SIDE = 32  # smaller images have too few pixels for the network's 9x9 reflect padding and its two strides
STYLE_INPUT = "style_weights"  # the second input of multistyle26; the first is the image (manifest.input.name)


class TooSmall(ValueError):
    """The image (at its work size) is too small for the network."""


@dataclass(frozen=True, slots=True)
class Stylised:
    """The stylised H×W×3 uint8 BGR image (the work size) and the backend's run time alone."""

    image: np.ndarray
    inference_ms: float


def work_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(width, height) the image is stylised at: its own, or scaled so its longer side is ``max_side``."""
    if max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def style_weights(manifest: ModelManifest, index: int) -> np.ndarray:
    """The one-hot weights of style ``index`` (one weight per label of the manifest)."""
    if not 0 <= index < len(manifest.labels):
        raise ValueError(f"{manifest.name} has styles 0 to {len(manifest.labels) - 1}, not {index}")
    weights = np.zeros(len(manifest.labels), np.float32)
    weights[index] = 1.0
    return weights


def feeds(manifest: ModelManifest, image_bgr: np.ndarray, index: int) -> dict[str, np.ndarray]:
    """The model's inputs for ``image_bgr`` (already at its work size) and style ``index``: RGB (or BGR)
    divided by ``std``, NCHW, reflect-padded to a multiple of ``input.multiple_of``."""
    pre, spec = manifest.preprocessing, manifest.input
    pixels = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB) if pre.color == "rgb" else image_bgr
    tensor = (pixels.astype(np.float32) - np.asarray(pre.mean, np.float32)) / np.asarray(pre.std, np.float32)
    multiple = spec.multiple_of or 1
    height, width = image_bgr.shape[:2]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if pad_h or pad_w:
        tensor = np.pad(tensor, ((0, pad_h), (0, pad_w), (0, 0)), mode="reflect")
    return {spec.name or "image": np.ascontiguousarray(tensor.transpose(2, 0, 1)[None]),
            STYLE_INPUT: style_weights(manifest, index)}


def stylise(backend: Backend, manifest: ModelManifest, image_bgr: np.ndarray, index: int, max_side: int) -> Stylised:
    """``image_bgr`` (H×W×3 uint8, at least MIN_SIDE pixels a side) in style ``index``, at the work size
    :func:`work_size` gives; TooSmall for an image too small to stylise."""
    head = HEADS[manifest.postprocessing]
    if head.task != "style_transfer":
        raise ValueError(f"{manifest.name} is a {head.task} model, not a style transfer model")
    height, width = image_bgr.shape[:2]
    size = work_size(width, height, max_side)
    if min(size) < MIN_SIDE:
        at = "" if size == (width, height) else f" (shrunk to {size[0]}x{size[1]} to fit max_side {max_side})"
        raise TooSmall(f"the image is {width}x{height}{at}; style transfer needs at least {MIN_SIDE} pixels a side")
    if size != (width, height):
        image_bgr = cv2.resize(image_bgr, size, interpolation=cv2.INTER_AREA)
    inputs = feeds(manifest, image_bgr, index)
    began = time.perf_counter()
    outputs = backend.infer(inputs)
    inference_ms = (time.perf_counter() - began) * 1000
    pixels = head.decoder(outputs)[0][: size[1], : size[0]]  # the reflect padding cut off
    out = np.clip(pixels + 0.5, 0, 255).astype(np.uint8)
    if manifest.preprocessing.color == "rgb":
        out = cv2.cvtColor(out, cv2.COLOR_RGB2BGR)
    return Stylised(np.ascontiguousarray(out), inference_ms)
