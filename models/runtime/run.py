"""The one run path of a detector: image → letterbox → backend → head → boxes in image pixels.

The daemon's detection and the backend conformance checks (tests and `edgewatch selftest`) both
run models through :func:`detect`, so what is checked is what serves.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edgewatch.models.runtime.heads import decode
from edgewatch.models.runtime.preprocess import letterbox

if TYPE_CHECKING:
    from edgewatch.backends.base import Backend
    from edgewatch.models.manifest import InputSpec, ModelManifest


@dataclass(frozen=True, slots=True)
class Detections:
    """Boxes (N×4 x1,y1,x2,y2 in the image's pixels), their scores and class ids, highest first."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    inference_ms: float  # the backend's run alone


def feed(spec: InputSpec, tensor: np.ndarray) -> np.ndarray | dict[str, np.ndarray]:
    """What ``backend.infer`` takes for ``tensor``: the tensor, or for a model with a size input
    (D-FINE's orig_target_sizes, ``spec.size_input``) both inputs by name, the size being the input's
    own [[w, h]] so boxes come back in input pixels."""
    if not spec.size_input:
        return tensor
    return {spec.name: tensor, spec.size_input: np.array([spec.size], np.int64)}  # type: ignore[dict-item]


def detect(backend: Backend, manifest: ModelManifest, image_bgr: np.ndarray, min_conf: float, iou: float = 0.45,
           max_det: int = 300, allowed: np.ndarray | None = None, out: np.ndarray | None = None) -> Detections:
    """Run ``image_bgr`` (H×W×3 uint8) through ``backend``; ``allowed`` keeps only those class ids,
    ``out`` is a reusable input tensor (see :func:`letterbox`)."""
    spec, pre = backend.input_format()
    tensor, geometry = letterbox(image_bgr, spec, pre, out=out)
    t0 = time.perf_counter()
    outputs = backend.infer(feed(spec, tensor))  # type: ignore[arg-type]
    inference_ms = (time.perf_counter() - t0) * 1000
    boxes, scores, classes = decode(manifest.postprocessing, outputs, spec.size, min_conf, iou, max_det, allowed)
    return Detections(geometry.to_original(boxes), scores, classes, inference_ms)
