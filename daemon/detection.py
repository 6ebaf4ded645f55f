"""The object-detection module: installed detectors on the chosen backend, and the run path
upload bytes → decode → preprocess → backend → postprocess → predictions."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace

import numpy as np
from pydantic import ValidationError

from edgewatch.backends.base import Backend, BackendError
from edgewatch.backends.registry import BackendChoice, load_backend
from edgewatch.daemon.config import DetectionConfig, Settings
from edgewatch.daemon.imaging import decode_image
from edgewatch.backends.timing import measure_p50_ms
from edgewatch.daemon.model_choice import (Candidate, Choice, LatencyCache, accuracy, choose, planned_candidate,
                                           rankable, sole_choice)
from edgewatch.models.labels import PRESETS, display_label
from edgewatch.models.manifest import ModelManifest
from edgewatch.models.postprocess import decode
from edgewatch.models.preprocess import letterbox
from edgewatch.models.store import ModelNotFound, ModelStore

log = logging.getLogger(__name__)

MODULE_ID = "ObjectDetectionEdgewatch"
MODULE_NAME = "Object Detection (edgewatch)"


class NoModelInstalled(RuntimeError):
    def __str__(self) -> str:
        return "no detection model is installed: run `edgewatch models install --default` on the box"


class DetectionSettings(DetectionConfig):
    """What /v1/settings/ObjectDetectionEdgewatch can change; applied by reloading the module."""

    backend: BackendChoice = "auto"

    @classmethod
    def from_config(cls, settings: Settings, overrides: dict[str, object]) -> "DetectionSettings":
        base = settings.detection.model_dump() | {"backend": settings.backend}
        try:
            return cls.model_validate(base | overrides)
        except ValidationError as exc:
            log.error("ignoring saved detection settings %s: %s", overrides, exc)
            return cls.model_validate(base)


@dataclass(frozen=True, slots=True)
class Prediction:
    label: str
    confidence: float
    x_min: int
    y_min: int
    x_max: int
    y_max: int


@dataclass(frozen=True, slots=True)
class Outcome:
    predictions: list[Prediction]
    inference_ms: float
    process_ms: float
    execution_provider: str  # what really ran this request (a custom model may use another backend)
    can_use_gpu: bool


class Detector:
    """One installed detector loaded on one backend."""

    def __init__(self, manifest: ModelManifest, backend: Backend, notes: list[str] | None = None) -> None:
        self.manifest = manifest
        self.backend = backend
        self.notes = notes or []  # why the backends tried before this one were skipped
        self._label_ids = {name: i for i, name in enumerate(manifest.labels)}
        self._buffers = threading.local()  # each worker thread letterboxes into its own input tensor

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
        spec, pre = self.backend.input_format()
        tensor, geometry = letterbox(image, spec, pre, out=getattr(self._buffers, "tensor", None))
        self._buffers.tensor = tensor
        t0 = time.perf_counter()
        outputs = self.backend.infer(tensor)
        inference_ms = (time.perf_counter() - t0) * 1000
        boxes, scores, classes = decode(self.manifest.postprocessing, outputs, spec.size, min_conf,
                                        settings.nms_iou, settings.max_predictions, allowed)
        boxes = geometry.to_original(boxes) / scale
        predictions = [
            Prediction(display_label(self.manifest.labels[c], settings.label_style), round(float(s), 4),
                       int(round(b[0])), int(round(b[1])), int(round(b[2])), int(round(b[3])))
            for b, s, c in zip(boxes.tolist(), scores.tolist(), classes.tolist())
        ]
        return Outcome(predictions, inference_ms, (time.perf_counter() - start) * 1000,
                       self.backend.execution_provider, self.backend.can_use_gpu)


class DetectionModule:
    """Holds the loaded detectors; ``reload`` swaps in new settings without a daemon restart."""

    def __init__(self, config: Settings, store: ModelStore, saved: dict[str, object]) -> None:
        self.config = config
        self.store = store
        self.settings = DetectionSettings.from_config(config, saved)
        self._detectors: dict[str, Detector] = {}
        self._lock = threading.Lock()
        self.loading: str | None = None  # the model being loaded (a TensorRT engine build can take minutes)
        self._choice_lock = threading.Lock()
        self._choice: Choice | None = None
        self._choice_signature: tuple = ()
        self._measured: set[str] = set()  # loaded by auto_choice only to time them

    # -- model resolution -------------------------------------------------------------------
    def default_model_name(self) -> str:
        """The configured detector, or what ``auto`` resolves to (see :mod:`.model_choice`)."""
        if self.settings.model != "auto":
            return self.settings.model
        return self.auto_choice().name

    def auto_choice(self) -> Choice:
        """Resolve ``detection.model: auto`` among the installed detectors, measuring the latency
        of any not yet in the cache; resolved again when the installed models change."""
        installed = [m for m in self.store.list() if m.task == "detection"]
        if not installed:
            raise NoModelInstalled()
        signature = tuple((m.name, tuple(sorted((k, v.sha256) for k, v in m.variants.items()))) for m in installed)
        with self._choice_lock:
            if self._choice is not None and self._choice_signature == signature:
                return self._choice
            budget = self.settings.latency_budget_ms
            pool = rankable(installed)
            if len(pool) == 1:
                choice = sole_choice(pool[0], budget)
            else:
                candidates = [self._candidate(m) for m in pool]
                try:
                    choice = choose(candidates, budget)
                except ValueError as exc:  # none of them loads here
                    raise BackendError(f"{exc}; reinstall them with `edgewatch models install NAME`") from None
            self._choice, self._choice_signature = choice, signature
            self._close_unused(keep=choice.name)
            log.info("detection model auto: %s, %s", choice.name, choice.reason)
            return choice

    def model_summary(self) -> tuple[str | None, str]:
        """(default detector, why) as known now, without loading or measuring anything."""
        if self.settings.model != "auto":
            return self.settings.model, "set by detection.model"
        choice = self._choice
        if choice is None:
            return None, "auto: not resolved yet (it is when the daemon has started)"
        return choice.name, f"auto: {choice.reason}"

    def _candidate(self, manifest: ModelManifest) -> Candidate:
        """How ``manifest`` would run here: its variant and backend, accuracy, and p50 (cached, or
        measured now by loading it; a measured model is kept loaded, to be used or closed)."""
        configs = self.config.backends.by_key(self.config.cache_dir, self.config.inference.workers)
        cache = LatencyCache(self.config.cache_dir / "latency.json")
        planned, known = planned_candidate(manifest, self.settings.backend, configs, cache)
        if known:
            return planned
        with self._lock:
            if manifest.name not in self._detectors:
                self._measured.add(manifest.name)
        try:
            detector = self.detector(manifest.name)
        except BackendError as exc:
            return replace(planned, backend="-", p50_ms=None, error=f"cannot be loaded here: {exc}")
        backend, variant = detector.backend, detector.backend.variant_key or manifest.default_variant
        p50 = measure_p50_ms(backend)
        cache.put(LatencyCache.key(manifest, variant, backend), p50)
        log.info("measured %s (%s) on %s: p50 %.1f ms", manifest.name, variant, backend.type_key, p50)
        return Candidate(manifest.name, variant, backend.type_key, *accuracy(manifest, variant), p50)

    def custom_models(self) -> list[str]:
        """Names accepted by /v1/vision/custom/{model}: installed detectors plus the ipcam presets."""
        installed = [m.name for m in self.store.list() if m.task == "detection"]
        return sorted(installed) + (sorted(PRESETS) if installed else [])

    def resolve(self, name: str | None) -> tuple[Detector, np.ndarray | None]:
        """The detector and allowed class ids for a model or preset name (None = default model)."""
        if name in PRESETS:
            detector = self.detector(self.default_model_name())
            return detector, detector.class_ids(PRESETS[name])
        return self.detector(name or self.default_model_name()), None

    def detector(self, name: str) -> Detector:
        with self._lock:
            if name in self._detectors:
                return self._detectors[name]
            manifest = self.store.get(name)
            if manifest.task != "detection":
                raise ModelNotFound(name)
            self.loading = name
            try:
                selection = load_backend(self.settings.backend, self.store, manifest,
                                         self.config.backends.by_key(self.config.cache_dir,
                                                                     self.config.inference.workers))
            finally:
                self.loading = None
            log.info("loaded %s (%s variant) on %s", name, selection.backend.variant_key, selection.backend.type_key,
                     extra={"model": name})
            self._detectors[name] = Detector(manifest, selection.backend, selection.notes)
            return self._detectors[name]

    def _default_detector(self) -> Detector | None:
        """The default detector if loaded (another loaded one, before ``auto`` is resolved)."""
        default = self.model_summary()[0]
        with self._lock:
            detector = self._detectors.get(default) if default else None
            if detector is None and self._detectors:
                detector = next(iter(self._detectors.values()))
            return detector

    @property
    def backend(self) -> Backend | None:
        """The backend the default detector runs on."""
        detector = self._default_detector()
        return detector.backend if detector else None

    @property
    def backend_notes(self) -> list[str]:
        """Why the default detector does not run on an earlier backend in the probe order."""
        detector = self._default_detector()
        return detector.notes if detector else []

    def warm_up(self) -> None:
        """Load the default detector and run it once, so the first request pays for neither
        (a runtime's first run allocates and plans: 3× a normal inference on ONNX Runtime)."""
        try:
            detector = self.detector(self.default_model_name())
        except NoModelInstalled as exc:
            log.warning("%s", exc)
            return
        except BackendError as exc:  # the daemon still serves: requests get a 503 saying this
            log.error("no detector can run: %s", exc)
            return
        detector.detect_frame(np.zeros((64, 64, 3), np.uint8), 1.0, self.settings)

    def _close_unused(self, keep: str) -> None:
        """Close the detectors loaded only to measure them for ``auto``."""
        with self._lock:
            unused = [self._detectors.pop(n) for n in self._measured if n != keep and n in self._detectors]
            self._measured.clear()
        for det in unused:
            det.backend.close()

    def reload(self, settings: DetectionSettings) -> None:
        """Apply new settings: drop loaded detectors (they reload on the new backend/model)."""
        with self._lock:
            old, self._detectors = self._detectors, {}
            self.settings = settings
        with self._choice_lock:
            self._choice = None
        for det in old.values():
            det.backend.close()
        self.warm_up()

    def close(self) -> None:
        with self._lock:
            for det in self._detectors.values():
                det.backend.close()
            self._detectors = {}
