"""The text module (CodeProject.AI's sentiment analysis and text summary): a sentence-embedding
model from the store on ONNX Runtime, VADER's lexicon, and the sentiment layer fitted on both."""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

from edgewatch.backends.base import Backend, BackendError
from edgewatch.daemon.config import Settings
from edgewatch.daemon.modules.base import ModuleStatus
from edgewatch.daemon.modules.errors import NotFound, Unavailable
from edgewatch.daemon.modules.model_slot import ModelSlot, SingleModelModule
from edgewatch.daemon.modules.text.schemas import TextResponse
from edgewatch.daemon.modules.text.sentiment import SentimentHead
from edgewatch.daemon.modules.text.settings import TextSettings
from edgewatch.models.manifest import ModelManifest
from edgewatch.models.runtime.text import TextEmbedder, TokenizerMissing, tokenizer_from
from litestar import Controller
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

log = logging.getLogger(__name__)

MODULE_ID = "TextProcessingEdgewatch"
MODULE_NAME = "Text Processing (edgewatch)"
TASK = "text_embedding"
BACKEND = "onnxruntime"  # the one backend that feeds a text encoder's int64 inputs


class TextModule(SingleModelModule):
    module_id = MODULE_ID
    module_name = MODULE_NAME
    settings_model = TextSettings
    model_tasks = frozenset({TASK})
    settings: TextSettings

    def __init__(self, config: Settings, store, saved: dict[str, Any]) -> None:
        super().__init__(config, store, saved)
        self.slot: ModelSlot[TextEmbedder] = ModelSlot(
            self, self._embedder, BACKEND, what="text", suggest=f"a {TASK} model (minilm-l6)",
            errors=(BackendError, TokenizerMissing, OSError),
            cannot_run="{name} cannot run here ({exc}): reinstall it with `edgewatch models remove {name}` then "
                       "`edgewatch models install {name}`")
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

    def status(self) -> ModuleStatus:
        name = self.settings.model
        return self.slot.status(f"sentiment and summaries with {name} + VADER {version('vaderSentiment')}",
                                f"text model not installed: run `edgewatch models install {name}`")

    def error_envelope(self, command: str, status: int, message: str, received_at: float) -> TextResponse:
        from edgewatch.daemon.modules.text.usecase import answer

        return answer(self, command, received_at, success=False, code=status, error=message)

    # -- the model ---------------------------------------------------------------------------------
    def embedder(self) -> TextEmbedder:
        """The configured text model, loaded on first use; Unavailable says what to install."""
        return self.slot.get()

    def _embedder(self, manifest: ModelManifest, load: Callable[[], Backend]) -> TextEmbedder:
        tokenizer = tokenizer_from(self.store.path(manifest))  # before the load: a bad file loads nothing
        return TextEmbedder(manifest, load(), tokenizer)

    def sentiment_head(self, embedder: TextEmbedder) -> SentimentHead:
        """The sentiment layer, if it was fitted on ``embedder``'s model (Unavailable otherwise)."""
        if embedder.key != self.head.embedding_sha256:
            raise Unavailable(f"the sentiment layer was fitted on minilm-l6's embeddings, not {embedder.manifest.name}'s"
                              f": set model back to minilm-l6 in /v1/settings/{MODULE_ID}, or refit it with "
                              "`python -m edgewatch.daemon.modules.text.fit_sentiment`")
        return self.head
