"""Fit the sentiment layer (``sentiment_head.json``) on the installed text model's embeddings:
``python -m edgewatch.daemon.modules.text.fit_sentiment [--data-dir DIR]``.

L2-regularised logistic regression (Newton's method) of the label on [embedding, VADER compound],
trained on the Amazon and IMDB sentences of :mod:`.dataset` and scored on the Yelp ones, held out
(another domain: restaurants). Deterministic: the same model and data give the same file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from edgewatch.backends.registry import load_backend
from edgewatch.daemon.modules.text.dataset import PACKAGE, VERSION, labelled_sentences
from edgewatch.daemon.modules.text.sentiment import HEAD_FILE
from edgewatch.models.runtime.text import TextEmbedder, tokenizer_from
from edgewatch.models.store import ModelStore
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

TRAIN, HELD_OUT = ("amazon", "imdb"), "yelp"
L2 = 1e-3


def features(embedder: TextEmbedder, texts: list[str]) -> np.ndarray:
    """[unit embedding, VADER compound] per text."""
    vader = SentimentIntensityAnalyzer()
    vectors, _ = embedder.embed(texts)
    compounds = np.asarray([vader.polarity_scores(t)["compound"] for t in texts], np.float32)
    return np.concatenate([vectors, compounds[:, None]], axis=1).astype(np.float64)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = L2, steps: int = 50) -> tuple[np.ndarray, float]:
    """(weights, bias) minimising mean log-loss + l2/2·|w|² (the bias is not penalised)."""
    xb = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    theta = np.zeros(xb.shape[1])
    penalty = np.full(xb.shape[1], l2)
    penalty[-1] = 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(xb @ theta)))
        gradient = xb.T @ (p - y) / len(y) + penalty * theta
        hessian = (xb.T * (p * (1 - p))) @ xb / len(y) + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hessian, gradient)
        theta -= step
        if np.abs(step).max() < 1e-10:
            break
    return theta[:-1], float(theta[-1])


def accuracy(x: np.ndarray, y: np.ndarray, w: np.ndarray, b: float) -> float:
    return float(((x @ w + b >= 0) == (y == 1)).mean())


def brier(x: np.ndarray, y: np.ndarray, w: np.ndarray, b: float) -> float:
    """Mean squared error of the probabilities (0.25 for a constant 0.5; lower is better calibrated)."""
    return float(((1.0 / (1.0 + np.exp(-(x @ w + b))) - y) ** 2).mean())


def main() -> None:
    from edgewatch.daemon.config import load_settings

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, help="the daemon's data dir (default: the configured one)")
    parser.add_argument("--model", default="minilm-l6")
    args = parser.parse_args()
    settings = load_settings(**({"data_dir": args.data_dir} if args.data_dir else {}))
    store = ModelStore(settings.models_dir)
    manifest = store.get(args.model)
    backend = load_backend("onnxruntime", store, manifest).backend
    embedder = TextEmbedder(manifest, backend, tokenizer_from(store.path(manifest)))

    def domain(names) -> tuple[np.ndarray, np.ndarray]:
        rows = [r for name in names for r in labelled_sentences(settings.cache_dir, name)]
        return features(embedder, [t for t, _ in rows]), np.asarray([label for _, label in rows], np.float64)

    x, y = domain(TRAIN)
    xt, yt = domain([HELD_OUT])
    w, b = fit_logistic(x, y)
    w_emb, b_emb = fit_logistic(x[:, :-1], y)
    report = {
        "data": f"UCI Sentiment Labelled Sentences (CC BY 4.0) from npm {PACKAGE}@{VERSION}",
        "trained_on": f"{', '.join(TRAIN)}: {len(y)} sentences", "l2": L2,
        "held_out": f"{HELD_OUT}: {len(yt)} sentences",
        "held_out_accuracy": round(accuracy(xt, yt, w, b), 4),
        "held_out_accuracy_embedding_only": round(accuracy(xt[:, :-1], yt, w_emb, b_emb), 4),
        "held_out_brier": round(brier(xt, yt, w, b), 4),
        "held_out_brier_embedding_only": round(brier(xt[:, :-1], yt, w_emb, b_emb), 4),
        "held_out_accuracy_vader_only": round(float(((xt[:, -1] >= 0) == (yt == 1)).mean()), 4),
        "train_accuracy": round(accuracy(x, y, w, b), 4),
    }
    head = {"embedding_model": args.model, "embedding_sha256": embedder.key, "weights": [round(v, 6) for v in w[:-1]],
            "vader_weight": round(float(w[-1]), 6), "bias": round(b, 6), "report": report}
    out = Path(__file__).with_name(HEAD_FILE)
    out.write_text(json.dumps(head, indent=1) + "\n")
    backend.close()
    print(json.dumps(report, indent=1), f"\nwrote {out}")


if __name__ == "__main__":
    main()
