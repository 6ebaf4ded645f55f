"""Text generation benchmark: prompt processing and generation tokens per second of each installed
text_generation model (catalogue llm.yaml), on the CPU with llama.cpp (xllamacpp).

    python bench/generation.py [--data DIR] [--install] [--tokens 64] [--rounds 3]

Uses the models installed in ``DIR/models`` (default: the daemon's data dir); ``--install`` first
installs smollm2-135m (and gemma3-270m when LicenseRef-Gemma is accepted through
$EDGEWATCH_ACCEPT_LICENCES) into a temporary store. Each round times a ~300-token prompt (real prose:
xllamacpp's own README) and a greedy generation of --tokens tokens (end of text banned, so every round
generates the same number), and prints the median of the rounds.
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
from importlib.metadata import distribution
from pathlib import Path

from edgewatch.models.installer import LicenceNotAccepted, install
from edgewatch.models.runtime.generation import Generator
from edgewatch.models.store import ModelStore


def prose() -> str:
    md = (distribution("xllamacpp").read_text("METADATA") or "").split("\n\n", 1)[-1]
    md = re.sub(r"```.*?```", "", md, flags=re.S)
    paragraphs = [p for p in md.split("\n\n") if p.strip() and not p.lstrip().startswith(("#", "|", "<", "[", "!"))]
    return " ".join(" ".join(paragraphs).split()[:220])  # about 300 tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--install", action="store_true")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.install:
        from edgewatch.daemon.paths import default_cache_dir

        with tempfile.TemporaryDirectory(prefix="bench-llm-") as tmp:  # the models go with it
            store = ModelStore(Path(tmp) / "models")
            for name in ("smollm2-135m", "gemma3-270m"):
                try:
                    install(name, store, default_cache_dir())
                except LicenceNotAccepted:
                    print(f"{name}: skipped (licence not accepted: set EDGEWATCH_ACCEPT_LICENCES=LicenseRef-Gemma)")
            measure(store, args.tokens, args.rounds)
    else:
        from edgewatch.daemon.paths import default_data_dir

        measure(ModelStore((args.data or default_data_dir()) / "models"), args.tokens, args.rounds)


def measure(store: ModelStore, tokens: int, rounds: int) -> None:
    """Print one line per text_generation model in ``store``."""
    models = [m for m in store.list() if m.task == "text_generation"]
    if not models:
        raise SystemExit("no text_generation model installed: edgewatch models install smollm2-135m (or --install)")
    prompt = f"Summarise this text.\n\n{prose()}"
    print(f"{'model':<16} {'threads':>7} {'load s':>7} {'prompt tok':>10} {'prompt tok/s':>12} "
          f"{'gen tok':>7} {'gen tok/s':>9} {'ms/token':>8}")
    for manifest in models:
        with Generator.from_store(store, manifest.name) as gen:
            runs = []
            for _ in range(rounds):
                # a fresh prompt each round: prompt caching would otherwise skip the prompt
                out = gen.chat([{"role": "user", "content": f"({len(runs)}) {prompt}"}], max_tokens=tokens,
                               min_tokens=tokens, temperature=0.0)
                runs.append(out)
            pps = statistics.median(r.prompt_tokens_per_second for r in runs)
            tps = statistics.median(r.tokens_per_second for r in runs)
            print(f"{manifest.name:<16} {gen.threads:>7} {gen.load_seconds:>7.2f} {runs[0].prompt_tokens:>10} "
                  f"{pps:>12.1f} {runs[0].completion_tokens:>7} {tps:>9.1f} {1000 / tps if tps else 0:>8.1f}")


if __name__ == "__main__":
    main()
