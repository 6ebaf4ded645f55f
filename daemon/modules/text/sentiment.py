"""Sentiment: VADER's compound score and a MiniLM sentence embedding, combined by one logistic layer.

``positive_probability = sigmoid(w · e + a · c + b)``, where ``e`` is the text's 384-d unit
embedding (a text longer than the model's 256 tokens: the renormalised mean of the embeddings of
its sentences packed into chunks of at most 256 tokens), ``c`` is VADER's compound score (-1..1) of
the whole text, and ``w``, ``a``, ``b`` were fitted together (L2-regularised logistic regression)
on labelled review sentences by :mod:`.fit_sentiment`; they live in ``sentiment_head.json``.
``is_positive`` is ``positive_probability >= 0.5``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

import numpy as np
from edgewatch.models.runtime.text import MAX_TOKENS, TextEmbedder, split_sentences
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

HEAD_FILE = "sentiment_head.json"


@dataclass(frozen=True)
class SentimentHead:
    weights: np.ndarray  # w, one per embedding dimension
    vader_weight: float  # a
    bias: float          # b
    embedding_sha256: str  # the model file the layer was fitted on
    report: dict

    @classmethod
    def packaged(cls) -> SentimentHead:
        data = json.loads(resources.files(__package__).joinpath(HEAD_FILE).read_text())
        return cls(np.asarray(data["weights"], np.float32), float(data["vader_weight"]), float(data["bias"]),
                   data["embedding_sha256"], data["report"])

    def probability(self, embeddings: np.ndarray, compounds: np.ndarray) -> np.ndarray:
        """positive_probability of each row of ``embeddings`` (N×D) with its VADER ``compounds`` (N)."""
        z = embeddings @ self.weights + self.vader_weight * compounds + self.bias
        return 1.0 / (1.0 + np.exp(-z))


def chunks(embedder: TextEmbedder, text: str) -> list[str]:
    """``text`` whole if it fits the model, else its sentences packed into pieces of at most
    :data:`MAX_TOKENS` tokens (a longer sentence is a piece of its own, truncated)."""
    if embedder.token_counts([text])[0] < MAX_TOKENS:
        return [text]
    sentences = split_sentences(text)
    pieces, current, size = [], [], 0
    for sentence, tokens in zip(sentences, embedder.token_counts(sentences)):
        tokens -= 2  # [CLS] and [SEP] are counted once per piece
        if current and size + tokens > MAX_TOKENS - 2:
            pieces.append(" ".join(current))
            current, size = [], 0
        current.append(sentence)
        size += tokens
    return pieces + ([" ".join(current)] if current else [])


def text_embedding(embedder: TextEmbedder, text: str) -> tuple[np.ndarray, float]:
    """(the text's unit embedding, seconds in the model)."""
    vectors, model_s = embedder.embed(chunks(embedder, text))
    mean = vectors.mean(axis=0)
    return mean / max(float(np.linalg.norm(mean)), 1e-12), model_s


def positive_probability(embedder: TextEmbedder, head: SentimentHead, vader: SentimentIntensityAnalyzer,
                         text: str) -> tuple[float, float]:
    """(positive_probability of ``text``, seconds in the model)."""
    vector, model_s = text_embedding(embedder, text)
    compound = vader.polarity_scores(text)["compound"]
    return float(head.probability(vector[None, :], np.asarray([compound]))[0]), model_s
