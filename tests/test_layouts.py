"""Owners' detector layouts: recognised from the tensors' shapes, decoded, served on the one run path.

Each model here is NanoDet's real network wrapped into a family's export layout (layout_exports.py),
added through `models add`'s code and run through models.runtime.run.detect on real photos: it must
find what NanoDet finds (same label names, IoU >= 0.85, one to one, both ways). The negative cases
(a wrong decoder, labels off by one, the wrong pixel scaling) must break that match, which shows the
match is sharp enough to catch those mistakes.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import yaml

from edgewatch.backends.onnxruntime_cpu import OnnxRuntimeCpuBackend
from edgewatch.models.layout_recognition import (IMAGENET_MEAN, IMAGENET_STD, RECOGNISERS, Layout, LayoutError,
                                                 recognise)
from edgewatch.models.manifest import ModelManifest
from edgewatch.models.quantize import iou
from edgewatch.models.runtime import run
from edgewatch.models.runtime.heads import decode
from edgewatch.models.runtime.labels import COCO80
from edgewatch.models.runtime.layouts import dequantise, dequantise_all
from edgewatch.models.runtime.preprocess import letterbox
from edgewatch.models.store import ModelStore
from edgewatch.models.tensor_info import TensorInfo
from edgewatch.models.user_models import MIN_REFERENCE, PLACEHOLDER, AddError, add_user_model, read_labels
from layout_exports import COCO_IDS, CONVENTIONS, KINDS, nanodet_as
from yolo_exports import assert_default_follows_measurement, nanodet_as_yolo
from scratch import scratch_dir

REFERENCE_CONF, CANDIDATE_CONF, MATCH_IOU = 0.4, 0.3, 0.85
Found = dict[str, tuple[np.ndarray, np.ndarray, list[str]]]  # photo → boxes, scores, label names


# -- fixtures: NanoDet, its wrapped exports (built once per session), what NanoDet finds ----------

@pytest.fixture(scope="session")
def nanodet(installed_data_dir: Path) -> tuple[ModelStore, ModelManifest]:
    store = ModelStore(installed_data_dir / "models")
    return store, store.get("nanodet")


@pytest.fixture(scope="module")
def export(request: pytest.FixtureRequest, nanodet, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``export(kind, **options)``: the wrapped model's path, built on first use."""
    store, manifest = nanodet
    folder = scratch_dir(request, tmp_path_factory, "layouts")
    built: dict[str, Path] = {}

    def make(kind: str, **options) -> Path:
        key = kind + "".join(f"-{k}{abs(hash(str(v)))}" for k, v in sorted(options.items()))
        if key not in built:
            built[key] = nanodet_as(store.path(manifest, "fp32"), manifest, kind, folder / f"{key}.onnx", **options)
        return built[key]

    return make


@pytest.fixture(scope="module")
def user_store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> ModelStore:
    return ModelStore(scratch_dir(request, tmp_path_factory, "user") / "models")


@pytest.fixture(scope="session")
def images(photos: dict[str, Path]) -> dict[str, np.ndarray]:
    """Each photo as taken and mirrored: objects at new places in the grid."""
    out = {}
    for name, path in photos.items():
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        out[name], out[f"{name}/mirrored"] = img, np.ascontiguousarray(cv2.flip(img, 1))
    return out


@pytest.fixture(scope="session")
def few(images) -> dict[str, np.ndarray]:
    """The photos as taken only: enough for the checks of label mapping, output order and the
    negative cases, at half the time."""
    return {name: img for name, img in images.items() if not name.endswith("/mirrored")}


def found_by(store: ModelStore, manifest: ModelManifest, images: dict[str, np.ndarray]) -> Found:
    backend = OnnxRuntimeCpuBackend()
    backend.load(store.path(manifest, "fp32"), manifest, "fp32")
    try:
        out = {}
        for name, img in images.items():
            d = run.detect(backend, manifest, img, CANDIDATE_CONF)
            out[name] = (d.boxes, d.scores, [manifest.labels[c] for c in d.classes])
        return out
    finally:
        backend.close()


@pytest.fixture(scope="session")
def reference(nanodet, images) -> Found:
    store, manifest = nanodet
    found = found_by(store, manifest, images)
    assert sum(int((s >= REFERENCE_CONF).sum()) for _, s, _ in found.values()) >= 15  # enough to judge by
    return found


