"""The cartooniser module (CodeProject.AI's Cartooniser): a style transfer model from the store
(multistyle26, 26 painterly styles) on ONNX Runtime on the CPU. It is not an anime GAN: none ships
in a registry package, and every answer says which painterly style stood in."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from litestar import Controller

from edgewatch.backends.base import Backend
from edgewatch.daemon.config import Settings
from edgewatch.daemon.modules.base import ModuleStatus
from edgewatch.daemon.modules.cartoon.schemas import CartoonResponse
from edgewatch.daemon.modules.cartoon.settings import CartoonSettings
from edgewatch.daemon.modules.cartoon.styles import Style, accepted, resolve
from edgewatch.daemon.modules.errors import BadRequest, NotFound, Unavailable
from edgewatch.daemon.modules.model_slot import ModelSlot, SingleModelModule
from edgewatch.models.manifest import ModelManifest
from edgewatch.models.runtime.stylise import Stylised, stylise

log = logging.getLogger(__name__)

MODULE_ID = "CartooniserEdgewatch"
MODULE_NAME = "Cartooniser (edgewatch)"
TASK = "style_transfer"
BACKEND = "onnxruntime"  # the model ships as ONNX with a second (style) input; no other backend runs it


@dataclass(frozen=True)
class StyleModel:
    """One installed style transfer model loaded on its backend."""

    manifest: ModelManifest
    backend: Backend

    @property
    def styles(self) -> tuple[str, ...]:
        return self.manifest.labels

    def stylise(self, image_bgr: np.ndarray, style: Style, max_side: int) -> Stylised:
        return stylise(self.backend, self.manifest, image_bgr, style.index, max_side)


class CartoonModule(SingleModelModule):
    module_id = MODULE_ID
    module_name = MODULE_NAME
    settings_model = CartoonSettings
    model_tasks = frozenset({TASK})
    settings: CartoonSettings

    def __init__(self, config: Settings, store, saved: dict[str, Any]) -> None:
        super().__init__(config, store, saved)
        self.slot: ModelSlot[StyleModel] = ModelSlot(
            self, lambda manifest, load: StyleModel(manifest, load()), BACKEND, what="cartooniser (style transfer)",
            kind="a style transfer model", suggest="multistyle26")

    @classmethod
    def controllers(cls) -> list[type[Controller]]:
        from edgewatch.daemon.modules.cartoon.controller import CartoonController

        return [CartoonController]

    def config_changed(self, old: Settings, new: Settings) -> bool:
        return new.backends != old.backends

    def check_settings(self, new: CartoonSettings) -> None:
        if not self.store.has(new.model):
            raise NotFound(f"model {new.model!r} is not installed; install it with `edgewatch models install "
                           f"{new.model}` (`edgewatch models list` shows the catalogue)")
        manifest = self.store.get(new.model)
        if manifest.task != TASK:
            raise NotFound(f"{new.model} is not a {TASK} model: choose multistyle26")
        try:
            resolve(new.default_style, manifest.labels)
        except KeyError:
            raise BadRequest(f"default_style {new.default_style!r} is not a style of {new.model}: use one of "
                             f"{', '.join(accepted(manifest.labels))}") from None

    def start_message(self) -> str:
        return f"loading style transfer model {self.settings.model}"

    def start(self) -> None:
        """Load the model if installed and run it once on a small image."""
        try:
            model = self.model()
        except Unavailable as exc:
            log.info("cartoon: %s", exc)
            return
        model.stylise(np.full((64, 64, 3), 128, np.uint8), Style(0, model.styles[0], model.styles[0]), 64)

    def status(self) -> ModuleStatus:
        name = self.settings.model
        return self.slot.status(f"cartooniser: painterly style transfer with {name} (not an anime GAN)",
                                f"style transfer model not installed: run `edgewatch models install {name}`")

    def error_envelope(self, command: str, status: int, message: str, received_at: float) -> CartoonResponse:
        from edgewatch.daemon.modules.cartoon.usecase import answer

        return answer(self, command, received_at, success=False, code=status, error=message)

    def model(self) -> StyleModel:
        """The configured model, loaded on first use; Unavailable says what to install or fix."""
        return self.slot.get()
