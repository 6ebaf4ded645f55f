"""The scene module (CodeProject.AI's Scene Classifier): an ImageNet classifier from the store on ONNX
Runtime (torchvision's MobileNetV2 by default), its classes mapped onto Places365 scene names."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from litestar import Controller

from edgewatch.backends.base import Backend, BackendError
from edgewatch.daemon.config import Settings
from edgewatch.daemon.modules.base import ModuleStatus
from edgewatch.daemon.modules.errors import NotFound, Unavailable
from edgewatch.daemon.modules.model_slot import ModelSlot, SingleModelModule
from edgewatch.daemon.modules.scene.places import SceneMap
from edgewatch.daemon.modules.scene.schemas import SceneResponse
from edgewatch.daemon.modules.scene.settings import SceneSettings
from edgewatch.models.manifest import ModelManifest
from edgewatch.models.runtime.classification import TASK, Classification, classify

log = logging.getLogger(__name__)

MODULE_ID = "SceneClassifierEdgewatch"
MODULE_NAME = "Scene Classifier (edgewatch)"
BACKEND = "onnxruntime"


def _build(manifest: ModelManifest, load) -> tuple[ModelManifest, SceneMap, Backend]:
    scenes = SceneMap.for_labels(manifest.labels)  # checked before anything is loaded
    return manifest, scenes, load()


class SceneModule(SingleModelModule):
    module_id = MODULE_ID
    module_name = MODULE_NAME
    settings_model = SceneSettings
    model_tasks = frozenset({TASK})
    mqtt_commands = {"scene": "scene"}  # edgewatch/jobs/scene: the image as payload
    settings: SceneSettings

    def __init__(self, config: Settings, store, saved: dict[str, Any]) -> None:
        super().__init__(config, store, saved)
        self.slot: ModelSlot[tuple[ModelManifest, SceneMap, Backend]] = ModelSlot(
            self, _build, BACKEND, what="scene", kind="an image classification model", suggest="mobilenet-v2",
            errors=(BackendError, ValueError))

    @classmethod
    def controllers(cls) -> list[type[Controller]]:
        from edgewatch.daemon.modules.scene.controller import SceneController

        return [SceneController]

    def config_changed(self, old: Settings, new: Settings) -> bool:
        return new.backends != old.backends

    def check_settings(self, new: SceneSettings) -> None:
        if not self.store.has(new.model):
            raise NotFound(f"model {new.model!r} is not installed; install it with `edgewatch models install "
                           f"{new.model}` (see `edgewatch models list`)")
        if self.store.get(new.model).task != TASK:
            raise NotFound(f"{new.model} is not an {TASK} model: choose mobilenet-v2")

    def start_message(self) -> str:
        return f"loading scene model {self.settings.model}"

    def start(self) -> None:
        """Load the model if installed and run it once."""
        try:
            self.classify(np.zeros((64, 64, 3), np.uint8))
        except Unavailable as exc:
            log.info("scene: %s", exc)

    def status(self) -> ModuleStatus:
        return self.slot.status(f"scene classifier with {self.settings.model} (ImageNet classes mapped to scenes)",
                                f"no scene model: run `edgewatch models install {self.settings.model}`")

    async def run_job(self, command, payload, params, queue, received_at) -> SceneResponse:
        from edgewatch.daemon.modules.scene.usecase import classify_scene

        return await classify_scene(self, queue, payload, received_at)

    def error_envelope(self, command: str, status: int, message: str, received_at: float) -> SceneResponse:
        from edgewatch.daemon.modules.scene.usecase import answer

        return answer(self, command, received_at, success=False, code=status, error=message)

    def classify(self, image_bgr: np.ndarray) -> tuple[Classification, ModelManifest, SceneMap]:
        """The configured model's class probabilities for ``image_bgr``, loading it on first use."""
        manifest, scenes, backend = self.slot.get()
        return classify(backend, manifest, image_bgr), manifest, scenes
