"""Extractive summaries: the sentences closest to the meaning of the whole text.

Each sentence is embedded (unit vectors); its score is the cosine similarity to the document's
centroid (the renormalised mean of all sentence embeddings), i.e. how central it is to what the
text says as a whole. The ``n`` best are returned in document order, joined by spaces.
"""

from __future__ import annotations

import numpy as np
from edgewatch.models.runtime.text import TextEmbedder


def centrality(vectors: np.ndarray) -> np.ndarray:
    """Each unit row's cosine similarity to the centroid of all rows."""
    centroid = vectors.mean(axis=0)
    return vectors @ (centroid / max(float(np.linalg.norm(centroid)), 1e-12))


def summarize(embedder: TextEmbedder, sentences: list[str], n: int) -> tuple[list[int], float]:
    """(indices of the ``n`` most central ``sentences``, in document order; seconds in the model).
    With ``n`` or fewer sentences, all of them and no model run."""
    if len(sentences) <= n:
        return list(range(len(sentences))), 0.0
    vectors, model_s = embedder.embed(sentences)
    best = np.argsort(-centrality(vectors), kind="stable")[:n]
    return sorted(int(i) for i in best), model_s
