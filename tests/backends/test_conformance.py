"""The conformance suite: every backend that can load here passes the same checks with the
same model and photos (edgewatch selftest runs the same checks on a user's box)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgewatch.backends.conformance import Conformance
from edgewatch.backends.onnxruntime_cpu import OnnxRuntimeCpuBackend
from edgewatch.backends.tflite import TfliteCpuBackend

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
