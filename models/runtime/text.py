"""The run path of the text models: sentences (``split_sentences``, Wikimedia's ``sentencex``:
rule-based, with English abbreviation lists, so "Dr. Smith paid $3.50 on Jan. 5th." stays one
sentence) and sentence embeddings: the installed text model's tokenizer (``tokenizers``, from the tokenizer.json
the installer wrote into the ONNX file's metadata) and its ONNX graph on a backend, read by the
manifest's head (mean pooling over the attention mask, L2-normalised)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from edgewatch.backends.base import Backend
from edgewatch.models.manifest import ModelManifest
from edgewatch.models.runtime.heads import HEADS
from sentencex import segment
from tokenizers import Tokenizer

TOKENIZER_KEY = "tokenizer.json"  # the ONNX metadata_props entry the installer writes
MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length in sentence-transformers; longer input is truncated
BATCH = 32


def split_sentences(text: str) -> list[str]:
    """The sentences of English ``text``, in order, stripped, without empty ones."""
    return [s.strip() for s in segment("en", text) if s.strip()]


class TokenizerMissing(ValueError):
    """The model file carries no tokenizer (not installed by `edgewatch models install`)."""


def tokenizer_from(model_path: Path) -> Tokenizer:
    """The tokenizer stored in ``model_path``'s metadata, truncating at :data:`MAX_TOKENS`."""
    import onnx  # only where the model is installed: importing onnx takes a second on a small board

    props = {p.key: p.value for p in onnx.load(str(model_path), load_external_data=False).metadata_props}
    if TOKENIZER_KEY not in props:
        raise TokenizerMissing(f"{model_path} has no {TOKENIZER_KEY} in its metadata")
    tokenizer = Tokenizer.from_str(props[TOKENIZER_KEY])
    tokenizer.enable_truncation(MAX_TOKENS)
    tokenizer.no_padding()
    return tokenizer


class TextEmbedder:
    """One installed text_embedding model loaded on one backend."""

    def __init__(self, manifest: ModelManifest, backend: Backend, tokenizer: Tokenizer) -> None:
        self.manifest, self.backend, self.tokenizer = manifest, backend, tokenizer
        self._decode = HEADS[manifest.postprocessing].decoder

    @property
    def key(self) -> str:
        """The weights the vectors come from (the package's file, before the tokenizer was added)."""
        return self.manifest.default.source_sha256 or self.manifest.default.sha256

    def token_counts(self, texts: list[str]) -> list[int]:
        return [len(e.ids) for e in self.tokenizer.encode_batch(texts)]

    def embed(self, texts: list[str]) -> tuple[np.ndarray, float]:
        """(N×D unit vectors, seconds spent in the model). Texts are batched by length, so a batch
        pads little."""
        encodings = self.tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        vectors: list[np.ndarray | None] = [None] * len(texts)
        model_s = 0.0
        for start in range(0, len(order), BATCH):
            chunk = order[start:start + BATCH]
            width = max(len(encodings[i].ids) for i in chunk)
            ids = np.zeros((len(chunk), width), np.int64)
            mask = np.zeros((len(chunk), width), np.int64)
            for row, i in enumerate(chunk):
                n = len(encodings[i].ids)
                ids[row, :n], mask[row, :n] = encodings[i].ids, 1
            began = time.perf_counter()
            outputs = self.backend.infer({"input_ids": ids, "attention_mask": mask,  # type: ignore[arg-type]
                                          "token_type_ids": np.zeros_like(ids)})
            model_s += time.perf_counter() - began
            for row, vector in zip(chunk, self._decode(outputs, mask)):
                vectors[row] = vector
        return np.stack(vectors).astype(np.float32), model_s  # type: ignore[arg-type]
