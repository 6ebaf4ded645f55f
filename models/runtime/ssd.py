"""Detection heads of the TFLite files users bring for a Coral EdgeTPU or a CPU.

``tflite_ssd``: the ``TFLite_Detection_PostProcess`` op's four outputs (Coral's
``ssd_mobilenet_v2_coco_quant_postprocess*.tflite``, TF Object Detection API and EfficientDet-Lite
exports). ``yolo_dfl_split``: YOLO's DFL box distributions and class logits as two outputs (the
EdgeTPU exports Frigate's ``yolo-generic`` model type runs). Both return, like every detection
head in :mod:`.heads`, (boxes N×4 x1,y1,x2,y2 in input pixels, scores N, class ids N) before NMS.

Outputs arrive as float tensors: the TFLite and EdgeTPU backends dequantise int8/uint8 outputs
with each tensor's own scale and zero point (``layouts.dequantise`` is the same rule, for callers
holding raw tensors and their :class:`~edgewatch.models.tensor_info.TensorInfo`).
"""

from __future__ import annotations

import numpy as np

from edgewatch.models.runtime.layouts import cell_grid, dfl_distances, row_max


Decoded = tuple[np.ndarray, np.ndarray, np.ndarray]

DFL_STRIDES = (8, 16, 32)
DFL_BINS = 16  # reg_max: 4 sides × 16 bins = 64 channels


def _empty() -> Decoded:
    return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)


# ------------------------------------------------------------------------------------------- SSD

def _looks_like_scores(v: np.ndarray) -> bool:
    """Scores from the SSD op: within 0–1 and sorted highest first."""
    return bool(np.all((v >= 0) & (v <= 1)) and np.all(np.diff(v) <= 1e-6))


def _looks_like_class_ids(v: np.ndarray) -> bool:
    return bool(np.all(v >= 0) and np.all(v == np.round(v)))


