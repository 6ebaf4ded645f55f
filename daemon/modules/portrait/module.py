"""The portrait module (CodeProject.AI's Portrait Filter): a person segmentation model from the store
on its CPU backend (MediaPipe's selfie model on TFLite by default) and an OpenCV background blur."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from litestar import Controller

from edgewatch.backends.base import Backend
from edgewatch.daemon.config import Settings
from edgewatch.daemon.modules.base import ModuleStatus
from edgewatch.daemon.modules.errors import NotFound, Unavailable
from edgewatch.daemon.modules.model_slot import ModelSlot, SingleModelModule
from edgewatch.daemon.modules.portrait.schemas import PortraitResponse
from edgewatch.daemon.modules.portrait.settings import PortraitSettings
from edgewatch.models.manifest import ModelManifest
from edgewatch.models.runtime.segmentation import Mask, cpu_backend, segment

log = logging.getLogger(__name__)

MODULE_ID = "PortraitFilterEdgewatch"
MODULE_NAME = "Portrait Filter (edgewatch)"
TASK = "segmentation"


class PortraitModule(SingleModelModule):
    module_id = MODULE_ID
    module_name = MODULE_NAME
    settings_model = PortraitSettings
    model_tasks = frozenset({TASK})
    settings: PortraitSettings

    def __init__(self, config: Settings, store, saved: dict[str, Any]) -> None:
        super().__init__(config, store, saved)
        self.slot: ModelSlot[tuple[ModelManifest, Backend]] = ModelSlot(
            self, lambda manifest, load: (manifest, load()), cpu_backend, what="portrait",
            kind="a segmentation model", suggest="selfie-segmentation",
            cannot_run="{name} cannot run here: {exc}; on a box without TFLite, set model in "
                       f"/v1/settings/{MODULE_ID} to u2netp")

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

    def status(self) -> ModuleStatus:
        return self.slot.status(f"portrait filter with {self.settings.model}",
                                f"no portrait model: run `edgewatch models install {self.settings.model}`")

    def error_envelope(self, command: str, status: int, message: str, received_at: float) -> PortraitResponse:
        from edgewatch.daemon.modules.portrait.usecase import answer

        return answer(self, command, received_at, success=False, code=status, error=message)

    def mask(self, image_bgr: np.ndarray) -> Mask:
        """The configured model's person mask of ``image_bgr``, loading the model on first use."""
        manifest, backend = self.slot.get()
        return segment(backend, manifest, image_bgr)
