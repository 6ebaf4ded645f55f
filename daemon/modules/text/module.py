"""The text module (CodeProject.AI's sentiment analysis and text summary): a sentence-embedding
model from the store on ONNX Runtime, VADER's lexicon, and the sentiment layer fitted on both."""

from __future__ import annotations

import logging
import threading
from importlib.metadata import version
from typing import Any

from edgewatch.backends.base import BackendError
from edgewatch.daemon.config import Settings
from edgewatch.daemon.modules.base import CapabilityModule, ModuleStatus
from edgewatch.daemon.modules.errors import NotFound, Unavailable
from edgewatch.daemon.modules.text.schemas import TextResponse
from edgewatch.daemon.modules.text.sentiment import SentimentHead
from edgewatch.daemon.modules.text.settings import TextSettings
from edgewatch.models.runtime.text import TextEmbedder, TokenizerMissing, tokenizer_from
from edgewatch.models.store import ModelNotFound
from litestar import Controller
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

log = logging.getLogger(__name__)

MODULE_ID = "TextProcessingEdgewatch"
MODULE_NAME = "Text Processing (edgewatch)"
TASK = "text_embedding"
BACKEND = "onnxruntime"  # the one backend that feeds a text encoder's int64 inputs


class TextModule(CapabilityModule):
    module_id = MODULE_ID
    module_name = MODULE_NAME
    settings_model = TextSettings
    model_tasks = frozenset({TASK})
    settings: TextSettings

    def __init__(self, config: Settings, store, saved: dict[str, Any]) -> None:
        super().__init__(config, store, saved)
        self._lock = threading.Lock()
        self._embedder: TextEmbedder | None = None
        self.vader = SentimentIntensityAnalyzer()
        self.head = SentimentHead.packaged()

    # -- the module contract --------------------------------------------------------------------
    @classmethod
    def controllers(cls) -> list[type[Controller]]:
        from edgewatch.daemon.modules.text.controller import TextController

        return [TextController]

    def config_changed(self, old: Settings, new: Settings) -> bool:
        return new.backends != old.backends

    def check_settings(self, new: TextSettings) -> None:
        if not self.store.has(new.model):
            raise NotFound(f"model {new.model!r} is not installed; install it with `edgewatch models install "
                           f"{new.model}`")
        if self.store.get(new.model).task != TASK:
            raise NotFound(f"{new.model} is not a {TASK} model; `edgewatch models list` shows the installed models")

    def start_message(self) -> str:
        return f"loading text model {self.settings.model}"

    def start(self) -> None:
        try:
            embedder = self.embedder()
        except Unavailable as exc:
            log.info("text: %s", exc)
            return
        embedder.embed(["warm-up"])  # the first run plans

    def apply(self, settings: TextSettings) -> None:
        with self._lock:
            old, self._embedder = self._embedder, None
            self.settings = settings
        if old is not None:
            old.backend.close()
        self.start()

    def close(self) -> None:
        with self._lock:
            if self._embedder is not None:
                self._embedder.backend.close()
            self._embedder = None

    def status(self) -> ModuleStatus:
        name = self.settings.model
        if not self.store.has(name):
            return ModuleStatus(MODULE_ID, MODULE_NAME, False,
                                f"text model not installed: run `edgewatch models install {name}`")
        loaded = self._embedder
        backend = loaded.backend if loaded else None
        return ModuleStatus(MODULE_ID, MODULE_NAME, True,
                            f"sentiment and summaries with {name} + VADER {version('vaderSentiment')}",
                            backend.type_key if backend else None, backend.execution_provider if backend else None)

    def error_envelope(self, command: str, status: int, message: str, received_at: float) -> TextResponse:
        from edgewatch.daemon.modules.text.usecase import answer

        return answer(self, command, received_at, success=False, code=status, error=message)

    # -- the model ---------------------------------------------------------------------------------
    def embedder(self) -> TextEmbedder:
        """The configured text model, loaded on first use; Unavailable says what to install."""
        name = self.settings.model
        with self._lock:
            if self._embedder is not None:
                return self._embedder
            try:
                manifest = self.store.get(name)
            except ModelNotFound:
                raise Unavailable(f"no text model {name!r} installed: run `edgewatch models install {name}` "
                                  "on the box") from None
            if manifest.task != TASK:
                raise Unavailable(f"{name} is a {manifest.task} model: set model in /v1/settings/{MODULE_ID} to "
                                  f"a {TASK} model (minilm-l6)")
            try:
                tokenizer = tokenizer_from(self.store.path(manifest))
                backend = self.load(manifest, BACKEND).backend
            except (BackendError, TokenizerMissing, OSError) as exc:
                raise Unavailable(f"{name} cannot run here ({exc}): reinstall it with `edgewatch models remove "
                                  f"{name}` then `edgewatch models install {name}`") from None
            self._embedder = TextEmbedder(manifest, backend, tokenizer)
            return self._embedder

    def sentiment_head(self, embedder: TextEmbedder) -> SentimentHead:
        """The sentiment layer, if it was fitted on ``embedder``'s model (Unavailable otherwise)."""
        if embedder.key != self.head.embedding_sha256:
            raise Unavailable(f"the sentiment layer was fitted on minilm-l6's embeddings, not {embedder.manifest.name}'s"
                              f": set model back to minilm-l6 in /v1/settings/{MODULE_ID}, or refit it with "
                              "`python -m edgewatch.daemon.modules.text.fit_sentiment`")
        return self.head
