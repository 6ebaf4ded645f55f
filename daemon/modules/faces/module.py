"""The faces module (CodeProject.AI's face API): a face detector with landmarks and a face embedding
model on the chosen backend, and the face store."""

from __future__ import annotations

import logging
import threading
from typing import Any

import cv2
import numpy as np
from litestar import Controller

from edgewatch.backends.base import Backend, BackendError
from edgewatch.daemon.config import Settings
from edgewatch.daemon.modules.base import CapabilityModule, ModuleStatus
from edgewatch.daemon.modules.errors import NotFound, Unavailable
from edgewatch.daemon.modules.faces.schemas import FaceResponse
from edgewatch.daemon.config import FacesConfig
from edgewatch.daemon.modules.faces.store import FaceStore
from edgewatch.daemon.modules.requests import confidence_value
from edgewatch.models.manifest import ModelManifest
from edgewatch.models.runtime.faces import detect_faces, embed
from edgewatch.models.store import ModelNotFound

log = logging.getLogger(__name__)

MODULE_ID = "FaceProcessingEdgewatch"
MODULE_NAME = "Face Processing (edgewatch)"


class FaceModel:
    """One installed face model loaded on one backend."""

    def __init__(self, manifest: ModelManifest, backend: Backend) -> None:
        self.manifest, self.backend = manifest, backend

    @property
    def key(self) -> str:
        """What an embedding records it was made with: the model and its file."""
        return f"{self.manifest.name}@{self.manifest.default.sha256[:12]}"


class FacesModule(CapabilityModule):
    module_id = MODULE_ID
    module_name = MODULE_NAME
    settings_model = FacesConfig
    model_tasks = frozenset({"face_detection", "face_embedding"})
    mqtt_commands = {"face": "detect", "face/recognize": "recognize"}  # edgewatch/jobs/<command>: the image
    settings: FacesConfig

    def __init__(self, config: Settings, store, saved: dict[str, Any]) -> None:
        super().__init__(config, store, saved)
        self.faces = FaceStore(config.data_dir / "faces.db")
        self._lock = threading.Lock()
        self._models: dict[str, FaceModel] = {}

    # -- the module contract --------------------------------------------------------------------
    @classmethod
    def controllers(cls) -> list[type[Controller]]:
        from edgewatch.daemon.modules.faces.controller import FaceController

        return [FaceController]

    def config_section(self, config: Settings) -> dict[str, Any]:
        return config.faces.model_dump()

    def config_changed(self, old: Settings, new: Settings) -> bool:
        return (new.faces, new.backend, new.backends) != (old.faces, old.backend, old.backends)

    def check_settings(self, new: FacesConfig) -> None:
        for name in (new.detector, new.embedder):
            if not self.store.has(name):
                raise NotFound(f"model {name!r} is not installed; install it with `edgewatch models install {name}`")

    def start_message(self) -> str:
        return f"loading face models {self.settings.detector}, {self.settings.embedder}"

    def start(self) -> None:
        """Load both models if installed, and embed with the embedder any stored face it has not embedded
        (after a change of embedder, registered people keep being recognised)."""
        try:
            detector, embedder = self.detector(), self.embedder()
        except Unavailable as exc:
            log.info("faces: %s", exc)
            return
        detect_faces(detector.backend, detector.manifest, np.zeros((64, 64, 3), np.uint8))  # the first run plans
        pending = self.faces.unembedded(embedder.key)
        if pending:
            log.info("faces: embedding %d stored face(s) with %s", len(pending), embedder.key)
            crops = [cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR) for _, jpeg in pending]
            vectors = embed(embedder.backend, embedder.manifest, crops)
            self.faces.add_embeddings(embedder.key, {face_id: v for (face_id, _), v in zip(pending, vectors)})

    def apply(self, settings: FacesConfig) -> None:
        with self._lock:
            old, self._models = self._models, {}
            self.settings = settings
        for model in old.values():
            model.backend.close()
        self.start()

    def close(self) -> None:
        with self._lock:
            for model in self._models.values():
                model.backend.close()
            self._models = {}
        self.faces.close()

    def status(self) -> ModuleStatus:
        missing = [n for n in (self.settings.detector, self.settings.embedder) if not self.store.has(n)]
        if missing:
            return ModuleStatus(MODULE_ID, MODULE_NAME, False, "face models not installed: run `edgewatch models "
                                f"install {' '.join(missing)}`")
        people = len(self.faces.userids())
        with self._lock:
            loaded = self._models.get(self.settings.detector)
        backend = loaded.backend if loaded else None
        return ModuleStatus(MODULE_ID, MODULE_NAME, True,
                            f"faces with {self.settings.detector} + {self.settings.embedder}, {people} registered",
                            backend.type_key if backend else None, backend.execution_provider if backend else None)

    def known_subjects(self) -> list[str]:
        return self.faces.userids()

    def execution_provider(self) -> tuple[str, bool]:
        with self._lock:
            loaded = self._models.get(self.settings.detector)
        return (loaded.backend.execution_provider, bool(loaded.backend.can_use_gpu)) if loaded else ("CPU", False)

    def error_envelope(self, command: str, status: int, message: str, received_at: float) -> FaceResponse:
        from edgewatch.daemon.modules.faces.usecase import answer

        return answer(self, command, received_at, success=False, code=status, error=message)

    async def run_job(self, command, payload, params, queue, received_at) -> FaceResponse:
        from edgewatch.daemon.modules.faces import usecase

        min_conf = confidence_value(params.get("min_confidence", ""), self.settings.min_confidence)
        if command == "face/recognize":
            return await usecase.recognize(self, queue, payload, min_conf, received_at)
        return await usecase.detect(self, queue, payload, min_conf, received_at)

    # -- models ------------------------------------------------------------------------------------
    def detector(self) -> FaceModel:
        return self._model(self.settings.detector, "face_detection")

    def embedder(self) -> FaceModel:
        return self._model(self.settings.embedder, "face_embedding")

    def _model(self, name: str, task: str) -> FaceModel:
        with self._lock:
            if name in self._models:
                return self._models[name]
            try:
                manifest = self.store.get(name)
            except ModelNotFound:
                raise Unavailable(f"no face model {name!r} installed: run `edgewatch models install {name}` "
                                  "on the box") from None
            if manifest.task != task:
                raise Unavailable(f"{name} is a {manifest.task} model, not a {task} one: set faces."
                                  f"{'detector' if task == 'face_detection' else 'embedder'} to a {task} model")
            try:
                # "auto": the first backend that has a faithful variant of the face model (its NPU
                # conversion, `edgewatch models convert NAME --target rknn`), else the CPU
                selection = self.load(manifest, "auto")
            except BackendError as exc:
                raise Unavailable(f"{name} cannot run here: {exc}") from None
            model = self._models[name] = FaceModel(manifest, selection.backend)
            return model
