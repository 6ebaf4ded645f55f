"""The background module (CodeProject.AI's Background Remover): a segmentation model from the store
on its CPU backend (U²-Net-p on ONNX Runtime by default), and pymatting for ``use_alphamatting``."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from litestar import Controller

from edgewatch.backends.base import Backend
from edgewatch.daemon.config import Settings
from edgewatch.daemon.modules.background.matting import Matting
from edgewatch.daemon.modules.background.schemas import BackgroundResponse
from edgewatch.daemon.modules.background.settings import BackgroundSettings
from edgewatch.daemon.modules.base import ModuleStatus
from edgewatch.daemon.modules.errors import NotFound, Unavailable
from edgewatch.daemon.modules.model_slot import ModelSlot, SingleModelModule
from edgewatch.models.manifest import ModelManifest
from edgewatch.models.runtime.segmentation import Mask, cpu_backend, segment

log = logging.getLogger(__name__)

MODULE_ID = "BackgroundRemoverEdgewatch"
MODULE_NAME = "Background Remover (edgewatch)"
TASK = "segmentation"


class BackgroundModule(SingleModelModule):
    module_id = MODULE_ID
    module_name = MODULE_NAME
    settings_model = BackgroundSettings
    model_tasks = frozenset({TASK})
    settings: BackgroundSettings

    def __init__(self, config: Settings, store, saved: dict[str, Any]) -> None:
        super().__init__(config, store, saved)
        self.slot: ModelSlot[tuple[ModelManifest, Backend]] = ModelSlot(
            self, lambda manifest, load: (manifest, load()), cpu_backend, what="background removal",
            kind="a segmentation model", suggest="u2netp")
        self.matting = Matting(config.cache_dir / "numba")

    @classmethod
    def controllers(cls) -> list[type[Controller]]:
        from edgewatch.daemon.modules.background.controller import BackgroundController

        return [BackgroundController]

    def config_changed(self, old: Settings, new: Settings) -> bool:
        return new.backends != old.backends

    def check_settings(self, new: BackgroundSettings) -> None:
        if not self.store.has(new.model):
            raise NotFound(f"model {new.model!r} is not installed; install it with `edgewatch models install "
                           f"{new.model}` (see `edgewatch models list`)")
        if self.store.get(new.model).task != TASK:
            raise NotFound(f"{new.model} is not a {TASK} model: choose u2netp or selfie-segmentation")

    def start_message(self) -> str:
        return f"loading background removal model {self.settings.model}"

    def start(self) -> None:
        """Load the model if installed, run it once, and compile pymatting on a thread."""
        try:
            self.mask(np.zeros((64, 64, 3), np.uint8))
        except Unavailable as exc:
            log.info("background: %s", exc)
            return
        self.matting.prepare()

    def status(self) -> ModuleStatus:
        return self.slot.status(f"background removal with {self.settings.model}",
                                f"no background removal model: run `edgewatch models install {self.settings.model}`")

    def error_envelope(self, command: str, status: int, message: str, received_at: float) -> BackgroundResponse:
        from edgewatch.daemon.modules.background.usecase import answer

        return answer(self, command, received_at, success=False, code=status, error=message)

    def mask(self, image_bgr: np.ndarray) -> Mask:
        """The configured model's mask of ``image_bgr``, loading the model on first use."""
        manifest, backend = self.slot.get()
        return segment(backend, manifest, image_bgr)
