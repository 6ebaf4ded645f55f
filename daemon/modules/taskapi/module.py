"""The task API module: its routes under /backprop, its keys, and the models its tasks run (each
loaded on first use from the store, on the CPU backends): a sentence encoder for vectorisation and
zero-shot text classification, an ImageNet classifier for zero-shot image classification."""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np
from litestar import Controller

from edgewatch.backends.base import Backend, BackendError
from edgewatch.daemon.config import Settings, TaskApiConfig
from edgewatch.daemon.modules.base import CapabilityModule, ModuleStatus
from edgewatch.daemon.modules.errors import NotFound, Unavailable
from edgewatch.daemon.modules.model_slot import ModelSlot
from edgewatch.daemon.modules.taskapi.schemas import Message
from edgewatch.models.manifest import ModelManifest
from edgewatch.models.runtime.classification import Classification, classify
from edgewatch.models.runtime.text import TextEmbedder, TokenizerMissing, tokenizer_from
from edgewatch.models.runtime.zeroshot import TEXT_TEMPLATE

log = logging.getLogger(__name__)

MODULE_ID = "TaskApiEdgewatch"
MODULE_NAME = "Task API (edgewatch)"
EMBEDDING, IMAGE = "text_embedding", "image_classification"
BACKEND = "onnxruntime"


class TaskApiModule(CapabilityModule):
    module_id = MODULE_ID
    module_name = MODULE_NAME
    settings_model = TaskApiConfig
    model_tasks = frozenset({EMBEDDING, IMAGE})
    config_only = frozenset({"enabled", "keys", "local_without_key"})
    secret_settings = frozenset({"keys"})
    settings: TaskApiConfig

    def __init__(self, config: Settings, store, saved: dict[str, Any]) -> None:
        super().__init__(config, store, saved)
        self.english: ModelSlot[TextEmbedder] = ModelSlot(
            self, self._embedder, BACKEND, what="English text", kind="a text_embedding model", suggest="minilm-l6",
            setting="english", errors=(BackendError, TokenizerMissing))
        self.image: ModelSlot[tuple[ModelManifest, Backend]] = ModelSlot(
            self, lambda manifest, load: (manifest, load()), BACKEND, what="image classification",
            kind="an image_classification model", suggest="mobilenet-v2", setting="image")
        self._class_vectors: tuple[str, np.ndarray] | None = None  # (whose, C×D) ImageNet class names embedded
        self._vectors_lock = threading.Lock()

    def _embedder(self, manifest: ModelManifest, load) -> TextEmbedder:
        tokenizer = tokenizer_from(self.store.path(manifest))
        return TextEmbedder(manifest, load(), tokenizer)

    @classmethod
    def controllers(cls) -> list[type[Controller]]:
        from edgewatch.daemon.modules.taskapi.controller import TaskApiController

        return [TaskApiController]

    def config_section(self, config: Settings) -> dict[str, Any]:
        return config.task_api.model_dump()

    def config_changed(self, old: Settings, new: Settings) -> bool:
        return (new.task_api, new.backends) != (old.task_api, old.backends)

    def check_settings(self, new: TaskApiConfig) -> None:
        for name, task in ((new.english, EMBEDDING), (new.image, IMAGE)):
            if not self.store.has(name):
                raise NotFound(f"model {name!r} is not installed; install it with `edgewatch models install {name}`")
            if self.store.get(name).task != task:
                raise NotFound(f"{name} is not a {task} model")

    def start(self) -> None:
        """Nothing to warm: the task API's models load on their first request (most boxes serve the
        vision modules and never call it)."""

    def apply(self, settings: TaskApiConfig) -> None:
        self.english.apply(settings)
        self.image.apply(settings)
        with self._vectors_lock:
            self._class_vectors = None

    def close(self) -> None:
        self.english.close()
        self.image.close()

    def status(self) -> ModuleStatus:
        s = self.settings
        if not s.enabled:
            return ModuleStatus(self.module_id, self.module_name, False, "off (task_api.enabled is false)")
        keys = f"{len(s.keys)} key(s)" if s.keys else "no keys yet: `edgewatch task-api new-key NAME`"
        missing = [n for n in (s.english, s.image) if not self.store.has(n)]
        ready = not missing
        summary = f"/backprop, {keys}" + (f"; to install: edgewatch models install {' '.join(missing)}" if missing
                                          else "")
        return ModuleStatus(self.module_id, self.module_name, ready, summary)

    def error_envelope(self, command: str, status: int, message: str, received_at: float) -> Message:
        return Message(message)

    # -- the models ------------------------------------------------------------------------------
    def embedder(self, model: str) -> TextEmbedder:
        """The sentence encoder for the request's ``model`` ("english"; "multilingual" is not installed yet)."""
        if model == "english":
            return self.english.get()
        if model == "multilingual":
            raise Unavailable("model multilingual is not available on this box yet: use model english "
                              "(README: Task API)")
        raise NotFound(f"model {model} not found")

    def embed(self, model: str, texts: list[str]) -> np.ndarray:
        return self.embedder(model).embed(texts)[0]

    def classify_image(self, image_bgr: np.ndarray) -> tuple[Classification, ModelManifest]:
        manifest, backend = self.image.get()
        return classify(backend, manifest, image_bgr), manifest

    def class_vectors(self, manifest: ModelManifest) -> np.ndarray:
        """The image model's class names embedded with the English encoder, once per model pair."""
        embedder = self.english.get()
        whose = f"{manifest.name}:{manifest.default.sha256}:{embedder.key}"
        with self._vectors_lock:
            if self._class_vectors is None or self._class_vectors[0] != whose:
                names = [TEXT_TEMPLATE.format(label) for label in manifest.labels]
                self._class_vectors = (whose, embedder.embed(names)[0])
            return self._class_vectors[1]
