"""`edgewatch models add` with a real network in the YOLOv5 and YOLOv8 export layouts, served end to end.

The added model is NanoDet's real weights behind an Ultralytics-style interface (see
yolo_exports.py), so on real photos it must find what NanoDet itself finds, at the same place
in the original image: that checks the export-layout detection, the RGB/255 letterbox, both
YOLO decoders and the box mapping back to the photo, on a model the user brings.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from litestar.testing import TestClient

from edgewatch.daemon.app import create_app
from edgewatch.daemon.config import load_settings
from edgewatch.models.quantize import AGREEMENT_REQUIRED, calibration_tensors, iou, measure_variants
from edgewatch.models.store import ModelStore
from edgewatch.models.user_models import MIN_REFERENCE
from yolo_exports import nanodet_as_yolo

pytestmark = pytest.mark.slow


def add_model(data_dir: Path, path: Path, name: str, labels: Path) -> str:
    env = dict(os.environ, EDGEWATCH_DATA_DIR=str(data_dir))
    proc = subprocess.run([sys.executable, "-m", "edgewatch.daemon.cli", "models", "add", str(path), "--name", name,
                           "--labels", str(labels)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("kind", ["yolov8", "yolov5"])
def test_user_yolo_export_finds_what_the_network_finds(kind: str, data_dir: Path, cache_dir: Path, tmp_path: Path,
                                                      photo_bytes: dict[str, bytes]) -> None:
    store = ModelStore(data_dir / "models")
    nanodet = store.get("nanodet")
    export = nanodet_as_yolo(store.path(nanodet, "fp32"), nanodet, kind, tmp_path / f"my-{kind}.onnx")
    labels = tmp_path / "coco.txt"
    labels.write_text("\n".join(nanodet.labels) + "\n")
    out = add_model(data_dir, export, f"my-{kind}", labels)
    assert kind in out and "80 classes" in out
    added = ModelStore(data_dir / "models").get(f"my-{kind}")
    q = added.quantization_report
    assert set(added.variants) == {"fp32", "int8"} and q["recipe"].startswith("user-onnx/")
    assert q["reference_detections"] >= MIN_REFERENCE and q["agreement"] >= AGREEMENT_REQUIRED, q
    assert f"default {added.default_variant}: {q['reason']}" in out
    # int8 is the default exactly when it was measured faster (it agrees well enough, above)
    assert (added.default_variant == "int8") == (q["int8_ms_p50"] < q["fp32_ms_p50"]), q

    settings = load_settings(data_dir=data_dir, cache_dir=cache_dir, detection={"model": "nanodet"})
    matched = 0
    with TestClient(create_app(settings)) as client:
        listed = client.post("/v1/vision/custom/list").json()["models"]
        assert f"my-{kind}" in listed
        for name, image in photo_bytes.items():
            def detect(model: str) -> list[dict]:
                body = client.post(f"/v1/vision/custom/{model}", files={"image": image},
                                   data={"min_confidence": "0.3"}).json()
                assert body["success"], body
                return body["predictions"]

            ref, got = detect("nanodet"), detect(f"my-{kind}")
            # Each may run int8 or fp32 (whichever measured faster): every confident detection
            # of either must be in the other's answer, same label, same place, similar score.
            for strong, other in ((ref, got), (got, ref)):
                for p in (p for p in strong if p["confidence"] >= 0.5):
                    same = [o for o in other if o["label"] == p["label"]]
                    best = max(same, key=lambda o: iou(box(p), box(o)[None])[0], default=None)
                    assert best is not None and iou(box(p), box(best)[None])[0] >= 0.85, (name, p, other)
                    assert abs(best["confidence"] - p["confidence"]) < 0.1, (name, p, best)
                    matched += 1
    assert matched >= 10, "too few confident detections to compare"


def box(p: dict) -> np.ndarray:
    return np.array([p["x_min"], p["y_min"], p["x_max"], p["y_max"]], float)


def test_int8_needs_enough_detections_to_be_judged(installed_data_dir: Path, photos: dict[str, Path]) -> None:
    store = ModelStore(installed_data_dir / "models")
    nanodet = store.get("nanodet")
    tensors = calibration_tensors([photos["bus"]], nanodet.input, nanodet.preprocessing)
    report = measure_variants(store.path(nanodet, "fp32"), store.path(nanodet, "int8"), tensors,
                              nanodet.postprocessing, nanodet.input.size, min_reference=1000)
    assert report["default_variant"] == "fp32"
    assert "too few to judge int8" in report["quantization"]["reason"]
    assert "--calibration" in report["quantization"]["reason"]