def ssd_parts(outputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The SSD op's boxes (N×4 ymin, xmin, ymax, xmax, 0–1), class ids (N), scores (N) and the count
    of valid rows, from its four outputs in any order.

    Boxes are the 3-D output and the count the 1-element 1-D one, by shape. Class ids and scores
    have the same shape, so they are told apart by content over the valid rows: scores lie in 0–1
    and come sorted highest first, class ids are whole numbers (TF1 exports list classes before
    scores, TF2 exports the other way round, and interpreters may reorder them again). Only when
    both fit (every score exactly 0 or 1) does the output order decide: classes first, as the op
    writes them.
    """
    arrays = [np.asarray(o, dtype=np.float32) for o in outputs]
    boxes = [a for a in arrays if a.ndim == 3 and a.shape[-1] == 4]
    counts = [a for a in arrays if a.ndim == 1 and a.size == 1]
    rows = [a for a in arrays if a.ndim == 2]
    if len(arrays) != 4 or len(boxes) != 1 or len(counts) != 1 or len(rows) != 2:
        raise ValueError(f"TFLite_Detection_PostProcess outputs (boxes 1×N×4, classes 1×N, scores 1×N, count 1) "
                         f"not found in {[a.shape for a in arrays]}: this is not an SSD post-processing model")
    box, first, second = boxes[0][0], rows[0][0], rows[1][0]
    if not box.shape[0] == first.shape[0] == second.shape[0]:
        raise ValueError(f"SSD outputs disagree on the number of detections: {[a.shape for a in arrays]}")
    n = int(np.clip(round(float(counts[0][0])), 0, box.shape[0]))
    a, b = first[:n], second[:n]
    if _looks_like_class_ids(a) and _looks_like_scores(b):
        classes, scores = first, second
    elif _looks_like_class_ids(b) and _looks_like_scores(a):
        classes, scores = second, first
    else:
        raise ValueError("of the SSD outputs shaped 1×N, neither holds whole-number class ids beside sorted "
                         "0–1 scores: this model's post-processing is not TFLite_Detection_PostProcess")
    return box, classes, scores, n


def decode_tflite_ssd(outputs: list[np.ndarray], input_size: tuple[int, int], min_conf: float) -> Decoded:
    """``TFLite_Detection_PostProcess``: boxes 1×N×4 (ymin, xmin, ymax, xmax as fractions of the
    input), class ids 1×N (0 = the first real class: the op drops the background column), scores
    1×N and the count of valid rows; NMS is already done inside the model."""
    box, classes, scores, n = ssd_parts(outputs)
    keep = np.nonzero(scores[:n] >= min_conf)[0]
    if keep.size == 0:
        return _empty()
    in_w, in_h = input_size
    ymin, xmin, ymax, xmax = (box[keep, i] for i in range(4))
    xyxy = np.stack([xmin * in_w, ymin * in_h, xmax * in_w, ymax * in_h], axis=1).astype(np.float32)
    return xyxy, scores[keep].astype(np.float32), np.rint(classes[keep]).astype(np.int64)


# ------------------------------------------------------------------------------ YOLO DFL, split

def dfl_anchors(input_size: tuple[int, int], strides: tuple[int, ...] = DFL_STRIDES,
                ceil: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Anchor points (N×2 x, y, cell centres in cells) and their strides (N), stride by stride,
    each grid row by row: the order YOLO's heads flatten their outputs in."""
    cells, steps = cell_grid(input_size, strides, floor=not ceil)
    return cells + 0.5, steps


def _rows(out: np.ndarray, n: int) -> np.ndarray:
    """A 1×N×K or 1×K×N output as N×K rows."""
    arr = np.asarray(out).reshape(out.shape[-2], out.shape[-1])
    return arr.T if arr.shape[0] != n and arr.shape[1] == n else arr


def dfl_split_parts(outputs: list[np.ndarray], input_size: tuple[int, int]
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(DFL rows N×64, class rows N×C, anchor points N×2, strides N) from two or three outputs
    (a third N×1 best-score output, which some exports add, is not needed). Told apart by width:
    64 is the box distribution (so a 64-class model is ambiguous and refused)."""
    shapes = [tuple(o.shape) for o in outputs]
    expected = dfl_anchors(input_size)[0].shape[0]
    for ceil in (False, True):
        points, strides = dfl_anchors(input_size, ceil=ceil)
        n = points.shape[0]
        rows = [_rows(o, n) for o in outputs if o.ndim == 3 and n in o.shape[1:]]
        if rows:
            break
    else:
        w, h = input_size
        raise ValueError(f"no output of {shapes} has {expected} rows, the anchors of a {w}x{h} input over strides "
                         f"{', '.join(map(str, DFL_STRIDES))}: check the input size the model was exported with")
    boxes = [r for r in rows if r.shape[1] == 4 * DFL_BINS]
    classes = [r for r in rows if r.shape[1] not in (1, 4 * DFL_BINS)]
    if len(boxes) != 1 or len(classes) != 1:
        raise ValueError(f"YOLO DFL outputs (boxes N×{4 * DFL_BINS}, class logits N×C) not found in {shapes}"
                         + (" (a model with 64 classes cannot be told from its box output)" if len(boxes) > 1 else ""))
    return boxes[0], classes[0], points, strides


def decode_yolo_dfl_split(outputs: list[np.ndarray], input_size: tuple[int, int], min_conf: float) -> Decoded:
    """YOLOv8/9/11 for the EdgeTPU with its head split: boxes 1×N×64 (per side left, top, right,
    bottom, a 16-bin distance distribution in strides) and class logits 1×N×C, over anchors at the
    cell centres of strides 8, 16 and 32 (1×64×N / 1×C×N work too). Scores are the logits' sigmoid;
    an output already within 0–1 is taken as probabilities."""
    dfl, cls, points, strides = dfl_split_parts(outputs, input_size)
    best = row_max(cls)  # one pass over the N×C scores; the class only for the rows kept
    # logits leave most cells' best class below 0; probabilities never do
    probabilities = float(best.min()) >= 0.0 and float(best.max()) <= 1.0
    threshold = min_conf if probabilities else float(np.log(min_conf / max(1.0 - min_conf, 1e-12)))
    keep = np.nonzero(best >= threshold)[0]  # filtered on logits: the sigmoid only for the few kept
    if keep.size == 0:
        return _empty()
    class_ids = cls[keep].argmax(axis=1)
    best = best.astype(np.float32, copy=False)
    scores = best[keep] if probabilities else 1.0 / (1.0 + np.exp(-best[keep]))
    ltrb = dfl_distances(dfl[keep].astype(np.float32).reshape(-1, 4, DFL_BINS))
    p, s = points[keep], strides[keep, None]
    xyxy = np.concatenate([(p - ltrb[:, :2]) * s, (p + ltrb[:, 2:]) * s], axis=1).astype(np.float32)
    return xyxy, scores.astype(np.float32), class_ids.astype(np.int64)
