"""The one run path of an image classifier: image → shorter side resized, centre crop (torchvision's
ImageNet evaluation transform) → backend → softmax head → a probability per class."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from edgewatch.models.runtime.heads import HEADS

if TYPE_CHECKING:
    from edgewatch.backends.base import Backend
    from edgewatch.models.manifest import InputSpec, ModelManifest, Preprocessing

TASK = "image_classification"
RESIZE_RATIO = 256 / 224  # torchvision: Resize(256) then CenterCrop(224)


@dataclass(frozen=True, slots=True)
class Classification:
    """Probabilities 0–1 over the model's labels (summing to 1), and the backend's run time alone."""

    probs: np.ndarray
    inference_ms: float


def prepare(image_bgr: np.ndarray, spec: InputSpec, pre: Preprocessing) -> np.ndarray:
    """``image_bgr`` (H×W×3 uint8) as the classifier's 1×… float32 input: the shorter side scaled to
    the input size × 256/224, the centre cut out at the input size, in ``pre.color``, (pixel - mean) / std,
    in the spec's layout."""
    in_w, in_h = spec.size
    h, w = image_bgr.shape[:2]
    short = round(min(in_w, in_h) * RESIZE_RATIO)
    scale = short / min(h, w)
    new_w, new_h = max(in_w, round(w * scale)), max(in_h, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
    resized = cv2.resize(image_bgr, (new_w, new_h), interpolation=interp)
    x0, y0 = (new_w - in_w) // 2, (new_h - in_h) // 2
    crop = resized[y0:y0 + in_h, x0:x0 + in_w]
    if pre.color == "rgb":
        crop = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
    tensor = (crop.astype(np.float32) - np.float32(pre.mean)) / np.float32(pre.std)
    if spec.layout == "nchw":
        tensor = tensor.transpose(2, 0, 1)
    return np.ascontiguousarray(tensor[None], dtype=np.float32)


def classify_tensor(run: Callable[[np.ndarray], list[np.ndarray]], tensor: np.ndarray,
                    postprocessing: str) -> np.ndarray:
    """The class probabilities (C,) of one prepared ``tensor`` run by ``run`` and read by the head."""
    head = HEADS[postprocessing]
    if head.task != TASK:
        raise ValueError(f"{postprocessing} is a {head.task} head, not an image classification head")
    return head.decoder(run(tensor))[0]


def classify(backend: Backend, manifest: ModelManifest, image_bgr: np.ndarray) -> Classification:
    """``manifest``'s class probabilities for ``image_bgr`` on ``backend``."""
    spec, pre = backend.input_format()
    tensor = prepare(image_bgr, spec, pre)
    began = time.perf_counter()
    outputs = backend.infer(tensor)
    inference_ms = (time.perf_counter() - began) * 1000
    return Classification(classify_tensor(lambda _: outputs, tensor, manifest.postprocessing), inference_ms)


def top_k(probs: np.ndarray, labels: tuple[str, ...], k: int = 5) -> list[tuple[str, float]]:
    """The ``k`` most probable (label, probability), highest first."""
    idx = np.argsort(-probs, kind="stable")[:k]
    return [(labels[i], float(probs[i])) for i in idx]
