"""Decoders for the output layouts of detectors that owners bring (`edgewatch models add`).

Each decoder takes the raw outputs (float arrays, in whatever order the file lists them), the
input size (w, h) and the score threshold, and returns boxes N×4 x1,y1,x2,y2 in input pixels,
scores and class ids before NMS, like every detection head in :mod:`.heads`. Outputs are told
apart by their shapes (and, for D-FINE, their dtype), never by their order alone; order only
breaks a tie the shapes leave (e.g. a 64-class zoo YOLOv8, whose class and box tensors look
alike). Every decoder drops cells below ``min_conf`` before the costly part (DFL softmax,
exp, sigmoid of a whole tensor).

Quantised outputs (an NPU's int8/uint8) are turned into floats first with :func:`dequantise`.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from edgewatch.models.tensor_info import TensorInfo

Decoded = tuple[np.ndarray, np.ndarray, np.ndarray]

STRIDES = (8, 16, 32)
STRIDES_P6 = (8, 16, 32, 64)
# rknn_model_zoo's anchors_yolov5.txt (YOLOv5's defaults): per stride 8/16/32, three (w, h) in pixels.
ZOO_YOLOV5_ANCHORS = np.array([[[10, 13], [16, 30], [33, 23]],
                               [[30, 61], [62, 45], [59, 119]],
                               [[116, 90], [156, 198], [373, 326]]], np.float32)


def _empty() -> Decoded:
    return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)


def _concat(parts: list[Decoded]) -> Decoded:
    if not parts:
        return _empty()
    boxes, scores, classes = zip(*parts)
    return (np.concatenate(boxes).astype(np.float32, copy=False), np.concatenate(scores).astype(np.float32, copy=False),
            np.concatenate(classes).astype(np.int64, copy=False))


# -- quantised outputs ---------------------------------------------------------------------------

def dequantise(array: np.ndarray, info: TensorInfo) -> np.ndarray:
    """``array`` as float32: ``scale * (q - zero_point)`` for a quantised tensor (int8/uint8 in one
    SIMD pass of OpenCV's, several times faster than numpy's three), unchanged when already float32."""
    if not info.quantised:
        return array.astype(np.float32, copy=False)
    scale, zero = float(info.scale), int(info.zero_point or 0)  # type: ignore[arg-type]
    if array.dtype in (np.uint8, np.int8) and array.ndim and array.size:
        flat = np.ascontiguousarray(array).reshape(-1, array.shape[-1])
        return cv2.addWeighted(flat, scale, flat, 0.0, -zero * scale, dtype=cv2.CV_32F).reshape(array.shape)
    return (scale * (array.astype(np.float32) - zero)).astype(np.float32)


def dequantise_all(outputs: list[np.ndarray], infos: list[TensorInfo]) -> list[np.ndarray]:
    """:func:`dequantise` each output with the description of the same position."""
    return [dequantise(o, i) for o, i in zip(outputs, infos)]


# -- grids ---------------------------------------------------------------------------------------

def grid(size: tuple[int, int], stride: int) -> tuple[int, int]:
    """(cells across, cells down) of a ``stride`` feature map of a (w, h) input."""
    return -(-size[0] // stride), -(-size[1] // stride)


def cells(size: tuple[int, int], strides: tuple[int, ...] = STRIDES) -> int:
    """Grid cells over all ``strides`` of a (w, h) input: the N of one-row-per-cell exports (8400 at 640×640)."""
    return sum(gw * gh for gw, gh in (grid(size, s) for s in strides))


def stride_of(grid_w: int, grid_h: int, size: tuple[int, int]) -> int:
    """The stride that gives a grid_w × grid_h map of a (w, h) input."""
    for s in STRIDES_P6:
        if grid(size, s) == (grid_w, grid_h):
            return s
    raise ValueError(f"a {grid_w}x{grid_h} output fits no stride of 8/16/32/64 for a {size[0]}x{size[1]} input")


@lru_cache(maxsize=16)
def cell_grid(size: tuple[int, int], strides: tuple[int, ...] = STRIDES, floor: bool = False
              ) -> tuple[np.ndarray, np.ndarray]:
    """For rows ordered stride by stride, row-major within each: cell (x, y) N×2 and stride N.
    ``floor``: maps that drop a partial last cell (some exporters') instead of padding it."""
    xy, st = [], []
    for s in strides:
        gw, gh = (size[0] // s, size[1] // s) if floor else grid(size, s)
        ys, xs = np.divmod(np.arange(gw * gh), gw)
        xy.append(np.stack([xs, ys], axis=1))
        st.append(np.full(gw * gh, s))
    return np.concatenate(xy).astype(np.float32), np.concatenate(st).astype(np.float32)


def _levels(outputs: list[np.ndarray], size: tuple[int, int]) -> list[tuple[int, list[np.ndarray]]]:
    """NCHW per-stride outputs grouped by their H×W, finest first: [(stride, tensors in file order)]."""
    groups: dict[tuple[int, int], list[np.ndarray]] = {}
    for out in outputs:
        if out.ndim != 4:
            raise ValueError(f"expected 4-D per-stride outputs [1,C,H,W], got {[o.shape for o in outputs]}")
        groups.setdefault((out.shape[3], out.shape[2]), []).append(out)
    return sorted(((stride_of(gw, gh, size), group) for (gw, gh), group in groups.items()), key=lambda g: g[0])


def row_max(a: np.ndarray) -> np.ndarray:
    """Each row's maximum. numpy reduces a short contiguous last axis (80 classes) about 7x slower
    than it reduces across rows, so a C-contiguous float32 matrix is transposed first (OpenCV's
    transpose is blocked and cheap): 0.26 ms instead of 0.55 for 8400×80 here."""
    if a.dtype == np.float32 and a.ndim == 2 and a.flags.c_contiguous and a.shape[1] > 1:
        return cv2.transpose(a).max(axis=0)
    return a.max(axis=1)


def best_per_row(scores: np.ndarray, min_conf: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of a K×C score matrix whose best class reaches ``min_conf``: (row indices, best score,
    class). The max is a fast pass; the argmax, a slow one, runs on the kept rows only."""
    best = row_max(scores)
    keep = np.flatnonzero(best >= min_conf)
    return keep, best[keep], scores[keep].argmax(axis=1)


def _best_columns(scores: np.ndarray, min_conf: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`best_per_row` of a C×K matrix (a [1,C,H,W] map's classes by cells), without transposing it."""
    best = scores.max(axis=0)
    keep = np.flatnonzero(best >= min_conf)
    return keep, best[keep], scores[:, keep].argmax(axis=0)


def dfl_distances(logits: np.ndarray) -> np.ndarray:
    """Distribution focal loss boxes: per side, the expected bin of the softmax over the last axis
    (K × 4 × bins logits → K × 4 distances, in strides; NanoDet's GFL and YOLOv8's DFL alike)."""
    dist = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (dist @ np.arange(logits.shape[-1], dtype=np.float32)) / dist.sum(axis=-1)


def _from_centre(cxcy: np.ndarray, wh: np.ndarray) -> np.ndarray:
    return np.concatenate([cxcy - wh / 2, cxcy + wh / 2], axis=1)


# -- rknn_model_zoo ------------------------------------------------------------------------------

def _zoo_v8_roles(group: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(DFL box [1,64,H,W], class scores [1,C,H,W], score sum [1,1,H,W] or None) of one stride.
    By channels; when C is 64 or 1 the shapes tie and the zoo's order box, classes, sum decides."""
    if len(group) not in (2, 3):
        raise ValueError(f"a zoo YOLOv8 stride has 2 or 3 outputs (box, classes[, score sum]), not {len(group)}")
    rest = list(group)
    total = None
    if len(group) == 3:
        total = next((o for o in reversed(rest) if o.shape[1] == 1), None)
        if total is None:
            raise ValueError(f"no [1,1,H,W] score sum among {[o.shape for o in group]}")
        rest = [o for o in rest if o is not total]
    box = next((o for o in rest if o.shape[1] == 64), None)
    if box is None:
        raise ValueError(f"no [1,64,H,W] DFL box output among {[o.shape for o in group]}")
    cls = next(o for o in rest if o is not box)
    return box, cls, total


def decode_rknn_yolov8(outputs: list[np.ndarray], input_size: tuple[int, int], min_conf: float) -> Decoded:
    """rknn_model_zoo YOLOv8/YOLO11: per stride a DFL box tensor [1,64,H,W] (l, t, r, b × 16 bins),
    class scores [1,C,H,W] (sigmoid applied) and, in the 9-output export, their clipped sum
    [1,1,H,W]. The sum bounds every class score, so cells under ``min_conf`` go before anything else."""
    parts = []
    for stride, group in _levels(outputs, input_size):
        box, cls, total = _zoo_v8_roles(group)
        gw = box.shape[3]
        cls = cls.reshape(cls.shape[1], -1)
        cand = np.flatnonzero(total.reshape(-1) >= min_conf) if total is not None else None
        if cand is not None and cand.size <= cls.shape[1] // 8:
            keep, best, klass = _best_columns(cls[:, cand], min_conf)
            cand = cand[keep]
        else:  # no sum, or a weak bound (many small class scores add up): one pass over every cell is faster
            cand, best, klass = _best_columns(cls, min_conf)
        if cand.size == 0:
            continue
        bins = box.shape[1] // 4
        # 4 sides × bins × kept cells → kept cells × 4 sides × bins
        ltrb = dfl_distances(box.reshape(4, bins, -1)[:, :, cand].astype(np.float32).transpose(2, 0, 1)).T * stride
        cx, cy = (cand % gw + 0.5) * stride, (cand // gw + 0.5) * stride
        parts.append((np.stack([cx - ltrb[0], cy - ltrb[1], cx + ltrb[2], cy + ltrb[3]], axis=1), best, klass))
    return _concat(parts)


def decode_rknn_yolov5(outputs: list[np.ndarray], input_size: tuple[int, int], min_conf: float) -> Decoded:
    """rknn_model_zoo YOLOv5 (airockchip's export): per stride [1, 3·(5+C), H, W], anchor by anchor
    x, y, w, h, objectness, C class scores, all through the sigmoid already (the zoo's demo applies
    none): xy = (2v − 0.5 + cell)·stride, wh = (2v)²·anchor, score = objectness × class, with the
    zoo's anchors (:data:`ZOO_YOLOV5_ANCHORS`)."""
    parts = []
    levels = _levels(outputs, input_size)
    if len(levels) != len(ZOO_YOLOV5_ANCHORS):
        raise ValueError(f"zoo YOLOv5 has 3 strides (8/16/32), got {[s for s, _ in levels]}")
    for (stride, (t, *more)), anchors in zip(levels, ZOO_YOLOV5_ANCHORS):
        if more:
            raise ValueError(f"zoo YOLOv5 has one output per stride, got {len(more) + 1} at stride {stride}")
        gw = t.shape[3]
        t = t.reshape(3, t.shape[1] // 3, -1)  # anchor × (5 + C) × cell
        a, cell = np.nonzero(t[:, 4, :] >= min_conf)  # objectness bounds the score
        if a.size == 0:
            continue
        rows = t[a, :, cell].astype(np.float32)  # kept × (5 + C)
        keep, best, klass = best_per_row(rows[:, 5:] * rows[:, 4:5], min_conf)
        if keep.size == 0:
            continue
        rows, a, cell = rows[keep], a[keep], cell[keep]
        xy = (rows[:, :2] * 2 - 0.5 + np.stack([cell % gw, cell // gw], axis=1)) * stride
        wh = (rows[:, 2:4] * 2) ** 2 * anchors[a]
        parts.append((_from_centre(xy, wh), best, klass))
    return _concat(parts)


def decode_rknn_yolox(outputs: list[np.ndarray], input_size: tuple[int, int], min_conf: float) -> Decoded:
    """rknn_model_zoo YOLOX: per stride [1, 5+C, H, W] of x, y, w, h (grid-relative), objectness
    and class scores (sigmoid applied): xy = (v + cell)·stride, wh = exp(v)·stride, score = obj × class."""
    parts = []
    for stride, (t, *more) in _levels(outputs, input_size):
        if more:
            raise ValueError(f"zoo YOLOX has one output per stride, got {len(more) + 1} at stride {stride}")
        gw = t.shape[3]
        t = t.reshape(t.shape[1], -1)
        cell = np.flatnonzero(t[4] >= min_conf)
        if cell.size == 0:
            continue
        rows = t[:, cell].T.astype(np.float32)
        keep, best, klass = best_per_row(rows[:, 5:] * rows[:, 4:5], min_conf)
        if keep.size == 0:
            continue
        rows, cell = rows[keep], cell[keep]
        xy = (rows[:, :2] + np.stack([cell % gw, cell // gw], axis=1)) * stride
        parts.append((_from_centre(xy, np.exp(rows[:, 2:4]) * stride), best, klass))
    return _concat(parts)


# -- ONNX exports of other families --------------------------------------------------------------

def decode_yolox(outputs: list[np.ndarray], input_size: tuple[int, int], min_conf: float) -> Decoded:
    """YOLOX ONNX export with ``decode_in_inference`` off: [1, N, 5+C] rows, strides 8/16/32 one after
    another (row-major cells), decoded as :func:`decode_rknn_yolox`."""
    pred = outputs[0].reshape(-1, outputs[0].shape[-1])
    strides = next((s for s in (STRIDES, STRIDES_P6) if cells(input_size, s) == pred.shape[0]), None)
    if strides is None:
        raise ValueError(f"YOLOX output has {pred.shape[0]} rows; a {input_size[0]}x{input_size[1]} input at "
                         f"strides 8/16/32 has {cells(input_size)}")
    rows_idx = np.flatnonzero(pred[:, 4] >= min_conf)
    if rows_idx.size == 0:
        return _empty()
    rows = pred[rows_idx].astype(np.float32)
    keep, best, klass = best_per_row(rows[:, 5:] * rows[:, 4:5], min_conf)
    rows, rows_idx = rows[keep], rows_idx[keep]
    xy, stride = cell_grid(input_size, strides)
    s = stride[rows_idx, None]
    return _from_centre((rows[:, :2] + xy[rows_idx]) * s, np.exp(rows[:, 2:4]) * s), best, klass


def _pair(outputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(boxes [1,N,4], per-class [1,N,C]) of a two-output head, told apart by the last dimension
    (file order when C is 4 too)."""
    if len(outputs) != 2:
        raise ValueError(f"expected 2 outputs (boxes [1,N,4], classes [1,N,C]), got {[o.shape for o in outputs]}")
    a, b = outputs
    if a.shape[-1] != 4 and b.shape[-1] == 4:
        a, b = b, a
    return a.reshape(-1, 4), b.reshape(-1, b.shape[-1])


def decode_yolo_nas(outputs: list[np.ndarray], input_size: tuple[int, int], min_conf: float) -> Decoded:
    """YOLO-NAS export: boxes [1,N,4] x1,y1,x2,y2 in input pixels and class scores [1,N,C] (0–1)."""
    boxes, scores = _pair(outputs)
    keep, best, klass = best_per_row(scores, min_conf)
    return boxes[keep].astype(np.float32), best, klass


def decode_detr(outputs: list[np.ndarray], input_size: tuple[int, int], min_conf: float) -> Decoded:
    """RT-DETR / RF-DETR: boxes [1,Q,4] cx,cy,w,h as fractions of the input, class logits [1,Q,C]
    (sigmoid per class). The threshold is compared in logit space, so only kept queries see a sigmoid.
    A background column, when the model has one, is a class of its own (labelled "n/a" at install)."""
    boxes, logits = _pair(outputs)
    limit = np.log(min_conf / (1 - min_conf)) if 0 < min_conf < 1 else (-np.inf if min_conf <= 0 else np.inf)
    keep, best, klass = best_per_row(logits, limit)
    w, h = input_size
    b = boxes[keep].astype(np.float32) * np.array([w, h, w, h], np.float32)
    return _from_centre(b[:, :2], b[:, 2:]), 1 / (1 + np.exp(-best.astype(np.float32))), klass


def decode_dfine(outputs: list[np.ndarray], input_size: tuple[int, int], min_conf: float) -> Decoded:
    """D-FINE / DEIM / RT-DETR deploy export (post-processing in the graph): labels [1,Q] (int),
    boxes [1,Q,4] x1,y1,x2,y2 in ``orig_target_sizes`` pixels (the runner feeds the input size, see
    :func:`edgewatch.models.runtime.run.detect`), scores [1,Q]. Labels and scores are told apart by
    dtype; when a runtime made both float, by the export's order (labels first)."""
    boxes = [o for o in outputs if o.ndim == 3 and o.shape[-1] == 4]
    flat = [o for o in outputs if o.ndim == 2]
    if len(boxes) != 1 or len(flat) != 2:
        raise ValueError(f"expected labels [1,Q], boxes [1,Q,4], scores [1,Q]; got {[o.shape for o in outputs]}")
    ints = [o for o in flat if o.dtype.kind in "iu"]
    labels, scores = (ints[0], next(o for o in flat if o is not ints[0])) if len(ints) == 1 else flat
    scores = scores.reshape(-1)
    keep = np.flatnonzero(scores >= min_conf)
    return (boxes[0].reshape(-1, 4)[keep].astype(np.float32), scores[keep].astype(np.float32),
            labels.reshape(-1)[keep].astype(np.int64))
