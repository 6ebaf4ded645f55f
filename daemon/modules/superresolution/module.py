"""The super-resolution module (CodeProject.AI's Super Resolution): a Real-ESRGAN model from the store
on the ncnn backend, and the tile size its measured speed calls for."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from litestar import Controller

from edgewatch.backends.base import Backend
from edgewatch.daemon.config import Settings
from edgewatch.daemon.modules.base import ModuleStatus
from edgewatch.daemon.modules.errors import NotFound, Unavailable
from edgewatch.daemon.modules.model_slot import ModelSlot, SingleModelModule
from edgewatch.daemon.modules.superresolution.schemas import SuperResolutionResponse
from edgewatch.daemon.modules.superresolution.settings import SuperResolutionSettings
from edgewatch.daemon.modules.superresolution.tiling import MIN_TILE
from edgewatch.models.manifest import ModelManifest
from edgewatch.models.runtime.heads import HEADS

log = logging.getLogger(__name__)

MODULE_ID = "SuperResolutionEdgewatch"
MODULE_NAME = "Super Resolution (edgewatch)"
TASK = "super_resolution"
BACKEND = "ncnn"        # Real-ESRGAN ships as ncnn files only
TILE_TARGET_MS = 1000   # auto tiles: about this much work each (measured at install, on an idle box)
MAX_AUTO_TILE = 256


@dataclass(frozen=True)
class SrModel:
    """One installed super-resolution model loaded on its backend."""

    manifest: ModelManifest
    backend: Backend

    @property
    def ms_per_pixel(self) -> float | None:
        """Inference time per input pixel, as measured at install (None if it was not)."""
        p50 = self.manifest.default.inference_ms_p50
        _, height, width, _ = self.manifest.input.shape
        return p50 / (height * width) if p50 else None

    @property
    def scale(self) -> int:
        """How many times wider and taller the model makes an image (measured at install)."""
        return int(self.manifest.quantization_report.get("scale", 4))

    def auto_tile(self) -> int:
        """The tile side (input pixels, a multiple of 8) of about TILE_TARGET_MS of work."""
        per_pixel = self.ms_per_pixel
        if per_pixel is None:
            return self.manifest.input.shape[1]
        side = int(math.sqrt(TILE_TARGET_MS / per_pixel)) // 8 * 8
        return max(MIN_TILE, min(MAX_AUTO_TILE, side))

    def upscale(self, rgb: np.ndarray) -> np.ndarray:
        """One H×W×3 uint8 image (the model's colour order) → its H'×W'×3 float output, 0-255."""
        return HEADS[self.manifest.postprocessing].decoder(self.backend.infer(rgb[None]))[0]


class SuperResolutionModule(SingleModelModule):
    module_id = MODULE_ID
    module_name = MODULE_NAME
    settings_model = SuperResolutionSettings
    model_tasks = frozenset({TASK})
    settings: SuperResolutionSettings

    def __init__(self, config: Settings, store, saved: dict[str, Any]) -> None:
        super().__init__(config, store, saved)
        self.slot: ModelSlot[SrModel] = ModelSlot(
            self, lambda manifest, load: SrModel(manifest, load()), BACKEND, what="super-resolution",
            suggest=f"a {TASK} model (realesr-animevideov3)")

    @classmethod
    def controllers(cls) -> list[type[Controller]]:
        from edgewatch.daemon.modules.superresolution.controller import SuperResolutionController

        return [SuperResolutionController]

    def config_changed(self, old: Settings, new: Settings) -> bool:
        return new.backends != old.backends

    def check_settings(self, new: SuperResolutionSettings) -> None:
        if not self.store.has(new.model):
            raise NotFound(f"model {new.model!r} is not installed; install it with `edgewatch models install "
                           f"{new.model}` (`edgewatch models list` shows the catalogue)")
        if self.store.get(new.model).task != TASK:
            raise NotFound(f"{new.model} is not a {TASK} model: pick realesr-animevideov3 or realesrgan-x4plus")

    def start_message(self) -> str:
        return f"loading super-resolution model {self.settings.model}"

    def start(self) -> None:
        """Load the model if installed and run it once (ncnn allocates on its first run)."""
        try:
            model = self.model()
        except Unavailable as exc:
            log.info("superresolution: %s", exc)
            return
        model.upscale(np.full((16, 16, 3), 128, np.uint8))

    def status(self) -> ModuleStatus:
        name = self.settings.model
        return self.slot.status(f"super-resolution with {name}",
                                f"super-resolution model not installed: run `edgewatch models install {name}`")

    def error_envelope(self, command: str, status: int, message: str, received_at: float) -> SuperResolutionResponse:
        from edgewatch.daemon.modules.superresolution.usecase import answer

        return answer(self, command, received_at, success=False, code=status, error=message)

    def model(self) -> SrModel:
        """The configured model, loaded on first use; Unavailable says what to install or fix."""
        return self.slot.get()
