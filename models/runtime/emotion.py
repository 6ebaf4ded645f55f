"""The run path of the text emotion classifier (``iris-emotion``'s Keras BiLSTM, converted to ONNX at
install): text → the model's own Keras ``Tokenizer`` (word ids, reproduced here without Keras from the
JSON the installer wrote into the ONNX file's metadata) → 50 ids padded and truncated at the end, as
the package's ``IRIS.get_sequences`` does → backend → a probability for each of the 6 labels of the
dair-ai "emotion" dataset (joy, fear, anger, sadness, love, surprise; not GoEmotions' 28).

The tokenizer is only ever read from JSON; the package's pickle is read once, at install, by
:class:`RestrictedTokenizerUnpickler`, which builds a plain attribute holder instead of Keras's class
and refuses every other global a pickle may name (a pickle can call any function while it loads).
"""

from __future__ import annotations

import json
import pickle
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgewatch.models.runtime.heads import HEADS

if TYPE_CHECKING:
    from edgewatch.backends.base import Backend, BackendConfig
    from edgewatch.models.manifest import ModelManifest
    from edgewatch.models.store import ModelStore

TASK = "text_emotion"
TOKENIZER_KEY = "keras_tokenizer.json"  # the ONNX metadata_props entry the installer writes
TOKENIZER_FORMAT = "keras-preprocessing-tokenizer/v1"
BATCH = 64


# --- the Keras tokenizer, without Keras ---------------------------------------------------------

class _TokenizerState:
    """What a pickled Keras ``Tokenizer`` becomes here: its attributes, and no behaviour."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise pickle.UnpicklingError("a Tokenizer's state is not a dict")
        self.__dict__.update({str(k): v for k, v in state.items()})


class _Factory:
    """Stands for ``builtins.int``, the only ``defaultdict`` factory a Tokenizer pickle names (its
    word_docs and index_docs); never called."""


def _plain_dict(*args: Any) -> dict:
    """``collections.OrderedDict`` / ``defaultdict`` rebuilt as a plain dict (items come after)."""
    if args and not (len(args) == 1 and (args[0] is None or isinstance(args[0], _Factory))):
        raise pickle.UnpicklingError("unexpected arguments to a dict in a Tokenizer pickle")
    return {}


class RestrictedTokenizerUnpickler(pickle.Unpickler):
    """Reads a pickled Keras ``Tokenizer`` (``keras_preprocessing.text``, ``keras.preprocessing.text``,
    ``tensorflow.keras.preprocessing.text``, ... : whichever module path the pickle names) as a
    :class:`_TokenizerState`; the dicts it holds as plain dicts. Any other global is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if name == "Tokenizer" and module.split(".")[-1] == "text" and "keras" in module:
            return _TokenizerState
        if module == "collections" and name in ("OrderedDict", "defaultdict"):
            return _plain_dict
        if module == "builtins" and name == "int":
            return _Factory()
        raise pickle.UnpicklingError(f"a Keras Tokenizer pickle does not hold {module}.{name}: refusing to load it")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("a Keras Tokenizer pickle has no persistent ids: refusing to load it")


