"""The model-pack wheel: built from the conversion cache, and installed from on a box that never converts."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from edgewatch.models.store import ModelStore

ROOT = Path(__file__).resolve().parents[1]


def test_model_pack_wheel_installs_without_converting(tmp_path: Path, cache_dir: Path, installed_data_dir: Path) -> None:
    edgewatch = Path(sys.executable).parent / "edgewatch"
    env = {**os.environ, "EDGEWATCH_CACHE_DIR": str(cache_dir), "EDGEWATCH_BIN": str(edgewatch)}
    build = subprocess.run([sys.executable, str(ROOT / "image-build" / "build-model-pack"), "--out", str(tmp_path)],
                           env=env, capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stderr[-3000:]
    wheel = Path(build.stdout.strip().splitlines()[-1])
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    assert "edgewatch_model_pack/models/nanodet/manifest.json" in names
    assert any(n.startswith("edgewatch_model_pack/models/nanodet/int8-") for n in names)

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(wheel)],
                   check=True)
    empty_cache = tmp_path / "cache"
    box = {**os.environ, "PYTHONPATH": str(site), "EDGEWATCH_DATA_DIR": str(tmp_path / "data"),
           "EDGEWATCH_CACHE_DIR": str(empty_cache)}
    box.pop("EDGEWATCH_MODEL_PACK", None)
    out = subprocess.run([str(edgewatch), "models", "install", "--default"], env=box, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"model pack in {site / 'edgewatch_model_pack' / 'models'}" in out.stdout + out.stderr
    assert not (empty_cache / "conversions").exists(), "nothing was converted"
    installed = ModelStore(tmp_path / "data" / "models").get("nanodet")
    reference = ModelStore(installed_data_dir / "models").get("nanodet")
    # The same files and figures, except speed: the box times the CPU variants itself and makes the
    # fastest faithful one its default (an ARM box may rank TFLite and ONNX Runtime otherwise).
    same = lambda m: {k: v.model_dump(exclude={"inference_ms_p50"}) for k, v in m.variants.items()}  # noqa: E731
    assert same(installed) == same(reference)
    if "tflite-int8" in installed.variants:
        from edgewatch.models.convert import cpu_default

        assert (installed.default_variant, installed.quantization_report["default_reason"]) == cpu_default(installed)
        assert "timed here, default variant" in out.stdout + out.stderr
    else:
        assert installed.default_variant == reference.default_variant
