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

import cv2
import numpy as np
import pytest
from litestar.testing import TestClient

from edgewatch.daemon.app import create_app
from edgewatch.daemon.config import load_settings
from edgewatch.models.quantize import calibration_tensors, measure_variants
from edgewatch.models.store import ModelStore
from edgewatch.models.user_models import MIN_REFERENCE
from yolo_exports import (CANDIDATE_CONF, Detections, assert_default_follows_measurement, compare_detections,
                          nanodet_as_yolo, photo_views)

pytestmark = pytest.mark.slow


def add_model(data_dir: Path, path: Path, name: str, labels: Path) -> str:
    env = dict(os.environ, EDGEWATCH_DATA_DIR=str(data_dir))
    proc = subprocess.run([sys.executable, "-m", "edgewatch.daemon.cli", "models", "add", str(path), "--name", name,
                           "--labels", str(labels)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("kind", ["yolov8", "yolov5"])
def test_user_yolo_export_finds_what_the_network_finds(kind: str, data_dir: Path, cache_dir: Path, tmp_path: Path,
                                                      photos: dict[str, Path]) -> None:
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
    assert q["reference_detections"] >= MIN_REFERENCE, q  # the photos give it enough objects to judge int8 by
    assert f"default {added.default_variant}: {q['reason']}" in out
    # int8 is the default exactly when this CPU measured it faster and agreeing well enough
    assert_default_follows_measurement(added.default_variant, q, MIN_REFERENCE)

    # Served end to end, on each photo twelve ways (about 120 detections), each model answers as its
    # default variant, int8 or fp32, whichever this CPU's measurement picked.
    views = {name: cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
             for name, img in photo_views(photos).items()}
    settings = load_settings(data_dir=data_dir, cache_dir=cache_dir, detection={"model": "nanodet"})
    answers: dict[str, list[tuple[str, Detections]]] = {"nanodet": [], f"my-{kind}": []}
    with TestClient(create_app(settings)) as client:
        listed = client.post("/v1/vision/custom/list").json()["models"]
        assert f"my-{kind}" in listed
        for model, got in answers.items():
            for name, image in views.items():
                body = client.post(f"/v1/vision/custom/{model}", files={"image": image},
                                   data={"min_confidence": str(CANDIDATE_CONF)}).json()
                assert body["success"], body
                got.append((name, as_detections(body["predictions"], nanodet.labels)))
    ref, mine = answers["nanodet"], answers[f"my-{kind}"]
    # Each model's detections are in the other's answer: same label, same place in the original
    # photo, similar score. That checks the export-layout detection, the RGB/255 letterbox, the
    # YOLO decoder and the box mapping; a wrong one would lose most boxes or scores.
    both_ways = [compare_detections(((n, a, b) for (n, a), (_, b) in zip(x, y)), labels=nanodet.labels)
                 for x, y in ((ref, mine), (mine, ref))]
    for result in both_ways:
        print(f"{kind}: {result.summary()}")
        # whichever variants ran, as close as a faithful int8 quantisation is to fp32 (yolo_exports.py:
        # which statistics, and why they hold on any CPU); two int8 models, quantised separately, add
        # up their errors and still pass by a wide margin (about 100 % matched, median score 0.00 off).
        result.assert_faithful()
    if nanodet.default_variant == added.default_variant == "fp32":
        # the same fp32 network behind two input conventions: equal up to float rounding
        for result in both_ways:
            assert result.share >= 0.95 and np.median(result.ious) >= 0.99, result.summary()
            assert np.median(result.score_deltas) <= 0.005, result.summary()


def as_detections(predictions: list[dict], labels: tuple[str, ...]) -> Detections:
    """API predictions as (boxes in original pixels, scores, class ids)."""
    ids = {name: i for i, name in enumerate(labels)}
    boxes = np.array([[p["x_min"], p["y_min"], p["x_max"], p["y_max"]] for p in predictions], float).reshape(-1, 4)
    return (boxes, np.array([p["confidence"] for p in predictions], float),
            np.array([ids[p["label"]] for p in predictions], np.int64))


def test_int8_needs_enough_detections_to_be_judged(installed_data_dir: Path, photos: dict[str, Path]) -> None:
    store = ModelStore(installed_data_dir / "models")
    nanodet = store.get("nanodet")
    tensors = calibration_tensors([photos["bus"]], nanodet.input, nanodet.preprocessing)
    report = measure_variants(store.path(nanodet, "fp32"), store.path(nanodet, "int8"), tensors,
                              nanodet.postprocessing, nanodet.input.size, min_reference=1000)
    assert report["default_variant"] == "fp32"
    assert "too few to judge int8" in report["quantization"]["reason"]
    assert "--calibration" in report["quantization"]["reason"]
