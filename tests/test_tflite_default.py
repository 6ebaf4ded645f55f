"""The fastest CPU path by default: `models install` builds the int8 TFLite variant where a TFLite
interpreter is installed, judges it with the same AP50 gate as ONNX int8, makes the fastest
faithful variant the default, and the registry runs that variant's runtime first."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgewatch.backends.onnxruntime_cpu import OnnxRuntimeCpuBackend
from edgewatch.backends.registry import load_backend, order
from edgewatch.backends.tflite import TfliteCpuBackend
from edgewatch.models import installer
from edgewatch.models.conversion.tool_env import ConversionError
from edgewatch.models.convert import cpu_default
from edgewatch.models.manifest import AP50_REQUIRED, CPU_RUNTIMES
from edgewatch.models.store import ModelStore

pytestmark = pytest.mark.skipif(not TfliteCpuBackend.probe().available,
                                reason="no TFLite interpreter on this platform (ai-edge-litert has no wheel here)")


def test_ai_edge_litert_is_a_default_dependency() -> None:
    """Installed by `pip install .` itself (not an extra) on the platforms its wheels exist for."""
    from importlib.metadata import requires

    reqs = [r for r in requires("edgewatch") or [] if r.startswith("ai-edge-litert") and "extra ==" not in r]
    assert len(reqs) == 1 and "x86_64" in reqs[0] and "aarch64" in reqs[0], reqs


def test_install_builds_judges_and_picks_the_fastest_faithful(installed_data_dir: Path) -> None:
    store = ModelStore(installed_data_dir / "models")
    assert "tflite-int8" in store.get("nanodet").variants
    for name in ("nanodet", "centernet"):
        m = store.get(name)
        assert not store.verify(m)
        if "tflite-int8" not in m.variants:  # neither converter manages CenterNet's TopK head: ONNX only
            assert name == "centernet" and m.variants[m.default_variant].runtime == "onnx"
            continue
        t = m.variants["tflite-int8"]
        assert t.runtime == "tflite" and t.source_sha256 == m.variants["fp32"].sha256
        assert t.ap50_vs_fp32 is not None and t.inference_ms_p50 and t.inference_ms_p50 > 0
        cpu = {k: v for k, v in m.variants.items() if v.runtime in CPU_RUNTIMES}
        faithful = {k: v for k, v in cpu.items() if m.faithful(k)}
        assert m.default_variant in faithful, (name, m.default_variant)
        # The default is the fastest faithful CPU variant by the figures the manifest records; TFLite
        # replaces ONNX Runtime's fastest faithful variant only when clearly (10 %) faster.
        p50 = {k: v.inference_ms_p50 for k, v in faithful.items()}
        onnx_best = min((k for k in p50 if faithful[k].runtime == "onnx"), key=p50.get)
        expected = "tflite-int8" if "tflite-int8" in p50 and p50["tflite-int8"] <= 0.9 * p50[onnx_best] else onnx_best
        assert m.default_variant == expected, m.variants
        assert (m.default_variant, m.quantization_report["default_reason"]) == cpu_default(m)
        assert t.ap50_vs_fp32 >= AP50_REQUIRED or not m.faithful("tflite-int8")


def test_auto_runs_the_default_variants_runtime_first(installed_data_dir: Path) -> None:
    """The CPU backend that runs the default variant comes first; the other CPU runtime runs its
    own faithful variant, never one that failed the gate."""
    store = ModelStore(installed_data_dir / "models")
    for name in ("nanodet", "centernet"):
        m = store.get(name)
        cpu_order = [cls.type_key for cls in order("auto", m) if cls.cpu]
        assert cpu_order[0] == ("tflite" if m.variants[m.default_variant].runtime == "tflite" else "onnxruntime")
        picked = OnnxRuntimeCpuBackend().pick_variant(m)
        assert m.faithful(picked) and m.variants[picked].runtime == "onnx"
        selection = load_backend("auto", store, m)
        try:
            if not any(n.startswith(("rknn", "edgetpu", "tensorrt")) for n in selection.notes):
                assert selection.backend.type_key == cpu_order[0] and selection.notes == []
        finally:
            selection.backend.close()
    centernet = store.get("centernet")
    if not centernet.faithful("int8"):  # its int8 ONNX loses a quarter of fp32's detections
        assert OnnxRuntimeCpuBackend().pick_variant(centernet) == "fp32"


def test_a_failed_tflite_build_still_installs_the_onnx_model(tmp_path: Path, cache_dir: Path, monkeypatch,
                                                             capsys) -> None:
    def no_converter(*_a, **_k):
        raise ConversionError("not enough free space for the TFLite converter environment (test)")

    monkeypatch.setattr("edgewatch.models.convert.convert", no_converter)
    store = ModelStore(tmp_path / "models")
    manifest, _ = installer.install("nanodet", store, cache_dir, tflite=True)
    assert "tflite-int8" not in manifest.variants and manifest.default_variant in ("fp32", "int8")
    assert not store.verify(manifest)
    said = capsys.readouterr()
    assert "int8 TFLite variant not built" in said.out + said.err
    assert "edgewatch models convert nanodet --target tflite" in said.out + said.err


def test_no_tflite_flag(tmp_path: Path, cache_dir: Path) -> None:
    env = {**os.environ, "EDGEWATCH_DATA_DIR": str(tmp_path / "data"), "EDGEWATCH_CACHE_DIR": str(cache_dir)}
    out = subprocess.run([sys.executable, "-m", "edgewatch.daemon.cli", "models", "install", "nanodet", "--no-tflite"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    manifest = ModelStore(tmp_path / "data" / "models").get("nanodet")
    assert {v.runtime for v in manifest.variants.values()} == {"onnx"}


def test_a_variant_that_failed_the_gate_is_never_run(data_dir: Path) -> None:
    """A conversion whose detections stray from fp32's (CenterNet on the RKNN simulator: AP50 0)
    is kept in the store with its figure, but no backend runs it: asked for its runtime, the
    daemon runs the next backend and says why."""
    import json

    store = ModelStore(data_dir / "models")
    m = store.get("nanodet")
    if "tflite-int8" not in m.variants:
        pytest.skip("no TFLite variant was built here")
    path = data_dir / "models" / "nanodet" / "manifest.json"
    raw = json.loads(path.read_text())
    raw["variants"]["tflite-int8"]["ap50_vs_fp32"] = 0.42
    if raw["default_variant"] == "tflite-int8":
        raw["default_variant"] = "int8"
    path.write_text(json.dumps(raw))
    m = store.get("nanodet")
    assert not m.faithful("tflite-int8") and TfliteCpuBackend().pick_variant(m) is None
    selection = load_backend("tflite", store, m)
    try:
        assert selection.backend.type_key == "onnxruntime"
        assert any("failed its gate" in n for n in selection.notes), selection.notes
    finally:
        selection.backend.close()
