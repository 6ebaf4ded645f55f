"""The conformance suite: every backend that can load here passes the same checks with the
same model and photos (edgewatch selftest runs the same checks on a user's box)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgewatch.backends.conformance import Conformance, ImageConformance
from edgewatch.backends.ncnn import NcnnCpuBackend
from edgewatch.backends.onnxruntime_cpu import OnnxRuntimeCpuBackend
from edgewatch.backends.tflite import TfliteCpuBackend
from scratch import scratch_dir

CHECKS = ["outputs", "agreement", "concurrency", "reload", "corrupt"]

# Every backend that can load nanodet on this machine (accelerators: tests/backends/test_vendor_backends.py).
CONFIGURATIONS = {
    "onnxruntime-fp32": (OnnxRuntimeCpuBackend, "fp32"),
    "onnxruntime-int8": (OnnxRuntimeCpuBackend, "int8"),
    "tflite-int8": (TfliteCpuBackend, "tflite-int8"),
}


@pytest.fixture(params=list(CONFIGURATIONS))
def conformance(request, converted_store, reference, photos) -> Conformance:
    factory, variant = CONFIGURATIONS[request.param]
    if not factory.probe().available:
        pytest.fail(f"{request.param} cannot run here: {factory.probe().reason}")
    nanodet = converted_store.get("nanodet")
    return Conformance(factory, converted_store.path(nanodet, variant), nanodet, variant, reference, photos)


@pytest.mark.parametrize("check", CHECKS)
def test_backend_conforms(conformance: Conformance, check: str, tmp_path: Path) -> None:
    if check == "corrupt":
        detail = conformance.check_corrupt(tmp_path)
    else:
        detail = getattr(conformance, f"check_{check}")()
    assert detail


@pytest.fixture(scope="module")
def ncnn_conformance(request: pytest.FixtureRequest, tmp_path_factory, cache_dir, photos) -> ImageConformance:
    """ncnn runs no detector (none ships as ncnn files), so it is checked on the model it serves, a
    super-resolution one, by the image-to-image meaning of each check (see ImageConformance)."""
    from edgewatch.models.installer import install
    from edgewatch.models.store import ModelStore

    if not NcnnCpuBackend.probe().available:
        pytest.fail(f"ncnn cannot run here: {NcnnCpuBackend.probe().reason}")
    store = ModelStore(scratch_dir(request, tmp_path_factory, "ncnn") / "models")
    manifest, _ = install("realesr-animevideov3", store, cache_dir)
    return ImageConformance(NcnnCpuBackend, store.path(manifest), manifest, manifest.default_variant, photos)


@pytest.mark.parametrize("check", CHECKS)
def test_ncnn_conforms_on_an_image_to_image_model(ncnn_conformance: ImageConformance, check: str,
                                                  tmp_path: Path) -> None:
    if check == "corrupt":
        detail = ncnn_conformance.check_corrupt(tmp_path)
    else:
        detail = getattr(ncnn_conformance, f"check_{check}")()
    assert detail


@pytest.mark.parametrize("backend", ["auto", "tflite"])
def test_daemon_runs_the_default_variant_or_the_backend_asked_for(backend: str, converted_data_dir: Path,
                                                                  cache_dir: Path, photo_bytes) -> None:
    """With both CPU runtimes and both variants, auto runs the default variant's runtime (the
    fastest faithful one measured here); asked for tflite, the daemon runs the TFLite variant."""
    import shutil

    from litestar.testing import TestClient

    from edgewatch.daemon.app import create_app
    from edgewatch.daemon.config import load_settings
    from edgewatch.models.store import ModelStore

    data = Path(shutil.copytree(converted_data_dir, converted_data_dir.parent / f"api-{backend}", dirs_exist_ok=True))
    nanodet = ModelStore(data / "models").get("nanodet")
    default_runtime = "tflite" if nanodet.variants[nanodet.default_variant].runtime == "tflite" else "onnxruntime"
    with TestClient(create_app(load_settings(data_dir=data, cache_dir=cache_dir, backend=backend,
                                             detection={"model": "nanodet"}))) as client:
        status = client.get("/v1/status/backends").json()
        assert status["active"] == (default_runtime if backend == "auto" else "tflite")
        assert status["notes"] == []  # nothing skipped, nothing to warn about
        body = client.post("/v1/vision/detection", files={"image": photo_bytes["bus"]}).json()
        labels = {p["label"] for p in body["predictions"]}
        assert body["success"] and {"bus", "person"} <= labels and body["executionProvider"] == "CPU"


def test_tflite_int8_input_is_quantised_by_the_letterbox(converted_store, photos) -> None:
    """An int8-input TFLite model asks for the int8 tensor itself (scale and zero point folded into
    the letterbox's table), and that tensor is exactly what quantising the float tensor gives."""
    import cv2
    import numpy as np

    from edgewatch.backends.tflite import _quantise
    from edgewatch.models.runtime.preprocess import letterbox

    nanodet = converted_store.get("nanodet")
    backend = TfliteCpuBackend(TfliteCpuBackend.config_model())
    backend.load(converted_store.path(nanodet, "tflite-int8"), nanodet, "tflite-int8")
    try:
        spec, pre = backend.input_format()
        assert spec.dtype == "int8"
        float_spec = spec.model_copy(update={"dtype": "float32"})
        for path in photos.values():
            image = cv2.imread(str(path))
            quantised, _ = letterbox(image, spec, pre)
            as_float, _ = letterbox(image, float_spec, nanodet.preprocessing)
            np.testing.assert_array_equal(quantised, _quantise(as_float, backend._input))
            for a, b in zip(backend.infer(quantised), backend.infer(as_float)):
                np.testing.assert_array_equal(a, b)
    finally:
        backend.close()
