"""Real detectors in the output layouts owners bring, for testing layout recognition and decoding.

No registry package ships weights for these families, so the installed NanoDet network (real
weights) is wrapped into an ONNX graph that looks like each family's export from the outside:
the input convention of that family (written here from each family's own demo code, apart from
the product's table, so a wrong entry there shows), and its outputs, encoded the way the
family's decoder expects (the inverse of its decode: YOLOv5's sigmoid-space anchors, YOLOX's
grid-relative log sizes, YOLOv8's 16-bin DFL, DETR's normalised boxes and logits, D-FINE's
boxes scaled to ``orig_target_sizes``). A zoo layout's ONNX is what an .rknn is compiled from,
so the same graphs can go through the RKNN toolkit's simulator.

On the same photos each wrapped model must find what NanoDet finds, class for class, box for box.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edgewatch.models.manifest import ModelManifest
from edgewatch.models.runtime.heads import NANODET_REG_MAX, NANODET_STRIDES

# Each family's input convention: colour order and pixel scaling ((x · std + mean) gives 0–255 pixels).
CONVENTIONS: dict[str, tuple[str, str]] = {
    "yolov5": ("rgb", "0-1"),        # Ultralytics: RGB / 255
    "yolov8": ("rgb", "0-1"),
    "rknn_yolov8": ("rgb", "0-1"),   # rknn_model_zoo convert.py: mean 0, std 255, RGB
    "rknn_yolov5": ("rgb", "0-1"),
    "rknn_yolox": ("rgb", "0-255"),  # zoo yolox convert.py: mean 0, std 1; its demo converts to RGB
    "yolox": ("bgr", "0-255"),       # Megvii's demo: OpenCV BGR, no scaling
    "yolo_nas": ("rgb", "0-1"),      # super-gradients: StandardizeImage(255)
    "detr": ("rgb", "imagenet"),     # RF-DETR: ImageNet mean/std on RGB 0–1
    "dfine": ("rgb", "0-1"),         # D-FINE / DEIM: ToTensor only
}
_RANGES = {"0-1": ((0.0, 0.0, 0.0), (255.0, 255.0, 255.0)), "0-255": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
           "imagenet": ((0.485 * 255, 0.456 * 255, 0.406 * 255), (0.229 * 255, 0.224 * 255, 0.225 * 255))}
KINDS = tuple(CONVENTIONS)
QUERIES = 300          # DETR-style exports' query count
YOLOV5_ANCHORS = [[(10, 13), (16, 30), (33, 23)], [(30, 61), (62, 45), (59, 119)], [(116, 90), (156, 198), (373, 326)]]
DFL_BINS = 16          # YOLOv8's reg_max
# COCO category ids of the 80 classes, in NanoDet's order (as RF-DETR and Coral's label files number them).
COCO_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32,
            33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59,
            60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90)


class _Graph:
    """Nodes and constants appended to a model, with generated names."""

    def __init__(self, opset: int) -> None:
        self.opset, self.nodes, self.inits, self._n = opset, [], [], 0

    def _name(self, hint: str) -> str:
        self._n += 1
        return f"w{self._n}_{hint}"

    def const(self, value, dtype=np.float32) -> str:
        name = self._name("c")
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def op(self, op_type: str, *inputs: str, out: str | None = None, n_out: int = 1, **attrs):
        outs = [out or self._name(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, **attrs))
        return outs[0] if n_out == 1 else outs

    def reshape(self, x: str, shape: Sequence[int]) -> str:
        return self.op("Reshape", x, self.const(list(shape), np.int64))

    def reduce(self, op_type: str, x: str, axis: int, keepdims: int = 1) -> str:
        if op_type == "ReduceSum" or self.opset >= 18:  # ReduceSum takes axes as an input from opset 13
            return self.op(op_type, x, self.const([axis], np.int64), keepdims=keepdims)
        return self.op(op_type, x, axes=[axis], keepdims=keepdims)


def nanodet_roles(nanodet_onnx: Path, size: tuple[int, int]) -> list[tuple[int, str, str]]:
    """(stride, distribution output, scores output) of the NanoDet graph, paired by anchor count."""
    shapes = {o.name: tuple(o.shape) for o in ort.InferenceSession(str(nanodet_onnx), providers=[
        "CPUExecutionProvider"]).get_outputs()}
    bins = 4 * (NANODET_REG_MAX + 1)
    roles = []
    for stride in NANODET_STRIDES:
        hw = -(-size[0] // stride) * -(-size[1] // stride)
        roles.append((stride, next(n for n, s in shapes.items() if s[-2] == hw and s[-1] == bins),
                      next(n for n, s in shapes.items() if s[-2] == hw and s[-1] != bins)))
    return roles


def nanodet_as(nanodet_onnx: Path, manifest: ModelManifest, kind: str, out: Path, *,
               order: Sequence[int] | None = None, columns: Sequence[int] | None = None,
               nhwc: bool = False, uint8: bool = False) -> Path:
    """Write NanoDet wrapped as a ``kind`` export (see :data:`KINDS`) to ``out``.

    ``order`` permutes the outputs; ``columns`` gives, per class column of the export, the NanoDet
    class it carries (-1: a class no photo has, scored 0), e.g. COCO category ids with gaps;
    ``nhwc``/``uint8`` change the image input to 1×H×W×3 / raw 0–255 pixels."""
    assert manifest.input.layout == "nchw" and manifest.preprocessing.color == "bgr"
    w, h = manifest.input.size
    model = onnx.load(str(nanodet_onnx))
    graph = model.graph
    inner_input = graph.input[0].name
    g = _Graph(next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")))

    # images (the family's convention) → NanoDet's input (BGR, (pixel − mean) / std)
    color, scaling = CONVENTIONS[kind]
    x = "images"
    if nhwc:
        x = g.op("Transpose", x, perm=[0, 3, 1, 2])
    if uint8:
        x = g.op("Cast", x, to=TensorProto.FLOAT)
    else:
        mean, std = _RANGES[scaling]
        x = g.op("Add", g.op("Mul", x, g.const(np.reshape(std, (1, 3, 1, 1)))), g.const(np.reshape(mean, (1, 3, 1, 1))))
    if color == "rgb":
        x = g.op("Gather", x, g.const([2, 1, 0], np.int64), axis=1)
    pre = manifest.preprocessing
    g.op("Div", g.op("Sub", x, g.const(np.reshape(pre.mean, (1, 3, 1, 1)))), g.const(np.reshape(pre.std, (1, 3, 1, 1))),
         out=inner_input)
    pre_nodes, g.nodes = g.nodes, []
    outputs = _head(g, kind, nanodet_roles(nanodet_onnx, (w, h)), (w, h), columns, len(manifest.labels))
    if order is not None:
        outputs = [outputs[i] for i in order]

    nodes = [*pre_nodes, *graph.node, *g.nodes]  # topological order: preprocessing, NanoDet, the head
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(g.inits)
    shape = [1, h, w, 3] if nhwc else [1, 3, h, w]
    del graph.input[0]
    graph.input.insert(0, helper.make_tensor_value_info("images", TensorProto.UINT8 if uint8 else TensorProto.FLOAT,
                                                        shape))
    if kind == "dfine":
        graph.input.append(helper.make_tensor_value_info("orig_target_sizes", TensorProto.INT64, [1, 2]))
    del graph.output[:]
    graph.output.extend(helper.make_tensor_value_info(name, dtype, dims) for name, dtype, dims in outputs)
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    return out


def layout_head(nanodet_onnx: Path, manifest: ModelManifest, kind: str, out: Path, size: tuple[int, int]) -> Path:
    """Only the ``kind`` head, for a (w, h) input NanoDet's fixed graph does not take: its inputs are
    NanoDet's raw outputs at that size (named as NanoDet names them), its outputs the layout's.
    bench/postprocess.py feeds it NanoDet's maps of a photo resampled to 640×640."""
    model = onnx.load(str(nanodet_onnx))
    g = _Graph(next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")))
    roles = nanodet_roles(nanodet_onnx, manifest.input.size)
    outputs = _head(g, kind, roles, size, None, len(manifest.labels))
    inputs = []
    for stride, dist, score in roles:
        hw = -(-size[0] // stride) * -(-size[1] // stride)
        inputs += [helper.make_tensor_value_info(dist, TensorProto.FLOAT, [1, hw, 4 * (NANODET_REG_MAX + 1)]),
                   helper.make_tensor_value_info(score, TensorProto.FLOAT, [1, hw, len(manifest.labels)])]
    if kind == "dfine":
        inputs.append(helper.make_tensor_value_info("orig_target_sizes", TensorProto.INT64, [1, 2]))
    graph = helper.make_graph(g.nodes, f"{kind}_head", inputs,
                              [helper.make_tensor_value_info(n, t, d) for n, t, d in outputs], g.inits)
    head = helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    onnx.checker.check_model(head)
    onnx.save(head, str(out))
    return out


def _head(g: _Graph, kind: str, roles: list[tuple[int, str, str]], size: tuple[int, int],
          columns: Sequence[int] | None, labels: int) -> list[Output]:
    """The per-stride values every layout is made of (boxes, class probabilities, objectness), then
    ``kind``'s encoding of them."""
    w, h = size
    bins = NANODET_REG_MAX + 1
    cmap = np.asarray(columns if columns is not None else range(labels), np.int64)
    levels = []
    for stride, dist, score in roles:
        fw, fh = -(-w // stride), -(-h // stride)
        hw = fw * fh
        cell = np.stack(np.meshgrid(np.arange(fw), np.arange(fh)), axis=-1).reshape(1, hw, 2).astype(np.float32)
        d4 = g.reshape(dist, [1, hw, 4, bins])
        e = g.op("MatMul", g.op("Softmax", d4, axis=-1), g.const(np.arange(bins).reshape(bins, 1)))
        ltrb = g.op("Mul", g.reshape(e, [1, hw, 4]), g.const(stride))
        lt, rb = g.op("Split", ltrb, axis=2, n_out=2, **({"num_outputs": 2} if g.opset >= 18 else {}))
        centre = g.const((cell + 0.5) * stride)
        x1y1, x2y2 = g.op("Sub", centre, lt), g.op("Add", centre, rb)
        probs = g.op("Concat", score, g.const(np.zeros((1, hw, 1))), axis=2)  # column `labels`: a class never seen
        probs = g.op("Gather", probs, g.const(np.where(cmap < 0, labels, cmap), np.int64), axis=2)
        obj = g.reduce("ReduceMax", probs, 2)
        levels.append({
            "stride": stride, "fw": fw, "fh": fh, "hw": hw, "d4": d4, "cell": cell, "probs": probs, "obj": obj,
            "xyxy": g.op("Concat", x1y1, x2y2, axis=2),
            "cxcy": g.op("Mul", g.op("Add", x1y1, x2y2), g.const(0.5)), "wh": g.op("Sub", x2y2, x1y1),
            "cls": g.op("Div", probs, g.op("Max", obj, g.const(1e-9))),  # objectness × class = NanoDet's score
        })
    return _HEADS[kind](g, levels, len(cmap), size)


Output = tuple[str, int, list[int]]  # graph output: name, element type, shape


def _yolov5_anchor_rows(g: _Graph, lv: dict, anchor: int, xy: str, wh: str) -> str:
    """One anchor's rows [1, 1, HW, 5+C]: objectness on every third cell only (the anchor that
    'owns' the object), so each anchor index carries real detections."""
    mask = (np.arange(lv["hw"]) % 3 == anchor).astype(np.float32).reshape(1, lv["hw"], 1)
    rows = g.op("Concat", xy, wh, g.op("Mul", lv["obj"], g.const(mask)), lv["cls"], axis=2)
    return g.op("Unsqueeze", rows, g.const([1], np.int64))


def _head_yolov5(g: _Graph, levels: list[dict], c: int, size) -> list[Output]:
    """Ultralytics YOLOv5: [1, 3·cells, 5+C] rows of cx, cy, w, h (pixels), objectness, class probability."""
    parts = []
    for lv in levels:
        anchors = [_yolov5_anchor_rows(g, lv, a, lv["cxcy"], lv["wh"]) for a in range(3)]
        parts.append(g.reshape(g.op("Concat", *anchors, axis=1), [1, 3 * lv["hw"], 5 + c]))
    n = 3 * sum(lv["hw"] for lv in levels)
    return [(g.op("Concat", *parts, axis=1, out="output0"), TensorProto.FLOAT, [1, n, 5 + c])]


def _head_yolov8(g: _Graph, levels: list[dict], c: int, size) -> list[Output]:
    rows = g.op("Concat", *[g.op("Concat", lv["cxcy"], lv["wh"], lv["probs"], axis=2) for lv in levels], axis=1)
    n = sum(lv["hw"] for lv in levels)
    return [(g.op("Transpose", rows, perm=[0, 2, 1], out="output0"), TensorProto.FLOAT, [1, 4 + c, n])]


def _yolox_rows(g: _Graph, lv: dict) -> str:
    """[1, HW, 5+C]: x, y in cells from the cell's corner, log(w, h / stride), objectness, class probability."""
    s = g.const(lv["stride"])
    xy = g.op("Sub", g.op("Div", lv["cxcy"], s), g.const(lv["cell"]))
    wh = g.op("Log", g.op("Max", g.op("Div", lv["wh"], s), g.const(1e-6)))
    return g.op("Concat", xy, wh, lv["obj"], lv["cls"], axis=2)


def _head_yolox(g: _Graph, levels: list[dict], c: int, size) -> list[Output]:
    n = sum(lv["hw"] for lv in levels)
    return [(g.op("Concat", *[_yolox_rows(g, lv) for lv in levels], axis=1, out="output"), TensorProto.FLOAT,
             [1, n, 5 + c])]


def _nchw(g: _Graph, rows: str, lv: dict, channels: int, out: str) -> Output:
    """[1, HW, K] rows → the [1, K, H, W] map a convolution head gives."""
    t = g.op("Transpose", rows, perm=[0, 2, 1])
    return g.op("Reshape", t, g.const([1, channels, lv["fh"], lv["fw"]], np.int64), out=out), TensorProto.FLOAT, \
        [1, channels, lv["fh"], lv["fw"]]


def _head_rknn_yolox(g: _Graph, levels: list[dict], c: int, size) -> list[Output]:
    return [_nchw(g, _yolox_rows(g, lv), lv, 5 + c, f"output_s{lv['stride']}") for lv in levels]


def _head_rknn_yolov5(g: _Graph, levels: list[dict], c: int, size) -> list[Output]:
    """Per stride [1, 3·(5+C), H, W], anchor-major, in sigmoid space: xy = (2v − 0.5 + cell)·stride,
    wh = (2v)²·anchor solved for v."""
    outs = []
    for lv, anchors in zip(levels, YOLOV5_ANCHORS):
        s = g.const(lv["stride"])
        xy = g.op("Div", g.op("Add", g.op("Sub", g.op("Div", lv["cxcy"], s), g.const(lv["cell"])), g.const(0.5)),
                  g.const(2.0))
        per_anchor = []
        for a, (aw, ah) in enumerate(anchors):
            wh = g.op("Div", g.op("Sqrt", g.op("Div", lv["wh"], g.const([[[aw, ah]]]))), g.const(2.0))
            per_anchor.append(_yolov5_anchor_rows(g, lv, a, xy, wh))
        rows = g.op("Transpose", g.op("Concat", *per_anchor, axis=1), perm=[0, 1, 3, 2])  # 1 × 3 × (5+C) × HW
        name = f"output_s{lv['stride']}"
        outs.append((g.op("Reshape", rows, g.const([1, 3 * (5 + c), lv["fh"], lv["fw"]], np.int64), out=name),
                     TensorProto.FLOAT, [1, 3 * (5 + c), lv["fh"], lv["fw"]]))
    return outs


def _head_rknn_yolov8(g: _Graph, levels: list[dict], c: int, size) -> list[Output]:
    """Per stride: DFL [1,64,H,W] (NanoDet's 11 bins, the 5 more YOLOv8 has made negligible),
    class scores [1,C,H,W], their sum clipped to 1 [1,1,H,W]: the zoo's order."""
    outs = []
    for lv in levels:
        low = g.op("Sub", g.reduce("ReduceMin", lv["d4"], 3), g.const(20.0))  # e^-20 of the smallest bin
        d16 = g.op("Concat", lv["d4"], *[low] * (DFL_BINS - NANODET_REG_MAX - 1), axis=3)
        st = lv["stride"]
        total = g.op("Clip", g.reduce("ReduceSum", lv["probs"], 2), g.const(0.0), g.const(1.0))
        outs += [_nchw(g, g.reshape(d16, [1, lv["hw"], 4 * DFL_BINS]), lv, 4 * DFL_BINS, f"box_s{st}"),
                 _nchw(g, lv["probs"], lv, c, f"cls_s{st}"), _nchw(g, total, lv, 1, f"score_sum_s{st}")]
    return outs


def _head_yolo_nas(g: _Graph, levels: list[dict], c: int, size) -> list[Output]:
    n = sum(lv["hw"] for lv in levels)
    return [(g.op("Concat", *[lv["xyxy"] for lv in levels], axis=1, out="boxes"), TensorProto.FLOAT, [1, n, 4]),
            (g.op("Concat", *[lv["probs"] for lv in levels], axis=1, out="scores"), TensorProto.FLOAT, [1, n, c])]


def _top_queries(g: _Graph, levels: list[dict]) -> tuple[str, str, str, str, int]:
    """The QUERIES best anchors (a DETR's queries): their xyxy, class probabilities, best score, index."""
    n = sum(lv["hw"] for lv in levels)
    q = min(QUERIES, n)
    xyxy = g.op("Concat", *[lv["xyxy"] for lv in levels], axis=1)
    probs = g.op("Concat", *[lv["probs"] for lv in levels], axis=1)
    best = g.reduce("ReduceMax", probs, 2, keepdims=0)
    values, idx = g.op("TopK", best, g.const([q], np.int64), axis=1, n_out=2)
    flat = g.reshape(idx, [q])
    return g.op("Gather", xyxy, flat, axis=1), g.op("Gather", probs, flat, axis=1), values, flat, q


def _head_detr(g: _Graph, levels: list[dict], c: int, size) -> list[Output]:
    """RF-DETR: dets [1,Q,4] cx,cy,w,h as fractions of the input, labels [1,Q,C] logits."""
    xyxy, probs, _, _, q = _top_queries(g, levels)
    w, h = size
    x1y1, x2y2 = g.op("Split", xyxy, axis=2, n_out=2, **({"num_outputs": 2} if g.opset >= 18 else {}))
    cxcy = g.op("Mul", g.op("Add", x1y1, x2y2), g.const([[[0.5 / w, 0.5 / h]]]))
    wh = g.op("Div", g.op("Sub", x2y2, x1y1), g.const([[[w, h]]]))
    p = g.op("Clip", probs, g.const(1e-6), g.const(1 - 1e-6))
    logits = g.op("Log", g.op("Div", p, g.op("Sub", g.const(1.0), p)))
    return [(g.op("Concat", cxcy, wh, axis=2, out="dets"), TensorProto.FLOAT, [1, q, 4]),
            (g.op("Identity", logits, out="labels"), TensorProto.FLOAT, [1, q, c])]


def _head_dfine(g: _Graph, levels: list[dict], c: int, size) -> list[Output]:
    """D-FINE deploy: labels [1,Q] int64, boxes [1,Q,4] x1,y1,x2,y2 scaled to orig_target_sizes, scores [1,Q]."""
    xyxy, probs, values, _, q = _top_queries(g, levels)
    w, h = size
    wh = g.op("Cast", g.op("Concat", "orig_target_sizes", "orig_target_sizes", axis=1), to=TensorProto.FLOAT)
    scale = g.op("Div", g.reshape(wh, [1, 1, 4]), g.const([[[w, h, w, h]]]))
    return [(g.op("ArgMax", probs, axis=2, keepdims=0, out="labels"), TensorProto.INT64, [1, q]),
            (g.op("Mul", xyxy, scale, out="boxes"), TensorProto.FLOAT, [1, q, 4]),
            (g.op("Identity", values, out="scores"), TensorProto.FLOAT, [1, q])]


_HEADS = {"yolov5": _head_yolov5, "yolov8": _head_yolov8, "yolox": _head_yolox, "yolo_nas": _head_yolo_nas,
          "detr": _head_detr, "dfine": _head_dfine, "rknn_yolov8": _head_rknn_yolov8,
          "rknn_yolov5": _head_rknn_yolov5, "rknn_yolox": _head_rknn_yolox}
