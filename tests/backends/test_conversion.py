"""`edgewatch models convert`: real conversions where the converter toolchains exist here.

The RKNN tests need rknn-toolkit2's own venv (about 5.6 GB with torch, 3 GB to download), which
CI never installs: they run in the opt-in slow set (EDGEWATCH_SLOW_TESTS=1, which builds that venv
under the cache dir on first use), or wherever `edgewatch models convert nanodet --target rknn`
has already built it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from yolo_exports import judge_loaded

from edgewatch.backends.tflite import TfliteCpuBackend
from edgewatch.models.conversion import rknn as rknn_conversion
from edgewatch.models.conversion.tool_env import ConverterEnvError
from edgewatch.models.convert import convert
from edgewatch.models.store import ModelStore

SLOW = os.environ.get("EDGEWATCH_SLOW_TESTS") == "1"
RKNN_SKIP = ("rknn-toolkit2's converter venv (about 5.6 GB with torch) is never installed in CI, so this is "
             "skipped there; run it with EDGEWATCH_SLOW_TESTS=1 (builds the venv under the cache dir on first "
             "use: about 3 GB to download and minutes to install), or on a machine where "
             "`edgewatch models convert nanodet --target rknn` has built it")


def rknn_test(fn):
    """In the slow set, with an hour's timeout: building the venv takes longer than pytest's 300 s."""
    return pytest.mark.slow(pytest.mark.timeout(3600)(fn))


def need_rknn_toolkit(cache_dir: Path) -> None:
    """Skip unless the rknn-toolkit2 venv is built or the slow set may build it on this host."""
    if rknn_conversion.env_ready(cache_dir):
        return
    if not SLOW:
        pytest.skip(RKNN_SKIP)
    try:
        rknn_conversion.RKNN_ENV.host_check()
    except ConverterEnvError as exc:  # no wheels for this OS, CPU or Python: it can never run here
        pytest.skip(str(exc))


def test_tensorrt_needs_no_conversion(data_dir: Path, cache_dir: Path) -> None:
    _, line = convert("nanodet", "tensorrt", ModelStore(data_dir / "models"), cache_dir)
    assert "built on the Jetson" in line


@rknn_test
def test_rknn_conversion_validated_on_the_pc_simulator(data_dir: Path, cache_dir: Path, reference,
                                                       photos: dict[str, Path]) -> None:
    need_rknn_toolkit(cache_dir)
    from edgewatch.daemon.testing.rknn_simulator import RknnSimulatorBackend

    store = ModelStore(data_dir / "models")
    manifest, line = convert("nanodet", "rknn", store, cache_dir, platform="rk3588")
    variant = manifest.variants["rknn-rk3588"]
    assert variant.runtime == "rknn" and variant.platform == "rk3588" and variant.precision == "int8"
    assert variant.agreement is not None and f"{variant.agreement:.1%}" in line
    assert variant.device_normalises and variant.input.layout == "nhwc" and variant.input.dtype == "uint8"
    assert variant.source_sha256 == manifest.variants["fp32"].sha256 and "rknn-toolkit2 2.5.0" == variant.toolkit
    assert store.verify(manifest) == []
    # What the conversion measured on 18 detections, judged on about 80 (yolo_exports.py: which
    # statistics, and why they hold whatever CPU or simulator build runs them).
    sim = RknnSimulatorBackend(cache_dir, list(photos.values()))
    judge_loaded(reference, sim, store.path(manifest, "fp32"), manifest, "rknn-rk3588", photos).assert_faithful()


def test_edgetpu_without_compiler_says_exactly_what_to_run(data_dir: Path, cache_dir: Path, tmp_path: Path) -> None:
    store = ModelStore(data_dir / "models")
    manifest, line = convert("nanodet", "edgetpu", store, cache_dir)
    assert "edgetpu_compiler -s nanodet_int8_for_edgetpu.tflite" in line and "--compiled" in line
    assert "edgetpu-int8" not in manifest.variants  # nothing half-done lands in the store
    wrong = tmp_path / "model.tflite"
    wrong.write_bytes(b"x")
    with pytest.raises(Exception, match="not an edgetpu_compiler output"):
        convert("nanodet", "edgetpu", store, cache_dir, compiled=wrong)


def test_tflite_conversion_recorded_with_provenance(converted_store: ModelStore, reference,
                                                    photos: dict[str, Path]) -> None:
    manifest = converted_store.get("nanodet")
    v = manifest.variants["tflite-int8"]
    assert v.runtime == "tflite" and v.precision == "int8" and v.agreement is not None and 0 <= v.agreement <= 1
    assert v.input.layout == "nhwc" and "onnx2tf" in v.toolkit and "bus.jpg" in v.calibration
    # The int8 TFLite, run by the TFLite backend on this CPU, is a faithful quantisation of the
    # fp32 ONNX: judged on about 80 detections by statistics one detection cannot flip (yolo_exports.py).
    judge_loaded(reference, TfliteCpuBackend(), converted_store.path(manifest, "tflite-int8"), manifest,
                 "tflite-int8", photos).assert_faithful()


@rknn_test
def test_rknn_simulator_passes_the_conformance_suite(converted_store: ModelStore, cache_dir: Path, reference,
                                                     photos, tmp_path: Path) -> None:
    """The same five checks as every backend, on rknn-toolkit2's simulator."""
    need_rknn_toolkit(cache_dir)
    from edgewatch.backends.conformance import Conformance
    from edgewatch.daemon.testing.rknn_simulator import RknnSimulatorBackend

    store = ModelStore(tmp_path / "data" / "models")
    shutil.copytree(converted_store.root, store.root)
    manifest, _ = convert("nanodet", "rknn", store, cache_dir)  # cached by source sha256
    suite = Conformance(lambda: RknnSimulatorBackend(cache_dir, list(photos.values())),
                        store.path(manifest, "fp32"), manifest, "rknn-rk3588", reference, photos)
    suite.RELOAD_CYCLES = 3  # each load is a simulator build of seconds; the worker is its own process
    for result in suite.run_all(tmp_path):
        assert result.passed, f"{result.name}: {result.detail}"
