"""The one run path of a segmentation model: image → letterbox → backend → mask head → a
probability per image pixel. Background removal and the portrait filter both run through it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from edgewatch.models.runtime.heads import HEADS
from edgewatch.models.runtime.preprocess import letterbox

if TYPE_CHECKING:
    from edgewatch.backends.base import Backend
    from edgewatch.models.manifest import ModelManifest


@dataclass(frozen=True, slots=True)
class Mask:
    """H×W float32 probabilities 0–1 of the image's own size, and the backend's run time alone."""

    prob: np.ndarray
    inference_ms: float


def segment(backend: Backend, manifest: ModelManifest, image_bgr: np.ndarray) -> Mask:
    """The mask of ``image_bgr`` (H×W×3 uint8): the network's map, its letterbox padding cut off,
    scaled (bilinear) to the image."""
    head = HEADS[manifest.postprocessing]
    if head.task != "segmentation":
        raise ValueError(f"{manifest.name} is a {head.task} model, not a segmentation model")
    spec, pre = backend.input_format()
    tensor, geometry = letterbox(image_bgr, spec, pre)
    began = time.perf_counter()
    outputs = backend.infer(tensor)
    inference_ms = (time.perf_counter() - began) * 1000
    prob = head.decoder(outputs)
    in_w, in_h = spec.size
    if prob.shape != (in_h, in_w):  # a map at another resolution than the input: to input pixels first
        prob = cv2.resize(prob, (in_w, in_h), interpolation=cv2.INTER_LINEAR)
    height, width = image_bgr.shape[:2]
    x0, y0 = int(geometry.pad_x), int(geometry.pad_y)
    x1 = x0 + max(1, round(width * geometry.scale))
    y1 = y0 + max(1, round(height * geometry.scale))
    inside = np.ascontiguousarray(prob[y0:y1, x0:x1])
    return Mask(cv2.resize(inside, (width, height), interpolation=cv2.INTER_LINEAR), inference_ms)


CPU_BACKEND = {"onnx": "onnxruntime", "tflite": "tflite"}  # a variant's runtime → the CPU backend that runs it


def cpu_backend(manifest: ModelManifest) -> str:
    """The CPU backend for ``manifest``'s default variant (U²-Net-p: ONNX Runtime; the selfie model: TFLite)."""
    return CPU_BACKEND.get(manifest.default.runtime, "onnxruntime")
