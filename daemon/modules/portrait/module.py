"""The portrait module (CodeProject.AI's Portrait Filter): a person segmentation model from the store
on its CPU backend (MediaPipe's selfie model on TFLite by default) and an OpenCV background blur."""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np
from litestar import Controller

from edgewatch.backends.base import BackendError
from edgewatch.daemon.config import Settings
from edgewatch.daemon.modules.base import CapabilityModule, ModuleStatus
from edgewatch.daemon.modules.errors import NotFound, Unavailable
from edgewatch.daemon.modules.portrait.schemas import PortraitResponse
from edgewatch.daemon.modules.portrait.settings import PortraitSettings
from edgewatch.models.manifest import ModelManifest
from edgewatch.models.runtime.segmentation import Mask, cpu_backend, segment
from edgewatch.models.store import ModelNotFound

log = logging.getLogger(__name__)

MODULE_ID = "PortraitFilterEdgewatch"
MODULE_NAME = "Portrait Filter (edgewatch)"
TASK = "segmentation"


class PortraitModule(CapabilityModule):
    module_id = MODULE_ID
    module_name = MODULE_NAME
    settings_model = PortraitSettings
    model_tasks = frozenset({TASK})
    settings: PortraitSettings

    def __init__(self, config: Settings, store, saved: dict[str, Any]) -> None:
        super().__init__(config, store, saved)
        self._lock = threading.Lock()
        self._loaded: tuple[ModelManifest, Any] | None = None  # (manifest, backend)

    @classmethod
    def controllers(cls) -> list[type[Controller]]:
        from edgewatch.daemon.modules.portrait.controller import PortraitController

        return [PortraitController]

    def config_changed(self, old: Settings, new: Settings) -> bool:
        return new.backends != old.backends

    def check_settings(self, new: PortraitSettings) -> None:
        if not self.store.has(new.model):
            raise NotFound(f"model {new.model!r} is not installed; install it with `edgewatch models install "
                           f"{new.model}` (see `edgewatch models list`)")
        if self.store.get(new.model).task != TASK:
            raise NotFound(f"{new.model} is not a {TASK} model: choose selfie-segmentation or u2netp")

    def start_message(self) -> str:
        return f"loading portrait model {self.settings.model}"

    def start(self) -> None:
        """Load the model if installed and run it once."""
        try:
            self.mask(np.zeros((64, 64, 3), np.uint8))
        except Unavailable as exc:
            log.info("portrait: %s", exc)

    def apply(self, settings: PortraitSettings) -> None:
        with self._lock:
            old, self._loaded = self._loaded, None
            self.settings = settings
        if old is not None:
            old[1].close()
        self.start()

    def close(self) -> None:
        with self._lock:
            old, self._loaded = self._loaded, None
        if old is not None:
            old[1].close()

    def status(self) -> ModuleStatus:
        if not self.store.has(self.settings.model):
            return ModuleStatus(MODULE_ID, MODULE_NAME, False,
                                f"no portrait model: run `edgewatch models install {self.settings.model}`")
        with self._lock:
            backend = self._loaded[1] if self._loaded else None
        return ModuleStatus(MODULE_ID, MODULE_NAME, True, f"portrait filter with {self.settings.model}",
                            backend.type_key if backend else None, backend.execution_provider if backend else None)

    def execution_provider(self) -> tuple[str, bool]:
        with self._lock:
            backend = self._loaded[1] if self._loaded else None
        return (backend.execution_provider, bool(backend.can_use_gpu)) if backend else ("CPU", False)

    def error_envelope(self, command: str, status: int, message: str, received_at: float) -> PortraitResponse:
        from edgewatch.daemon.modules.portrait.usecase import answer

        return answer(self, command, received_at, success=False, code=status, error=message)

    def mask(self, image_bgr: np.ndarray) -> Mask:
        """The configured model's person mask of ``image_bgr``, loading the model on first use."""
        with self._lock:
            if self._loaded is None:
                self._loaded = self._load(self.settings.model)
            manifest, backend = self._loaded
        return segment(backend, manifest, image_bgr)

    def _load(self, name: str) -> tuple[ModelManifest, Any]:
        try:
            manifest = self.store.get(name)
        except ModelNotFound:
            raise Unavailable(f"no portrait model {name!r} installed: run `edgewatch models install {name}` "
                              "on the box") from None
        if manifest.task != TASK:
            raise Unavailable(f"{name} is a {manifest.task} model, not a segmentation model: set model in "
                              f"/v1/settings/{MODULE_ID} to selfie-segmentation")
        try:
            return manifest, self.load(manifest, cpu_backend(manifest)).backend
        except BackendError as exc:
            raise Unavailable(f"{name} cannot run here: {exc}; on a box without TFLite, set model in "
                              f"/v1/settings/{MODULE_ID} to u2netp") from None
