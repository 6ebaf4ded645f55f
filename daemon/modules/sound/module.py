"""The sound module (CodeProject.AI's Sound Classifier): YAMNet from the model store on ONNX Runtime,
its AudioSet scores mapped onto UrbanSound8K."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from edgewatch.backends.base import Backend, BackendError
from edgewatch.daemon.config import Settings
from edgewatch.daemon.modules.base import ModuleStatus
from edgewatch.daemon.modules.errors import NotFound, Unavailable
from edgewatch.daemon.modules.model_slot import ModelSlot, SingleModelModule, install_command
from edgewatch.daemon.modules.sound.features import MEL_BANDS, PATCH_FRAMES
from edgewatch.daemon.modules.sound.schemas import SoundResponse
from edgewatch.daemon.modules.sound.settings import SoundSettings
from edgewatch.daemon.modules.sound.urban import UrbanMap
from edgewatch.models.manifest import ModelManifest
from edgewatch.models.runtime.heads import HEADS
from litestar import Controller

log = logging.getLogger(__name__)

MODULE_ID = "SoundClassifierEdgewatch"
MODULE_NAME = "Sound Classifier (edgewatch)"
BACKEND = "onnxruntime"  # YAMNet ships as ONNX only; no accelerator conversion of it exists yet
INSTALL = "edgewatch models install yamnet --accept-licence LicenseRef-Qualcomm-AI-Hub-Proprietary"


@dataclass(frozen=True)
class SoundModel:
    """One installed sound classifier loaded on its backend."""

    manifest: ModelManifest
    backend: Backend
    urban: UrbanMap

    def scores(self, patches: np.ndarray) -> np.ndarray:
        """patches × labels scores (0-1) of N × 1 × 96 × 64 log-mel patches, one inference each."""
        decode = HEADS[self.manifest.postprocessing].decoder
        return np.concatenate([decode(self.backend.infer(p[None])) for p in patches])


class SoundModule(SingleModelModule):
    module_id = MODULE_ID
    module_name = MODULE_NAME
    settings_model = SoundSettings
    model_tasks = frozenset({"audio_classification"})
    settings: SoundSettings

    def __init__(self, config: Settings, store, saved: dict[str, Any]) -> None:
        super().__init__(config, store, saved)
        self.slot: ModelSlot[SoundModel] = ModelSlot(
            self, _sound_model, BACKEND, what="sound", kind="a sound classifier",
            suggest="an audio_classification model", errors=(ValueError, BackendError),
            install=lambda name: INSTALL if name == "yamnet" else install_command(name))

    @classmethod
    def controllers(cls) -> list[type[Controller]]:
        from edgewatch.daemon.modules.sound.controller import SoundController

        return [SoundController]

    def config_changed(self, old: Settings, new: Settings) -> bool:
        return new.backends != old.backends

    def check_settings(self, new: SoundSettings) -> None:
        if not self.store.has(new.model):
            raise NotFound(f"model {new.model!r} is not installed; install it with `edgewatch models install "
                           f"{new.model}` (see `edgewatch models list`)")

    def start_message(self) -> str:
        return f"loading sound model {self.settings.model}"

    def start(self) -> None:
        """Load the model if installed and run it once (ONNX Runtime plans on its first run)."""
        try:
            model = self.model()
        except Unavailable as exc:
            log.info("sound: %s", exc)
            return
        model.scores(np.zeros((1, 1, PATCH_FRAMES, MEL_BANDS), np.float32))

    def status(self) -> ModuleStatus:
        return self.slot.status(f"sounds with {self.settings.model} (UrbanSound8K + AudioSet)",
                                f"no sound model installed: run `{INSTALL}`")

    def error_envelope(self, command: str, status: int, message: str, received_at: float) -> SoundResponse:
        from edgewatch.daemon.modules.sound.usecase import answer

        return answer(self, command, received_at, success=False, code=status, error=message)

    def model(self) -> SoundModel:
        """The configured model, loaded on first use; Unavailable says what to install or fix."""
        return self.slot.get()


def _sound_model(manifest: ModelManifest, load: Callable[[], Backend]) -> SoundModel:
    urban = UrbanMap.for_labels(manifest.labels)  # before the load: a ValueError loads nothing
    return SoundModel(manifest, load(), urban)