@dataclass(frozen=True)
class KerasTokenizer:
    """Keras's ``Tokenizer.texts_to_sequences`` and ``pad_sequences`` (keras_preprocessing 1.1), for
    a word-level tokenizer. ``word_index`` may leave out the words whose index is ``num_words`` or
    more: with an ``oov_token`` they map to it either way."""

    word_index: dict[str, int]
    num_words: int | None
    oov_token: str | None
    filters: str
    lower: bool
    split: str
    maxlen: int
    padding: str = "post"     # where pad_sequences adds zeros: "pre" or "post"
    truncating: str = "post"  # which end of a longer sequence it cuts: "pre" or "post"

    def __post_init__(self) -> None:
        if self.padding not in ("pre", "post") or self.truncating not in ("pre", "post"):
            raise ValueError(f"padding and truncating are 'pre' or 'post', not {self.padding!r}, {self.truncating!r}")
        object.__setattr__(self, "_table", str.maketrans({c: self.split for c in self.filters}))

    def words(self, text: str) -> list[str]:
        """keras_preprocessing.text.text_to_word_sequence."""
        if self.lower:
            text = text.lower()
        return [w for w in text.translate(self._table).split(self.split) if w]  # type: ignore[attr-defined]

    def texts_to_sequences(self, texts: Sequence[str]) -> list[list[int]]:
        oov = self.word_index.get(self.oov_token) if self.oov_token is not None else None
        out = []
        for text in texts:
            seq = []
            for word in self.words(text):
                i = self.word_index.get(word)
                if i is not None and not (self.num_words and i >= self.num_words):
                    seq.append(i)
                elif oov is not None:  # unknown, or too rare for num_words
                    seq.append(oov)
            out.append(seq)
        return out

    def pad_sequences(self, sequences: Sequence[Sequence[int]]) -> np.ndarray:
        """N×maxlen int32 ids, zeros for padding; an empty sequence is all zeros."""
        ids = np.zeros((len(sequences), self.maxlen), np.int32)
        for row, seq in enumerate(sequences):
            if not seq:
                continue
            kept = seq[:self.maxlen] if self.truncating == "post" else seq[-self.maxlen:]
            if self.padding == "post":
                ids[row, :len(kept)] = kept
            else:
                ids[row, self.maxlen - len(kept):] = kept
        return ids

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.pad_sequences(self.texts_to_sequences(texts))

    def to_json(self) -> str:
        return json.dumps({"format": TOKENIZER_FORMAT, "num_words": self.num_words, "oov_token": self.oov_token,
                           "filters": self.filters, "lower": self.lower, "split": self.split,
                           "maxlen": self.maxlen, "padding": self.padding, "truncating": self.truncating,
                           "word_index": self.word_index}, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> KerasTokenizer:
        raw = json.loads(text)
        if raw.get("format") != TOKENIZER_FORMAT:
            raise ValueError(f"not a {TOKENIZER_FORMAT} tokenizer: format {raw.get('format')!r}")
        return cls(word_index={str(k): int(v) for k, v in raw["word_index"].items()}, num_words=raw["num_words"],
                   oov_token=raw["oov_token"], filters=raw["filters"], lower=bool(raw["lower"]), split=raw["split"],
                   maxlen=int(raw["maxlen"]), padding=raw["padding"], truncating=raw["truncating"])


def read_tokenizer_pickle(path: Path, maxlen: int, padding: str = "post", truncating: str = "post") -> KerasTokenizer:
    """A pickled Keras ``Tokenizer`` read by :class:`RestrictedTokenizerUnpickler`, with the padding
    its model was trained with (not in the pickle: the package's code says it)."""
    with open(path, "rb") as f:
        state = RestrictedTokenizerUnpickler(f).load()
    if not isinstance(state, _TokenizerState):
        raise pickle.UnpicklingError(f"{path.name} holds a {type(state).__name__}, not a Keras Tokenizer")
    attrs = vars(state)
    if attrs.get("char_level"):
        raise ValueError(f"{path.name} is a character-level tokenizer; only word-level ones are supported")
    word_index = attrs.get("word_index")
    if not isinstance(word_index, dict) or not all(isinstance(k, str) and type(v) is int for k, v in word_index.items()):
        raise pickle.UnpicklingError(f"{path.name}: word_index is not a dict of words to ints")
    num_words, oov = attrs.get("num_words"), attrs.get("oov_token")
    if num_words is not None and oov is not None:  # rarer words map to the OOV id either way: leave them out
        word_index = {w: i for w, i in word_index.items() if i < num_words}
    return KerasTokenizer(word_index=word_index, num_words=num_words, oov_token=oov,
                          filters=str(attrs.get("filters", "")), lower=bool(attrs.get("lower", True)),
                          split=str(attrs.get("split", " ")), maxlen=maxlen, padding=padding, truncating=truncating)


class TokenizerMissing(ValueError):
    """The model file carries no tokenizer (not installed by `edgewatch models install`)."""


def tokenizer_from(model_path: Path) -> KerasTokenizer:
    """The tokenizer stored in ``model_path``'s ONNX metadata."""
    import onnx

    props = {p.key: p.value for p in onnx.load(str(model_path), load_external_data=False).metadata_props}
    if TOKENIZER_KEY not in props:
        raise TokenizerMissing(f"{model_path} has no {TOKENIZER_KEY} in its metadata: reinstall it with "
                               "`edgewatch models install iris-emotion`")
    return KerasTokenizer.from_json(props[TOKENIZER_KEY])


# --- the classifier -----------------------------------------------------------------------------

class EmotionClassifier:
    """One installed text_emotion model loaded on one backend, with the tokenizer its file carries
    (:func:`load_classifier` does both)."""

    def __init__(self, manifest: ModelManifest, backend: Backend, tokenizer: KerasTokenizer) -> None:
        head = HEADS[manifest.postprocessing]
        if head.task != TASK:
            raise ValueError(f"{manifest.name} is a {head.task} model, not a {TASK} one")
        self.manifest, self.backend, self.tokenizer = manifest, backend, tokenizer
        self.labels: tuple[str, ...] = manifest.labels
        self._decode = head.decoder
        self.model_s = 0.0  # seconds spent in the backend by the last call

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """N×C probabilities (rows sum to 1), columns in :attr:`labels` order."""
        if isinstance(texts, str):
            raise TypeError("texts is a list of strings, not one string")
        ids = self.tokenizer.encode(list(texts)).astype(np.float32)  # the Keras model's input is float ids
        rows, spent = [], 0.0
        for start in range(0, len(ids), BATCH):
            began = time.perf_counter()
            outputs = self.backend.infer(ids[start:start + BATCH])
            spent += time.perf_counter() - began
            rows.append(self._decode(outputs))
        self.model_s = spent
        if not rows:
            return np.zeros((0, len(self.labels)), np.float32)
        probs = np.concatenate(rows)
        if probs.shape[1] != len(self.labels):
            raise ValueError(f"{self.manifest.name} gives {probs.shape[1]} scores, but has {len(self.labels)} labels")
        return probs

    def classify(self, texts: list[str]) -> list[dict[str, float]]:
        """Per text, label → probability (0–1, summing to 1), in the model's label order."""
        return [{label: float(p) for label, p in zip(self.labels, row)} for row in self.probabilities(texts)]

    def top(self, texts: list[str], k: int = 1) -> list[list[tuple[str, float]]]:
        """Per text, the ``k`` most probable (label, probability), highest first."""
        out = []
        for row in self.probabilities(texts):
            idx = np.argsort(-row, kind="stable")[:max(0, k)]
            out.append([(self.labels[i], float(row[i])) for i in idx])
        return out


def load_classifier(store: ModelStore, manifest: ModelManifest, preferred: str = "auto",
                    configs: dict[str, BackendConfig] | None = None) -> EmotionClassifier:
    """``manifest``'s model on a backend (edgewatch.backends.registry.load_backend: ``preferred``, or
    the probe order for ``auto``) with the tokenizer from its ONNX file's metadata. The caller closes
    ``.backend`` when done."""
    from edgewatch.backends.registry import load_backend

    onnx_key = next((k for k, v in manifest.variants.items() if v.runtime == "onnx"), manifest.default_variant)
    tokenizer = tokenizer_from(store.path(manifest, onnx_key))
    return EmotionClassifier(manifest, load_backend(preferred, store, manifest, configs).backend, tokenizer)
