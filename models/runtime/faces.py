"""The run path of the face models: image → faces with five landmarks → aligned crops → embeddings.

A face detector (manifest task ``face_detection``, e.g. CenterFace) finds boxes and the five
ArcFace landmarks; :func:`align` maps a face onto the ArcFace 112×112 template with a similarity
transform; an embedder (task ``face_embedding``, e.g. MobileFaceNet) turns aligned crops into unit
vectors, so the cosine similarity of two faces is the dot product of their rows. On the registry
photos the tests use (tests/test_face_models.py), the same person scores 0.65-0.89 and different
people at most 0.47 (median 0.03).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from edgewatch.models.runtime.heads import HEADS, decode_faces
from edgewatch.models.runtime.preprocess import face_batch, fit_pad

if TYPE_CHECKING:
    from edgewatch.backends.base import Backend
    from edgewatch.models.manifest import ModelManifest

# ArcFace / InsightFace reference points of a 112×112 crop: left eye, right eye, nose, left and
# right mouth corner ("left" is the smaller x in the image).
ARCFACE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                        [41.5493, 92.3655], [70.7299, 92.2041]], np.float32)

# Faces per embedder run. MobileFaceNet on ONNX Runtime, 2 x86 cores: 2.5-2.8 ms a face in runs of
# 1 to 8 faces, 3.2 ms in runs of 16, 4.4 ms in runs of 32.
EMBED_BATCH = 8


@dataclass(frozen=True)
class Faces:
    """Faces found in one image, highest score first."""

    boxes: np.ndarray      # N×4 float32 x1, y1, x2, y2 in the image's pixels (clipped to the image)
    scores: np.ndarray     # N float32
    landmarks: np.ndarray  # N×5×2 float32 x, y in the image's pixels, ArcFace order (see ARCFACE_112); not clipped
    inference_ms: float    # the backend's run alone


def _check_task(manifest: ModelManifest, task: str) -> None:
    if manifest.task != task:
        raise ValueError(f"{manifest.name} is a {manifest.task} model, not a {task} model; "
                         f"see `edgewatch models list` for the installed {task} models")


def detect_faces(backend: Backend, manifest: ModelManifest, image_bgr: np.ndarray, min_conf: float = 0.5) -> Faces:
    """Faces in ``image_bgr`` (H×W×3 uint8) whose score is at least ``min_conf``, sorted by score."""
    _check_task(manifest, "face_detection")
    spec, pre = backend.input_format()
    tensor, scale = fit_pad(image_bgr, spec, pre)
    t0 = time.perf_counter()
    outputs = backend.infer(tensor)
    inference_ms = (time.perf_counter() - t0) * 1000
    fed = (tensor.shape[3], tensor.shape[2]) if spec.layout == "nchw" else (tensor.shape[2], tensor.shape[1])
    boxes, scores, points = decode_faces(manifest.postprocessing, outputs, fed, min_conf)
    h, w = image_bgr.shape[:2]
    boxes = boxes / scale
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, w - 1)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, h - 1)
    return Faces(boxes.astype(np.float32), scores, (points / scale).astype(np.float32), inference_ms)


def align(image_bgr: np.ndarray, landmarks: np.ndarray, size: int = 112) -> np.ndarray:
    """One face (its 5×2 landmarks) mapped onto the ArcFace template scaled to ``size``: a
    size×size×3 BGR uint8 crop, the border replicated where the face leaves the image."""
    points = np.asarray(landmarks, np.float32).reshape(5, 2)
    matrix, _ = cv2.estimateAffinePartial2D(points, ARCFACE_112 * (size / 112.0), method=cv2.LMEDS)
    if matrix is None:
        raise ValueError(f"cannot align a face on landmarks {points.tolist()}: they do not form a face")
    return cv2.warpAffine(image_bgr, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def embed(backend: Backend, manifest: ModelManifest, aligned_bgr: list[np.ndarray]) -> np.ndarray:
    """Embeddings of aligned face crops (see :func:`align`): N×D float32, rows of unit length."""
    _check_task(manifest, "face_embedding")
    spec, pre = backend.input_format()
    crops = list(aligned_bgr)
    blank = not crops
    if blank:  # run one blank crop for the width D of the empty result
        width, height = spec.size
        crops = [np.zeros((height, width, 3), np.uint8)]
    decoder = HEADS[manifest.postprocessing].decoder
    step = min(EMBED_BATCH, backend.max_batch or EMBED_BATCH)
    vectors = np.vstack([decoder(backend.infer(face_batch(crops[i:i + step], spec, pre)))
                         for i in range(0, len(crops), step)])
    return vectors[:0] if blank else vectors
