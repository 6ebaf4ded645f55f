"""One installed detector on one backend, and the run path upload bytes → decode → preprocess →
backend → postprocess → predictions in original-image pixels."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from edgewatch.backends.base import Backend
from edgewatch.daemon.imaging import decode_image
from edgewatch.daemon.modules.detection.settings import DetectionSettings
from edgewatch.daemon.modules.envelope import Prediction
from edgewatch.models.runtime.labels import display_label
from edgewatch.models.manifest import ModelManifest
from edgewatch.models.runtime import run
from edgewatch.models.runtime.preprocess import input_buffer


class NoModelInstalled(RuntimeError):
    def __str__(self) -> str:
        return "no detection model is installed: run `edgewatch models install --default` on the box"


@dataclass(frozen=True, slots=True)
class Outcome:
    predictions: list[Prediction]
    inference_ms: float
    process_ms: float
    execution_provider: str  # what really ran this request (a custom model may use another backend)
    can_use_gpu: bool
    backend: str = ""  # the backend's type_key (onnxruntime, rknn, ...), for the metrics


class Detector:
    """One installed detector loaded on one backend."""

    def __init__(self, manifest: ModelManifest, backend: Backend, notes: list[str] | None = None) -> None:
        self.manifest = manifest
        self.backend = backend
        self.notes = notes or []  # why the backends tried before this one were skipped
        self._label_ids = {name: i for i, name in enumerate(manifest.labels)}
        self._buffers = threading.local()  # each worker thread letterboxes into its own input tensor

    def _input_buffer(self) -> np.ndarray:
        """This worker thread's input tensor, made on its first detection and reused after."""
        tensor = getattr(self._buffers, "tensor", None)
        if tensor is None:
            tensor = self._buffers.tensor = input_buffer(self.backend.input_format()[0])
        return tensor

    def class_ids(self, labels: frozenset[str] | None) -> np.ndarray | None:
        if labels is None:
            return None
        return np.asarray(sorted(self._label_ids[n] for n in labels if n in self._label_ids), dtype=np.int64)

    def detect(self, data: bytes, min_conf: float, settings: DetectionSettings, max_pixels: int,
               allowed: np.ndarray | None = None) -> Outcome:
        """Upload bytes → predictions in original-image pixels."""
        start = time.perf_counter()
        spec, _ = self.backend.input_format()
        image, scale = decode_image(data, max_pixels, target=spec.size)
        return self.detect_frame(image, min_conf, settings, allowed, scale=scale, start=start)

    def detect_frame(self, image: np.ndarray, min_conf: float, settings: DetectionSettings,
                     allowed: np.ndarray | None = None, scale: float = 1.0, start: float | None = None) -> Outcome:
        """A decoded BGR frame (e.g. from a camera) → predictions; ``scale`` maps back to the original."""
        start = time.perf_counter() if start is None else start
        found = run.detect(self.backend, self.manifest, image, min_conf, settings.nms_iou, settings.max_predictions,
                           allowed, out=self._input_buffer())
        boxes = found.boxes / scale
        predictions = [
            Prediction(display_label(self.manifest.labels[c], settings.label_style), round(float(s), 4),
                       int(round(b[0])), int(round(b[1])), int(round(b[2])), int(round(b[3])))
            for b, s, c in zip(boxes.tolist(), found.scores.tolist(), found.classes.tolist())
        ]
        return Outcome(predictions, found.inference_ms, (time.perf_counter() - start) * 1000,
                       self.backend.execution_provider, self.backend.can_use_gpu,
                       getattr(self.backend, "type_key", ""))
