"""The face evaluation on the labelled registry photos (models.photos.FACE_PHOTOS): which pairs of
faces are the same person, and how well a similarity threshold tells them apart. Used by
tests/test_face_models.py and bench/faces.py."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edgewatch.models.photos import FACE_PHOTOS
from edgewatch.models.quantize import iou
from edgewatch.models.runtime.faces import Faces, align, detect_faces

if TYPE_CHECKING:
    from edgewatch.backends.base import Backend
    from edgewatch.models.manifest import ModelManifest

LabelledCrop = tuple[str, str | None, np.ndarray]  # (photo, person or None, aligned crop)


def labelled_crops(backend: Backend, manifest: ModelManifest, images: dict[str, np.ndarray],
                   min_iou: float = 0.5) -> list[LabelledCrop]:
    """Every labelled face of the face photos (``images``: name → BGR), aligned on the landmarks of
    the detection on its box; ValueError names a labelled face the detector misses."""
    crops = []
    for name, photo in FACE_PHOTOS.items():
        found = detect_faces(backend, manifest, images[name])
        for face in photo.faces:
            best = matching_face(found, face.box, min_iou)
            if best is None:
                raise ValueError(f"{name}: the labelled face at {face.box} was not found")
            crops.append((name, face.person, align(images[name], found.landmarks[best])))
    return crops


def matching_face(found: Faces, box: tuple[int, int, int, int], min_iou: float = 0.5) -> int | None:
    """The index of the detected face on the labelled ``box`` (the largest IoU, at least ``min_iou``)."""
    if not len(found.boxes):
        return None
    overlap = iou(np.asarray(box, float), found.boxes)
    best = int(np.argmax(overlap))
    return best if overlap[best] >= min_iou else None


def pairs(crops: list[LabelledCrop]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Same-person and different-person pairs. Two named faces are the same person when their
    names are; faces in one photo are different people; an unnamed face is nobody named;
    two unnamed faces of different photos are unknown, so left out."""
    same, diff = [], []
    for (i, (photo_a, a, _)), (j, (photo_b, b, _)) in itertools.combinations(enumerate(crops), 2):
        if a is not None and b is not None:
            (same if a == b else diff).append((i, j))
        elif photo_a == photo_b or a is not None or b is not None:
            diff.append((i, j))
    return same, diff


@dataclass(frozen=True)
class Verification:
    same: np.ndarray  # similarities of the same-person pairs
    diff: np.ndarray  # and of the different-person pairs

    def accuracy(self, threshold: float) -> float:
        """Share of all pairs decided right at ``threshold`` (same: ≥, different: <)."""
        right = int((self.same >= threshold).sum() + (self.diff < threshold).sum())
        return right / (len(self.same) + len(self.diff))

    def true_accept(self, false_accept: float) -> tuple[float, float]:
        """(true-accept rate, threshold) at the lowest threshold whose false-accept rate is at most
        ``false_accept``: at 0, just above the most similar different-person pair."""
        allowed = int(np.floor(false_accept * len(self.diff)))
        ranked = np.sort(self.diff)[::-1]
        threshold = float(np.nextafter(ranked[allowed], np.inf)) if allowed < len(ranked) else -1.0
        return float((self.same >= threshold).mean()), threshold


def verification(vectors: np.ndarray, crops: list[LabelledCrop]) -> Verification:
    """The pairs' cosine similarities, from unit ``vectors`` row-aligned with ``crops``."""
    cos = vectors @ vectors.T
    same, diff = pairs(crops)
    return Verification(np.array([cos[p] for p in same]), np.array([cos[p] for p in diff]))
