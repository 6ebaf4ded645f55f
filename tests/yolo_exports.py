"""Real detectors in the layout of a user's own YOLO export, for testing `edgewatch models add`.

No registry package ships YOLOv5/YOLOv8 weights, so the test wraps the installed NanoDet
network (real weights) into a graph that looks like an Ultralytics export from the outside:
input ``images`` 1×3×H×W RGB scaled to 0–1; output ``output0`` 1×(4+C)×N (YOLOv8: cx, cy, w, h,
class scores) or 1×N×(5+C) (YOLOv5: cx, cy, w, h, objectness, class scores), boxes in input
pixels. The NanoDet normalisation and GFL box decoding are done inside the graph, with the
manifest's own constants.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, compose, helper, numpy_helper

from edgewatch.models.manifest import ModelManifest
from edgewatch.models.postprocess import NANODET_REG_MAX, NANODET_STRIDES


def _const(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(value, name)


def nanodet_as_yolo(nanodet_onnx: Path, manifest: ModelManifest, kind: str, out: Path) -> Path:
    """Write ``nanodet_onnx`` wrapped as a ``kind`` ("yolov5" or "yolov8") export to ``out``."""
    assert manifest.input.layout == "nchw" and manifest.preprocessing.color == "bgr"
    w, h = manifest.input.size
    inner = onnx.load(str(nanodet_onnx))
    inner_input = inner.graph.input[0].name
    opset = next(o.version for o in inner.opset_import if o.domain in ("", "ai.onnx"))

    # images (RGB, 0–1) → the network's own input (BGR, (x·255 − mean) / std)
    pre = manifest.preprocessing
    mean = np.asarray(pre.mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(pre.std, np.float32).reshape(1, 3, 1, 1)
    pre_graph = helper.make_graph(
        [helper.make_node("Gather", ["images", "bgr_order"], ["bgr"], axis=1),
         helper.make_node("Mul", ["bgr", "k255"], ["bgr255"]),
         helper.make_node("Sub", ["bgr255", "mean"], ["centred"]),
         helper.make_node("Div", ["centred", "std"], ["normalised"])],
        "yolo_pre", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, h, w])],
        [helper.make_tensor_value_info("normalised", TensorProto.FLOAT, [1, 3, h, w])],
        [_const("bgr_order", np.array([2, 1, 0], np.int64)), _const("k255", np.array(255, np.float32)),
         _const("mean", mean), _const("std", std)])
    pre_model = helper.make_model(pre_graph, opset_imports=list(inner.opset_import), ir_version=inner.ir_version)
    model = compose.merge_models(pre_model, inner, io_map=[("normalised", inner_input)])
    unique = {o.domain: o.version for o in model.opset_import}  # merge_models lists shared domains twice
    del model.opset_import[:]
    model.opset_import.extend(helper.make_opsetid(d, v) for d, v in unique.items())

    # Which network output is which: run it once and pair scores with distributions by anchor count.
    session = ort.InferenceSession(str(nanodet_onnx), providers=["CPUExecutionProvider"])
    shapes = {o.name: a.shape for o, a in zip(session.get_outputs(),
                                              session.run(None, {inner_input: np.zeros((1, 3, h, w), np.float32)}))}
    bins = 4 * (NANODET_REG_MAX + 1)
    nodes, inits, boxes, scores = [], [], [], []
    for stride in NANODET_STRIDES:
        fw, fh = -(-w // stride), -(-h // stride)
        hw = fw * fh
        dist = next(n for n, s in shapes.items() if s[-2] == hw and s[-1] == bins)
        score = next(n for n, s in shapes.items() if s[-2] == hw and s[-1] != bins)
        grid = np.stack(np.meshgrid(np.arange(fw), np.arange(fh)), axis=-1).reshape(1, hw, 2)
        s = f"s{stride}"
        inits += [
            _const(f"{s}_shape", np.array([1, hw, 4, NANODET_REG_MAX + 1], np.int64)),
            _const(f"{s}_bins", np.arange(NANODET_REG_MAX + 1, dtype=np.float32).reshape(-1, 1)),
            _const(f"{s}_flat", np.array([1, hw, 4], np.int64)),
            _const(f"{s}_stride", np.array(stride, np.float32)),
            _const(f"{s}_centre", ((grid + 0.5) * stride).astype(np.float32)),
        ]
        nodes += [
            helper.make_node("Reshape", [dist, f"{s}_shape"], [f"{s}_d4"]),
            helper.make_node("Softmax", [f"{s}_d4"], [f"{s}_p"], axis=-1),
            helper.make_node("MatMul", [f"{s}_p", f"{s}_bins"], [f"{s}_e"]),
            helper.make_node("Reshape", [f"{s}_e", f"{s}_flat"], [f"{s}_e3"]),
            helper.make_node("Mul", [f"{s}_e3", f"{s}_stride"], [f"{s}_ltrb"]),
            helper.make_node("Split", [f"{s}_ltrb"], [f"{s}_lt", f"{s}_rb"], axis=2, num_outputs=2)
            if opset >= 18 else helper.make_node("Split", [f"{s}_ltrb"], [f"{s}_lt", f"{s}_rb"], axis=2),
            helper.make_node("Sub", [f"{s}_centre", f"{s}_lt"], [f"{s}_x1y1"]),
            helper.make_node("Add", [f"{s}_centre", f"{s}_rb"], [f"{s}_x2y2"]),
            helper.make_node("Add", [f"{s}_x1y1", f"{s}_x2y2"], [f"{s}_sum"]),
            helper.make_node("Mul", [f"{s}_sum", "half"], [f"{s}_cxcy"]),
            helper.make_node("Sub", [f"{s}_x2y2", f"{s}_x1y1"], [f"{s}_wh"]),
            helper.make_node("Concat", [f"{s}_cxcy", f"{s}_wh"], [f"{s}_box"], axis=2),
        ]
        boxes.append(f"{s}_box")
        scores.append(score)
    n = sum(-(-w // s) * -(-h // s) for s in NANODET_STRIDES)
    classes = len(manifest.labels)
    inits.append(_const("half", np.array(0.5, np.float32)))
    nodes += [helper.make_node("Concat", boxes, ["boxes"], axis=1),
              helper.make_node("Concat", scores, ["class_scores"], axis=1)]
    if kind == "yolov8":
        nodes += [helper.make_node("Concat", ["boxes", "class_scores"], ["rows"], axis=2),
                  helper.make_node("Transpose", ["rows"], ["output0"], perm=[0, 2, 1])]
        out_shape = [1, 4 + classes, n]
    else:  # yolov5: objectness × class probability = the class score
        nodes += [helper.make_node("ReduceMax", ["class_scores"], ["objectness"], axes=[2], keepdims=1)
                  if opset < 18 else helper.make_node("ReduceMax", ["class_scores", "axis2"], ["objectness"], keepdims=1),
                  helper.make_node("Max", ["objectness", "tiny"], ["objectness_safe"]),
                  helper.make_node("Div", ["class_scores", "objectness_safe"], ["class_prob"]),
                  helper.make_node("Concat", ["boxes", "objectness", "class_prob"], ["output0"], axis=2)]
        inits += [_const("axis2", np.array([2], np.int64)), _const("tiny", np.array(1e-9, np.float32))]
        out_shape = [1, n, 5 + classes]
    graph = model.graph
    graph.node.extend(nodes)
    graph.initializer.extend(inits)
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("output0", TensorProto.FLOAT, out_shape))
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    return out
