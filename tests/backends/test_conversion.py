"""`edgewatch models convert`: real conversions where the converter toolchains exist here."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgewatch.models.conversion import rknn as rknn_conversion
from edgewatch.models.convert import convert
from edgewatch.models.store import ModelStore


def test_tensorrt_needs_no_conversion(data_dir: Path, cache_dir: Path) -> None:
    _, line = convert("nanodet", "tensorrt", ModelStore(data_dir / "models"), cache_dir)
    assert "built on the Jetson" in line


def test_rknn_conversion_validated_on_the_pc_simulator(data_dir: Path, cache_dir: Path) -> None:
    """rknn-toolkit2 (5.6 GB) is never installed by the tests or CI; this runs where a developer
    has built its venv with `edgewatch models convert … --target rknn`."""
    if not rknn_conversion.env_ready(cache_dir):
        pytest.skip("rknn-toolkit2 venv not built on this machine (edgewatch models convert --target rknn builds it)")
    store = ModelStore(data_dir / "models")
    manifest, line = convert("nanodet", "rknn", store, cache_dir, platform="rk3588")
    variant = manifest.variants["rknn-rk3588"]
    assert variant.runtime == "rknn" and variant.platform == "rk3588" and variant.precision == "int8"
    assert variant.agreement >= 0.95, line
    assert variant.device_normalises and variant.input.layout == "nhwc" and variant.input.dtype == "uint8"
    assert variant.source_sha256 == manifest.variants["fp32"].sha256 and "rknn-toolkit2 2.5.0" == variant.toolkit
    assert store.verify(manifest) == []


def test_edgetpu_without_compiler_says_exactly_what_to_run(data_dir: Path, cache_dir: Path, tmp_path: Path) -> None:
    store = ModelStore(data_dir / "models")
    manifest, line = convert("nanodet", "edgetpu", store, cache_dir)
    assert "edgetpu_compiler -s nanodet_int8_for_edgetpu.tflite" in line and "--compiled" in line
    assert "edgetpu-int8" not in manifest.variants  # nothing half-done lands in the store
    wrong = tmp_path / "model.tflite"
    wrong.write_bytes(b"x")
    with pytest.raises(Exception, match="not an edgetpu_compiler output"):
        convert("nanodet", "edgetpu", store, cache_dir, compiled=wrong)


def test_tflite_conversion_recorded_with_provenance(converted_store: ModelStore) -> None:
    v = converted_store.get("nanodet").variants["tflite-int8"]
    assert v.runtime == "tflite" and v.precision == "int8" and v.agreement >= 0.95
    assert v.input.layout == "nhwc" and "onnx2tf" in v.toolkit and "bus.jpg" in v.calibration


def test_rknn_simulator_passes_the_conformance_suite(converted_store: ModelStore, cache_dir: Path, reference,
                                                     photos, tmp_path: Path) -> None:
    """The same five checks as every backend, on rknn-toolkit2's simulator (where its venv exists)."""
    if not rknn_conversion.env_ready(cache_dir):
        pytest.skip("rknn-toolkit2 venv not built on this machine (edgewatch models convert --target rknn builds it)")
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from rknn_simulator import RknnSimulatorBackend

    from edgewatch.backends.conformance import Conformance
    from edgewatch.models.convert import convert

    store = ModelStore(tmp_path / "data" / "models")
    import shutil

    shutil.copytree(converted_store.root, store.root)
    manifest, _ = convert("nanodet", "rknn", store, cache_dir)  # cached by source sha256
    suite = Conformance(lambda: RknnSimulatorBackend(cache_dir, list(photos.values())),
                        store.path(manifest, "fp32"), manifest, "rknn-rk3588", reference, photos)
    for result in suite.run_all(tmp_path):
        assert result.passed, f"{result.name}: {result.detail}"
