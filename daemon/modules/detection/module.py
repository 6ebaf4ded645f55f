"""The object-detection module (CodeProject.AI's ObjectDetection API): the installed detectors on
the chosen backend, the default one chosen by configuration or by measurement (``auto``)."""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from typing import Any

import numpy as np
from litestar import Controller

from edgewatch.backends.base import Backend, BackendError
from edgewatch.backends.timing import measure_p50_ms
from edgewatch.daemon.config import Settings
from edgewatch.daemon.model_choice import (Candidate, Choice, LatencyCache, accuracy, choose, planned_candidate,
                                           rankable, sole_choice)
from edgewatch.daemon.modules.base import CapabilityModule, ModuleStatus
from edgewatch.daemon.modules.detection.detector import Detector, NoModelInstalled
from edgewatch.daemon.modules.detection.settings import DetectionSettings
from edgewatch.daemon.modules.envelope import VisionResponse, envelope
from edgewatch.daemon.modules.errors import BadRequest, NotFound
from edgewatch.daemon.redaction import printable
from edgewatch.models.runtime.labels import PRESETS
from edgewatch.models.manifest import ModelManifest, check_model_name
from edgewatch.models.store import ModelNotFound, ModelStore

log = logging.getLogger(__name__)

MODULE_ID = "ObjectDetectionEdgewatch"
MODULE_NAME = "Object Detection (edgewatch)"


class DetectionModule(CapabilityModule):
    """Holds the loaded detectors; ``apply`` swaps in new settings without a daemon restart."""

    module_id = MODULE_ID
    module_name = MODULE_NAME
    settings_model = DetectionSettings
    model_tasks = frozenset({"detection"})
    mqtt_commands = {"detection": "detect"}
    settings: DetectionSettings

    def __init__(self, config: Settings, store: ModelStore, saved: dict[str, Any]) -> None:
        super().__init__(config, store, saved)
        self._detectors: dict[str, Detector] = {}
        self._lock = threading.Lock()
        self._choice_lock = threading.Lock()
        self._choice: Choice | None = None
        self._choice_signature: tuple = ()
        self._measured: set[str] = set()  # loaded by auto_choice only to time them

    # -- the module contract --------------------------------------------------------------------
    @classmethod
    def controllers(cls) -> list[type[Controller]]:
        from edgewatch.daemon.modules.detection.controller import VisionController

        return [VisionController]

    def config_section(self, config: Settings) -> dict[str, Any]:
        return config.detection.model_dump() | {"backend": config.backend}

    def config_changed(self, old: Settings, new: Settings) -> bool:
        return (new.detection, new.backend, new.backends) != (old.detection, old.backend, old.backends)

    def check_settings(self, new: DetectionSettings) -> None:
        if new.model == "auto":
            return
        try:
            check_model_name(new.model)  # a path component in the store
        except ValueError as exc:
            raise BadRequest(f"model: {printable(exc, 300)}") from None
        if not self.store.has(new.model):
            raise NotFound(f"model {new.model!r} is not installed; see `edgewatch models list`")

    def status(self) -> ModuleStatus:
        backend, model = self.backend, self.model_summary()[0]
        how = " (auto)" if self.settings.model == "auto" else ""
        if backend and model:
            return ModuleStatus(MODULE_ID, MODULE_NAME, True,
                                f"backend {backend.type_key} ({backend.execution_provider}), model {model}{how}",
                                backend.type_key, backend.execution_provider, self.backend_notes)
        if self.custom_models():
            return ModuleStatus(MODULE_ID, MODULE_NAME, False, "no installed detector loads here (the log says "
                                "why): reinstall with `edgewatch models install NAME`")
        return ModuleStatus(MODULE_ID, MODULE_NAME, False,
                            "no detection model installed: run `edgewatch models install --default`")

    def start_message(self) -> str:
        try:
            model = self.default_model_name()
        except (NoModelInstalled, BackendError):  # none installed, or none loads here (the log says why)
            model = None
        return f"loading model {model or '(none installed)'}"

    def execution_provider(self) -> tuple[str, bool]:
        backend = self.backend
        return (backend.execution_provider, bool(backend.can_use_gpu)) if backend else ("CPU", False)

    def error_envelope(self, command: str, status: int, message: str, received_at: float) -> VisionResponse:
        return envelope(self, command, success=False, received_at=received_at, code=status, error=message)

    async def run_job(self, command, payload, params, queue, received_at) -> VisionResponse:
        from edgewatch.daemon.modules.detection.usecase import detect_job

        return await detect_job(self, queue, payload, params, received_at)

    # -- model resolution -------------------------------------------------------------------
    def default_model_name(self) -> str:
        """The configured detector, or what ``auto`` resolves to (see :mod:`.model_choice`)."""
        if self.settings.model != "auto":
            return self.settings.model
        return self.auto_choice().name

    def auto_choice(self) -> Choice:
        """Resolve ``detection.model: auto`` among the installed detectors, measuring the latency
        of any not yet in the cache; resolved again when the installed models change."""
        installed = self.installed_models()
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
        installed = [m.name for m in self.installed_models()]
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
            if manifest.task not in self.model_tasks:
                raise ModelNotFound(name)
            selection = self.load(manifest, self.settings.backend)
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

    def start(self) -> None:
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

    def apply(self, settings: DetectionSettings) -> None:
        """Apply new settings: drop loaded detectors (they reload on the new backend/model)."""
        with self._lock:
            old, self._detectors = self._detectors, {}
            self.settings = settings
        with self._choice_lock:
            self._choice = None
        for det in old.values():
            det.backend.close()
        self.start()

    def close(self) -> None:
        with self._lock:
            for det in self._detectors.values():
                det.backend.close()
            self._detectors = {}