def share_matched(reference: Found, candidate: Found) -> tuple[float, list[str]]:
    """Share of confident detections (>= 0.4) of each side that the other has one to one (same label
    name, IoU >= 0.85, >= 0.3), over both directions; and what was missed."""
    total, missed = 0, []
    views = [v for v in candidate if v in reference]
    for a, b in ((reference, candidate), (candidate, reference)):
        for view in views:
            (ab, as_, al), (bb, bs, bl) = a[view], b[view]
            used = np.zeros(len(bb), bool)
            for i in np.argsort(-as_):
                if as_[i] < REFERENCE_CONF:
                    continue
                total += 1
                ok = np.array([n == al[i] for n in bl], bool) & ~used & (bs >= CANDIDATE_CONF)
                ious = np.where(ok, iou(ab[i], bb), 0.0) if len(bb) else np.zeros(0)
                if len(ious) and ious.max() >= MATCH_IOU:
                    used[int(ious.argmax())] = True
                else:
                    missed.append(f"{view}: {al[i]}@{as_[i]:.2f}")
    return (1 - len(missed) / total if total else 0.0), missed


def add(store: ModelStore, path: Path, name: str, labels: Path, **options) -> ModelManifest:
    return add_user_model(path, name, labels, store, int8=False, **options)


@pytest.fixture(scope="session")
def coco_labels(nanodet, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("labels") / "coco.txt"
    path.write_text("\n".join(nanodet[1].labels) + "\n")
    return path


def expected_mean_std(kind: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    color, scaling = CONVENTIONS[kind]
    if scaling == "imagenet":
        return (IMAGENET_MEAN, IMAGENET_STD) if color == "rgb" else (IMAGENET_MEAN[::-1], IMAGENET_STD[::-1])
    return (0.0, 0.0, 0.0), (255.0,) * 3 if scaling == "0-1" else (1.0,) * 3


# -- every layout, end to end ----------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_layout_is_recognised_and_finds_what_nanodet_finds(kind, export, user_store, coco_labels, images,
                                                           reference) -> None:
    # A YOLOX export's [1, cells, 5+C] is also the shape of per-cell pixel rows (YOLOv6): running it
    # once tells them apart (see test_the_yolox_shape_tie_is_settled_by_running_the_model).
    added = add(user_store, export(kind), f"layout-{kind.replace('_', '-')}", coco_labels)
    assert added.postprocessing == kind and added.labels == COCO80
    assert added.input.size == (416, 416) and added.input.layout == "nchw" and added.input.dtype == "float32"
    mean, std = expected_mean_std(kind)
    assert added.preprocessing.color == CONVENTIONS[kind][0]
    np.testing.assert_allclose(added.preprocessing.mean, mean, rtol=1e-3)
    np.testing.assert_allclose(added.preprocessing.std, std, rtol=1e-3)
    assert (added.input.size_input == "orig_target_sizes") == (kind == "dfine")
    share, missed = share_matched(reference, found_by(user_store, added, images))
    assert share == 1.0, missed


@pytest.mark.slow
@pytest.mark.parametrize("kind, order", [
    ("rknn_yolov8", [5, 0, 7, 2, 4, 8, 1, 6, 3]),  # strides and roles interleaved
    ("rknn_yolov5", [2, 0, 1]),
    ("yolo_nas", [1, 0]),
    ("detr", [1, 0]),     # RT-DETR's raw order: logits, then boxes
    ("dfine", [2, 0, 1]),
])
def test_outputs_are_told_apart_by_shape_not_order(kind, order, export, user_store, coco_labels, few,
                                                   reference) -> None:
    added = add(user_store, export(kind, order=order), f"shuffled-{kind.replace('_', '-')}", coco_labels)
    assert added.postprocessing == kind
    share, missed = share_matched(reference, found_by(user_store, added, few))
    assert share == 1.0, missed


@pytest.mark.slow
def test_nhwc_uint8_input_is_fed_raw_pixels(export, user_store, coco_labels, few, reference) -> None:
    added = add(user_store, export("yolov8", nhwc=True, uint8=True), "nhwc-uint8", coco_labels)
    assert added.input.layout == "nhwc" and added.input.dtype == "uint8" and added.input.shape == (1, 416, 416, 3)
    share, missed = share_matched(reference, found_by(user_store, added, few))
    assert share == 1.0, missed


@pytest.mark.slow
def test_the_yolox_shape_tie_is_settled_by_running_the_model(export, user_store, nanodet, coco_labels, few,
                                                              reference, tmp_path) -> None:
    """YOLOX's raw rows ([1, cells, 5+C]: grid offsets, log sizes) have the shape of per-cell pixel
    rows (the one-row-per-cell yolov5 export of tests/yolo_exports.py): `models add` runs the model
    once on a grey image and reads each the right way; the other reading's boxes are wrong."""
    yolox = add(user_store, export("yolox"), "yolox-unnamed", coco_labels)
    assert yolox.postprocessing == "yolox"
    store, manifest = nanodet
    pixel_rows = nanodet_as_yolo(store.path(manifest, "fp32"), manifest, "yolov5", tmp_path / "rows.onnx")
    rows = add(user_store, pixel_rows, "pixel-rows", coco_labels)
    assert rows.postprocessing == "yolov5"
    share, _ = share_matched(reference, found_by(user_store, rows, few))
    assert share == 1.0
    wrong = yolox.model_copy(update={"postprocessing": "yolov5"})
    share, _ = share_matched(reference, found_by(user_store, wrong, few))
    assert share < 0.2


def _normalised(export_path: Path, kind: str, size: tuple[int, int], out: Path) -> Path:
    """A pixel-box single-tensor export with its boxes divided by the input size, as Ultralytics'
    TFLite and EdgeTPU exports (and YOLOv5's TF ones) give them."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(export_path))
    graph = model.graph
    final = graph.output[0]
    rows = final.type.tensor_type.shape.dim
    w, h = size
    if kind == "yolov8":  # 1 × (4+C) × N: scale the first four rows
        k = np.ones((1, rows[1].dim_value, 1), np.float32)
        k[0, :4, 0] = [1 / w, 1 / h, 1 / w, 1 / h]
    else:  # 1 × N × (5+C): scale the first four columns
        k = np.ones((1, 1, rows[2].dim_value), np.float32)
        k[0, 0, :4] = [1 / w, 1 / h, 1 / w, 1 / h]
    for node in graph.node:
        node.output[:] = [f"{o}_pixels" if o == final.name else o for o in node.output]
    graph.initializer.append(numpy_helper.from_array(k, "to_fractions"))
    graph.node.append(helper.make_node("Mul", [f"{final.name}_pixels", "to_fractions"], [final.name]))
    onnx.save(model, str(out))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["yolov8", "yolov5"])
def test_boxes_as_fractions_of_the_input_are_told_by_running_the_model(kind, user_store, nanodet, coco_labels,
                                                                       few, reference, tmp_path) -> None:
    """The same single tensor with boxes in pixels or as fractions: `models add` runs the model once
    and picks the head that reads them, which then finds what NanoDet finds; read the other way the
    boxes are wrong."""
    store, manifest = nanodet
    pixels = nanodet_as_yolo(store.path(manifest, "fp32"), manifest, kind, tmp_path / f"{kind}.onnx")
    fractions = _normalised(pixels, kind, manifest.input.size, tmp_path / f"{kind}-fractions.onnx")
    added = add(user_store, fractions, f"{kind}-fractions", coco_labels)
    assert added.postprocessing == f"{kind}_normalized"
    share, missed = share_matched(reference, found_by(user_store, added, few))
    assert share == 1.0, missed
    as_pixels = added.model_copy(update={"postprocessing": kind})
    share, _ = share_matched(reference, found_by(user_store, as_pixels, few))
    assert share < 0.2
    assert add(user_store, pixels, f"{kind}-pixels", coco_labels).postprocessing == kind


# -- labels: plain, numbered (from 0, from 1, sparse), YAML, a background column -------------------

@pytest.mark.slow
@pytest.mark.parametrize("case", ["coco-ids-from-1-rfdetr", "coral-ids-from-0", "ids-from-1-contiguous",
                                  "background-column", "data-yaml-dict", "n/a-lines"])
def test_label_files_map_ids_to_the_models_class_indices(case, export, user_store, nanodet, few, reference,
                                                         tmp_path) -> None:
    names = nanodet[1].labels
    labels = tmp_path / "labels.txt"
    if case == "coco-ids-from-1-rfdetr":  # RF-DETR: 91 columns, column = COCO category id (0 and gaps unused)
        columns = [COCO_IDS.index(i) if i in COCO_IDS else -1 for i in range(91)]
        model = export("detr", columns=columns)
        labels.write_text("".join(f"{cid} {names[k]}\n" for k, cid in enumerate(COCO_IDS)))
    elif case == "coral-ids-from-0":  # Coral's coco_labels.txt: "0  person", ids 0-89 with gaps
        columns = [COCO_IDS.index(i + 1) if i + 1 in COCO_IDS else -1 for i in range(90)]
        model = export("yolov8", columns=columns)
        labels.write_text("".join(f"{cid - 1}  {names[k]}\n" for k, cid in enumerate(COCO_IDS)))
    elif case == "ids-from-1-contiguous":  # "1 person" … "80 toothbrush" for an 80-class model: id - 1
        model = export("yolov8")
        labels.write_text("".join(f"{k + 1} {n}\n" for k, n in enumerate(names)))
    elif case == "background-column":  # a DETR with C+1 columns, the first one background
        model = export("detr", columns=[-1, *range(80)])
        labels.write_text("\n".join(names))
    elif case == "data-yaml-dict":
        model = export("yolo_nas")
        labels = tmp_path / "data.yaml"
        labels.write_text(yaml.safe_dump({"path": "../datasets/coco", "names": dict(enumerate(names))}))
    else:  # torchvision-style list: "N/A" lines keep their index
        columns = [COCO_IDS.index(i) if i in COCO_IDS else -1 for i in range(91)]
        model = export("yolov8", columns=columns)
        labels.write_text("\n".join(names[COCO_IDS.index(i)] if i in COCO_IDS else "N/A" for i in range(91)))
    added = add(user_store, model, "labels-" + re.sub(r"[^a-z0-9]+", "-", case), labels)
    assert set(added.labels) - {PLACEHOLDER, "N/A"} == set(names)
    share, missed = share_matched(reference, found_by(user_store, added, few))
    assert share == 1.0, missed


@pytest.mark.slow
def test_labels_off_by_one_break_the_match(export, user_store, nanodet, few, reference, tmp_path) -> None:
    names = nanodet[1].labels
    labels = tmp_path / "shifted.txt"
    labels.write_text("\n".join(names[1:] + names[:1]))  # a labels file one line out
    added = add(user_store, export("rknn_yolov8"), "labels-off-by-one", labels)
    share, _ = share_matched(reference, found_by(user_store, added, few))
    assert share < 0.2


@pytest.mark.slow
@pytest.mark.parametrize("kind, wrong, most", [
    ("rknn_yolov8", "0-255", 0.2), ("yolox", "0-1", 0.2),  # 255 times too bright, or too dark
    # ImageNet-normalised input fed 0-1: the network sees the photo at a quarter of its contrast and
    # still finds big objects, but far from all of them
    ("detr", "0-1", 0.8)])
def test_wrong_pixel_scaling_breaks_the_match(kind, wrong, most, export, user_store, coco_labels, few,
                                              reference) -> None:
    added = add(user_store, export(kind), f"scaling-{kind.replace('_', '-')}-{wrong}", coco_labels,
                kind=kind, input_range=wrong)
    share, missed = share_matched(reference, found_by(user_store, added, few))
    assert share < most, (share, missed)


@pytest.mark.slow
def test_a_wrong_decoder_breaks_the_match(export, user_store, coco_labels, few, reference) -> None:
    """YOLO-NAS's and DETR's outputs are both boxes + class columns; read with the other's decoder
    (forced past recognition, which refuses it) the boxes land elsewhere."""
    with pytest.raises(AddError, match="do not fit layout detr"):
        add(user_store, export("yolo_nas"), "nas-as-detr", coco_labels, kind="detr")
    right = add(user_store, export("yolo_nas"), "nas-right", coco_labels)
    wrong = right.model_copy(update={"postprocessing": "detr"})
    share, _ = share_matched(reference, found_by(user_store, wrong, few))
    assert share < 0.2


# -- refusals ----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_unknown_layout_is_refused_with_every_known_layout(nanodet, user_store, coco_labels) -> None:
    store, manifest = nanodet
    with pytest.raises(AddError) as err:  # NanoDet's own six outputs are no known export layout
        add(user_store, store.path(manifest, "fp32"), "raw-nanodet", coco_labels)
    text = str(err.value)
    assert all(f"  {kind}: " in text for kind in RECOGNISERS), text
    assert "Identity:0 [1x2704x80] float32" in text and "80 classes" in text


@pytest.mark.slow
def test_dfine_keeps_fp32_only_and_says_why(export, user_store, coco_labels, cache_dir) -> None:
    added = add_user_model(export("dfine"), "dfine-int8", coco_labels, user_store, cache_dir, int8=True)
    assert set(added.variants) == {"fp32"} and "orig_target_sizes" in added.quantization_report["reason"]


@pytest.mark.slow
def test_int8_is_made_and_judged_for_a_multi_output_layout(export, user_store, coco_labels, cache_dir) -> None:
    """The quantiser (Conv only) and its agreement gate work through the zoo's nine outputs."""
    added = add_user_model(export("rknn_yolov8"), "zoo-v8-int8", coco_labels, user_store, cache_dir, int8=True)
    q = added.quantization_report
    assert set(added.variants) == {"fp32", "int8"} and q["recipe"].startswith("user-onnx/")
    assert q["reference_detections"] >= MIN_REFERENCE, q
    assert_default_follows_measurement(added.default_variant, q, MIN_REFERENCE)


@pytest.mark.slow
def test_cli_adds_a_zoo_layout_and_names_the_yolox_layout(export, coco_labels, tmp_path) -> None:
    env = dict(os.environ, EDGEWATCH_DATA_DIR=str(tmp_path / "data"))
    for kind, name, extra in (("rknn_yolox", "zoo-yolox", []), ("yolox", "my-yolox", []),
                              ("yolov8", "forced-v8", ["--kind", "yolov8"])):
        proc = subprocess.run([sys.executable, "-m", "edgewatch.daemon.cli", "models", "add", str(export(kind)),
                               "--name", name, "--labels", str(coco_labels), "--no-int8", *extra],
                              capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stderr
        assert f"{name}: added ({kind}, 80 classes, input 416x416" in proc.stdout


# -- dequantised outputs, recognition from descriptions alone ---------------------------------------

def _quantised(out: np.ndarray, dtype: str, name: str) -> tuple[np.ndarray, TensorInfo]:
    """``out`` quantised per tensor over its own range, as an NPU's int8/uint8 output is, and its description."""
    lo, hi = min(float(out.min()), 0.0), max(float(out.max()), 0.0)
    qmin, qmax = (0, 255) if dtype == "uint8" else (-128, 127)
    scale = (hi - lo) / (qmax - qmin)
    zero = int(round(qmin - lo / scale))
    return np.clip(np.round(out / scale + zero), qmin, qmax).astype(dtype), TensorInfo(name, out.shape, dtype, scale,
                                                                                        zero)


def _same_detections(a, b) -> None:
    (ab, _, ac), (bb, _, bc) = a, b
    assert len(ab) >= 3 and ac.tolist() == bc.tolist()
    assert all(iou(box, bb[i:i + 1])[0] >= 0.9 for i, box in enumerate(ab))


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_quantised_outputs_dequantise_to_the_same_detections(dtype, export, images) -> None:
    """The zoo's nine per-stride tensors, each with its own scale and zero point (why the zoo splits
    them), and a single-tensor export with normalised boxes, so boxes and scores share one range."""
    layout = Layout("rknn_yolov8", "images", (416, 416), "nchw", "float32", "rgb", "0-1", 80)
    tensor, _ = letterbox(images["bus"], layout.input_spec(), layout.preprocessing())
    outs = ort.InferenceSession(str(export("rknn_yolov8")), providers=["CPUExecutionProvider"]).run(
        None, {"images": tensor})
    quantised = [_quantised(o, dtype, f"out{i}") for i, o in enumerate(outs)]
    back = dequantise_all([q for q, _ in quantised], [info for _, info in quantised])
    for (q, info), o, b in zip(quantised, outs, back):
        assert b.dtype == np.float32 and np.abs(b - o).max() <= info.scale / 2 + 1e-5
    _same_detections(decode("rknn_yolov8", outs, (416, 416), 0.4), decode("rknn_yolov8", back, (416, 416), 0.4))

    (rows,) = ort.InferenceSession(str(export("yolov5")), providers=["CPUExecutionProvider"]).run(
        None, {"images": tensor})
    rows[..., :4] /= 416  # a TF-style export: boxes as fractions of the input
    q, info = _quantised(rows, dtype, "Identity")
    _same_detections(decode("yolov5_normalized", [rows], (416, 416), 0.4),
                     decode("yolov5_normalized", [dequantise(q, info)], (416, 416), 0.4))


def _t(name: str, *shape: int | None, dtype: str = "float32") -> TensorInfo:
    return TensorInfo(name, tuple(shape), dtype)


IMAGE = _t("images", 1, 3, 640, 640)
AT_640 = {  # each layout's outputs at 640x640 with 80 classes, as the families export them
    "yolov5": [_t("output0", 1, 25200, 85)],
    "yolov8": [_t("output0", 1, 84, 8400)],
    "yolo_nas": [_t("boxes", 1, 8400, 4), _t("scores", 1, 8400, 80)],
    "detr": [_t("dets", 1, 300, 4), _t("labels", 1, 300, 81)],
    "dfine": [_t("labels", 1, 300, dtype="int64"), _t("boxes", 1, 300, 4), _t("scores", 1, 300)],
    "rknn_yolov8": [_t(f"{r}{s}", 1, c, 640 // s, 640 // s) for s in (8, 16, 32) for r, c in
                    (("box", 64), ("cls", 80), ("sum", 1))],
    "rknn_yolov5": [_t(f"out{s}", 1, 255, 640 // s, 640 // s) for s in (8, 16, 32)],
    "rknn_yolox": [_t(f"out{s}", 1, 85, 640 // s, 640 // s) for s in (8, 16, 32)],
}


@pytest.mark.parametrize("kind", list(AT_640))
def test_recognition_reads_descriptions_in_any_order(kind) -> None:
    inputs = [IMAGE, _t("orig_target_sizes", 1, 2, dtype="int64")] if kind == "dfine" else [IMAGE]
    for outputs in (AT_640[kind], AT_640[kind][::-1]):
        layout = recognise(inputs[::-1], outputs, 80)
        assert layout.kind == kind and layout.size == (640, 640) and layout.input_name == "images"
        assert layout.classes == (81 if kind == "detr" else 80)  # a background column first: 81
    if kind == "dfine":  # D-FINE outputs labels, not class columns: any class count fits
        assert recognise(inputs, AT_640[kind], 79).kind == "dfine"
    else:
        with pytest.raises(LayoutError, match="fit no known layout for 79 classes"):
            recognise(inputs, AT_640[kind], 79)


def test_forced_kind_is_checked_and_ties_are_reported() -> None:
    with pytest.raises(LayoutError, match="do not fit layout rknn_yolox") as err:
        recognise([IMAGE], AT_640["rknn_yolov5"], 80, kind="rknn_yolox")
    assert "out8 [1x255x80x80] float32" in str(err.value)  # what it saw, beside what each layout expects
    tie = recognise([IMAGE], [_t("output", 1, 8400, 85)], 80)
    assert tie.kind == "yolov5" and set(tie.also_fits) == {"yolox", "yolov5_normalized"}
    assert recognise([IMAGE], [_t("output", 1, 8400, 85)], 80, kind="yolox").kind == "yolox"
    nhwc = recognise([_t("in", 1, 320, 480, 3, dtype="uint8")], [_t("o", 1, 84, 3150)], 80)
    assert (nhwc.size, nhwc.layout, nhwc.dtype, nhwc.input_range) == ((480, 320), "nhwc", "uint8", "0-255")
    with pytest.raises(LayoutError, match="no image input"):
        recognise([_t("tokens", 1, 128, dtype="int64")], [_t("o", 1, 84, 8400)], 80)


def test_read_labels_formats(tmp_path) -> None:
    coral = tmp_path / "coral.txt"
    coral.write_text("0  person\n1  bicycle\n3  motorcycle\n")
    f = read_labels(coral)
    assert f.candidates() == [("person", "bicycle", PLACEHOLDER, "motorcycle")]
    one = tmp_path / "one.txt"
    one.write_text("1: person\n2: bicycle\n")
    assert read_labels(one).candidates() == [(PLACEHOLDER, "person", "bicycle"), ("person", "bicycle")]
    meta = tmp_path / "metadata.yaml"
    meta.write_text(yaml.safe_dump({"stride": 32, "names": {0: "person", 1: "bicycle"}}))
    assert read_labels(meta).candidates()[0] == ("person", "bicycle")
    dup = tmp_path / "dup.txt"
    dup.write_text("0 person\n0 bicycle\n")
    with pytest.raises(AddError, match="appears twice"):
        read_labels(dup)
