"""Licence plates rendered onto real cars, where the truth is known: the plate reader's wider
measurement beside the four real plates of models.photos.PLATE_PHOTOS (tests/test_alpr.py and
bench/alpr.py).

Each snapshot is one of the real plate photos with a new plate drawn over one of its one-row plates
(its corners moved a little: another angle), then scaled down (a farther camera: plates 40-320 px
wide), blurred and JPEG-compressed as a camera snapshot would be. A plate is white or yellow with a
border and dark characters in one of several national layouts. OpenCV's Hershey font is not a plate
font: figures on these measure the pipeline's geometry and robustness over many texts and sizes,
not real-world accuracy.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgewatch.models.photos import PLATE_PHOTOS, ensure_plate_photos

# Layouts as character classes: L a letter, D a digit, a space kept as a gap on the plate.
LAYOUTS = ("LL DD LLL", "LL DDD LL", "D LLL DDD", "LLL DDDD", "LL DD LL DDDD", "L LL DDDD", "LLL DDD")
LETTERS = "".join(c for c in string.ascii_uppercase if c not in "IOQ")  # letters plates avoid
PLATE_COLOURS = ((255, 255, 255), (40, 205, 250))  # BGR white, yellow


@dataclass(frozen=True)
class RenderedPlate:
    text: str                                   # A–Z and 0–9, as a reader should answer
    corners: np.ndarray                         # 4×2 float32 tl, tr, br, bl in the photo
    box: tuple[float, float, float, float]      # x1, y1, x2, y2 around the corners


def _plate_text(rng: np.random.Generator) -> tuple[str, str]:
    layout = LAYOUTS[rng.integers(len(LAYOUTS))]
    shown = "".join(LETTERS[rng.integers(len(LETTERS))] if c == "L" else str(rng.integers(10)) if c == "D" else c
                    for c in layout)
    return shown, shown.replace(" ", "")


def _plate_image(shown: str, colour: tuple[int, int, int]) -> np.ndarray:
    """The plate drawn large: 110 px high, as wide as its text."""
    font, scale, thick = cv2.FONT_HERSHEY_DUPLEX, 2.6, 6
    (tw, th), _ = cv2.getTextSize(shown, font, scale, thick)
    height, width = 110, tw + 60
    plate = np.full((height, width, 3), colour, np.uint8)
    cv2.rectangle(plate, (3, 3), (width - 4, height - 4), (20, 20, 20), 4)
    cv2.putText(plate, shown, ((width - tw) // 2, (height + th) // 2), font, scale, (25, 25, 25), thick, cv2.LINE_AA)
    return plate


def render_plate(photo_bgr: np.ndarray, where: np.ndarray, rng: np.random.Generator,
                 scale: float) -> tuple[np.ndarray, RenderedPlate]:
    """``photo_bgr`` with a random plate drawn over the quadrilateral ``where`` (4×2 tl, tr, br, bl;
    each corner moved by up to 4 % of the plate's width), scaled by ``scale``, blurred a little and
    JPEG-compressed; and the plate's truth in the returned image's pixels."""
    shown, text = _plate_text(rng)
    plate = _plate_image(shown, PLATE_COLOURS[rng.integers(len(PLATE_COLOURS))])
    ph, pw = plate.shape[:2]
    h, w = photo_bgr.shape[:2]
    quad = np.asarray(where, np.float32).reshape(4, 2)
    width = float(np.linalg.norm(quad[1] - quad[0]))
    corners = quad + rng.uniform(-0.04, 0.04, (4, 2)).astype(np.float32) * width
    src = np.float32([[0, 0], [pw, 0], [pw, ph], [0, ph]])
    matrix = cv2.getPerspectiveTransform(src, corners)
    warped = cv2.warpPerspective(plate, matrix, (w, h), flags=cv2.INTER_AREA)
    mask = cv2.warpPerspective(np.full((ph, pw), 255, np.uint8), matrix, (w, h), flags=cv2.INTER_AREA)
    alpha = (mask.astype(np.float32) / 255)[..., None]
    out = (photo_bgr * (1 - alpha) + warped * alpha).astype(np.uint8)
    if scale != 1.0:
        out = cv2.resize(out, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        corners = corners * scale
    out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, 0.9))
    ok, jpeg = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(70, 92))])
    assert ok
    out = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
    x1, y1 = corners.min(axis=0)
    x2, y2 = corners.max(axis=0)
    return out, RenderedPlate(text, corners, (float(x1), float(y1), float(x2), float(y2)))


def rendered_plates(cache: Path, count: int, seed: int = 0,
                    scales: tuple[float, float] = (0.35, 1.0)) -> list[tuple[np.ndarray, RenderedPlate]]:
    """``count`` snapshots, one rendered plate each, over the one-row plates of the real plate
    photos in turn, each scaled by a random factor in ``scales``."""
    places = []
    for name, path in ensure_plate_photos(cache).items():
        image = cv2.imread(str(path))
        places += [(image, np.float32(p.corners)) for p in PLATE_PHOTOS[name].plates
                   if _one_row(np.float32(p.corners))]
    rng = np.random.default_rng(seed)
    return [render_plate(*places[i % len(places)], rng, float(rng.uniform(*scales))) for i in range(count)]


def _one_row(corners: np.ndarray) -> bool:
    return np.linalg.norm(corners[1] - corners[0]) / np.linalg.norm(corners[3] - corners[0]) >= 2.6


@dataclass(frozen=True)
class PlateScore:
    plates: int            # rendered plates
    found: int             # answered with a box around the plate's centre
    exact: int             # of those, read exactly
    char_accuracy: float   # 1 - character error rate over the found plates (Levenshtein, rapidfuzz)
    others: int            # answers away from the rendered plate (the photos' own plates among them)


def score(answers: list[list[tuple[str, tuple[float, float, float, float]]]], truths: list[RenderedPlate]) -> PlateScore:
    """Score a reader's answers, (text, box) per plate per snapshot, against the rendered truth."""
    from rapidfuzz.distance import Levenshtein

    found = exact = others = 0
    errors = chars = 0
    for answer, truth in zip(answers, truths, strict=True):
        cx, cy = (truth.box[0] + truth.box[2]) / 2, (truth.box[1] + truth.box[3]) / 2
        hits = [text for text, (x1, y1, x2, y2) in answer if x1 <= cx <= x2 and y1 <= cy <= y2]
        others += len(answer) - len(hits)
        if hits:
            found += 1
            exact += hits[0] == truth.text
            errors += Levenshtein.distance(hits[0], truth.text)
            chars += len(truth.text)
    return PlateScore(len(truths), found, exact, 1 - errors / chars if chars else 0.0, others)
