"""The conformance suite: every backend that can load here passes the same checks with the
same model and photos (edgewatch selftest runs the same checks on a user's box)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgewatch.backends.conformance import Conformance
from edgewatch.backends.onnxruntime_cpu import OnnxRuntimeCpuBackend

CHECKS = ["outputs", "agreement", "concurrency", "reload", "corrupt"]


def configurations(store, nanodet) -> dict[str, tuple]:
    """Backend factory and variant for every backend that can run nanodet on this machine."""
    return {
        "onnxruntime-fp32": (OnnxRuntimeCpuBackend, "fp32"),
        "onnxruntime-int8": (OnnxRuntimeCpuBackend, "int8"),
    }


@pytest.fixture(params=["onnxruntime-fp32", "onnxruntime-int8"])
def conformance(request, store, nanodet, reference, photos) -> Conformance:
    factory, variant = configurations(store, nanodet)[request.param]
    return Conformance(factory, store.path(nanodet, variant), nanodet, variant, reference, photos)


@pytest.mark.parametrize("check", CHECKS)
def test_backend_conforms(conformance: Conformance, check: str, tmp_path: Path) -> None:
    if check == "corrupt":
        detail = conformance.check_corrupt(tmp_path)
    else:
        detail = getattr(conformance, f"check_{check}")()
    assert detail
