"""The face use cases, the same for every transport: detect, match, register, recognize, list and
delete. Images in, the module's envelope out; what the sender can fix raises the module errors.

Model work runs through the shared inference queue. On register, a photo with several faces
registers its largest face (the person the photo is of, in the usual close-up); a photo with no
face is refused, and nothing of the request is stored.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from edgewatch.daemon.imaging import ImageError, decode_image
from edgewatch.daemon.inference_queue import InferenceQueue
from edgewatch.daemon.modules.envelope import envelope_fields
from edgewatch.daemon.modules.errors import BadRequest, NotFound
from edgewatch.daemon.modules.requests import queued
from edgewatch.daemon.modules.faces.schemas import FacePrediction, FaceResponse
from edgewatch.daemon.modules.faces.store import FaceStoreError, Gallery, NewFace, check_userid
from edgewatch.models.runtime.faces import align, detect_faces, embed

if TYPE_CHECKING:
    from edgewatch.daemon.modules.faces.module import FacesModule

UNKNOWN = "unknown"
MAX_IMAGES = 16  # photos in one register request
HEAD_SHARE = 0.6  # a person's face is in the top part of their box (standing, sitting or a close-up)
FACE_MARGIN = 0.4  # a saved face keeps this much of its width around it, so it can be registered later


def answer(module: FacesModule, command: str, received_at: float, *, success: bool = True, code: int = 200,
           message: str = "", error: str | None = None, inference_ms: float = 0.0, process_ms: float = 0.0,
           **fields: Any) -> FaceResponse:
    """The module's envelope for ``command``, with the face API's ``fields``."""
    predictions = fields.get("predictions")
    return FaceResponse(**envelope_fields(module, command, success=success, received_at=received_at, code=code,
                                          message=message, error=error),
                        inferenceMs=round(inference_ms), processMs=round(process_ms),
                        count=len(predictions) if predictions is not None else None, **fields)


class _Timer:
    def __init__(self) -> None:
        self.start, self.inference_s = time.perf_counter(), 0.0

    @property
    def process_ms(self) -> float:
        return (time.perf_counter() - self.start) * 1000


def _image(module: FacesModule, data: bytes, what: str = "image") -> np.ndarray:
    try:
        image, _ = decode_image(data, module.config.server.max_image_pixels)
    except ImageError as exc:
        raise BadRequest(f"{what}: {exc}") from None
    return image


def _faces(module: FacesModule, image: np.ndarray, min_conf: float, timer: _Timer):
    detector = module.detector()
    found = detect_faces(detector.backend, detector.manifest, image, min_conf)
    timer.inference_s += found.inference_ms / 1000
    return found


def _embed(module: FacesModule, crops: list[np.ndarray], timer: _Timer) -> np.ndarray:
    embedder = module.embedder()
    start = time.perf_counter()
    vectors = embed(embedder.backend, embedder.manifest, crops)
    timer.inference_s += time.perf_counter() - start
    return vectors


def _recognised(module: FacesModule, gallery: Gallery, vector: np.ndarray) -> tuple[str | None, float]:
    """The registered person ``vector`` is (None below ``faces.recognition_threshold``) and the
    similarity to the nearest one (negative as 0)."""
    who, similarity = gallery.best(vector)
    known = who is not None and similarity >= module.settings.recognition_threshold
    return (who if known else None), max(0.0, similarity)


def _largest(found) -> int:
    sizes = (found.boxes[:, 2] - found.boxes[:, 0]) * (found.boxes[:, 3] - found.boxes[:, 1])
    return int(np.argmax(sizes))


def _box(b: np.ndarray) -> tuple[int, int, int, int]:
    return int(round(b[0])), int(round(b[1])), int(round(b[2])), int(round(b[3]))


async def detect(module: FacesModule, queue: InferenceQueue, data: bytes, min_conf: float,
                 received_at: float) -> FaceResponse:
    def job() -> tuple[list[FacePrediction], _Timer]:
        timer = _Timer()
        found = _faces(module, _image(module, data), min_conf, timer)
        return [FacePrediction("face", round(float(s), 4), *_box(b)) for b, s in zip(found.boxes, found.scores)], timer

    predictions, timer = await queued(queue, job)
    message = f"Found {len(predictions)} face(s)" if predictions else "No faces found"
    return answer(module, "detect", received_at, message=message, predictions=predictions,
                  inference_ms=timer.inference_s * 1000, process_ms=timer.process_ms)


async def match(module: FacesModule, queue: InferenceQueue, first: bytes, second: bytes,
                received_at: float) -> FaceResponse:
    def job() -> tuple[float, _Timer]:
        timer, crops = _Timer(), []
        for what, data in (("image1", first), ("image2", second)):
            image = _image(module, data, what)
            found = _faces(module, image, module.settings.min_confidence, timer)
            if not len(found.scores):
                raise BadRequest(f"no face found in {what}: send a photo with the face clearly visible")
            crops.append(align(image, found.landmarks[_largest(found)]))
        a, b = _embed(module, crops, timer)
        return max(0.0, float(a @ b)), timer

    similarity, timer = await queued(queue, job)
    return answer(module, "match", received_at, message=f"similarity {similarity:.3f}", similarity=round(similarity, 4),
                  inference_ms=timer.inference_s * 1000, process_ms=timer.process_ms)


async def register(module: FacesModule, queue: InferenceQueue, userid: str, photos: list[bytes],
                   received_at: float) -> FaceResponse:
    try:
        userid = check_userid(userid)
    except FaceStoreError as exc:
        raise BadRequest(str(exc)) from None
    if not photos:
        raise BadRequest("no image to register: send the photo(s) as 'image' (or image1, image2, …) file parts")
    if len(photos) > MAX_IMAGES:
        raise BadRequest(f"{len(photos)} images in one request; at most {MAX_IMAGES}")

    def job() -> tuple[int, int, _Timer]:
        timer, crops, digests = _Timer(), [], []
        for n, data in enumerate(photos, 1):
            image = _image(module, data, f"image {n}")
            found = _faces(module, image, module.settings.min_confidence, timer)
            if not len(found.scores):
                raise BadRequest(f"no face found in image {n}: nothing was registered; send photos in which "
                                 "the face is clearly visible")
            crops.append(align(image, found.landmarks[_largest(found)]))
            digests.append(hashlib.sha256(data).hexdigest())
        vectors = _embed(module, crops, timer)
        new = [NewFace(cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes(), digest, vector)
               for crop, digest, vector in zip(crops, digests, vectors)]
        total = module.faces.register(userid, new, module.embedder().key)
        return len(new), total, timer

    added, total, timer = await queued(queue, job)
    return answer(module, "register", received_at,
                  message=f"face added: {added} face(s) registered for '{userid}' ({total} in all)",
                  inference_ms=timer.inference_s * 1000, process_ms=timer.process_ms)


async def recognize(module: FacesModule, queue: InferenceQueue, data: bytes, min_conf: float,
                    received_at: float) -> FaceResponse:
    def job() -> tuple[list[FacePrediction], _Timer]:
        timer = _Timer()
        image = _image(module, data)
        found = _faces(module, image, min_conf, timer)
        if not len(found.scores):
            return [], timer
        vectors = _embed(module, [align(image, lm) for lm in found.landmarks], timer)
        gallery = module.faces.gallery(module.embedder().key)
        out = []
        for box, vector in zip(found.boxes, vectors):
            who, similarity = _recognised(module, gallery, vector)
            name = who or UNKNOWN
            out.append(FacePrediction(name, round(similarity, 4), *_box(box), userid=name))
        return out, timer

    predictions, timer = await queued(queue, job)
    known = [p.userid for p in predictions if p.userid != UNKNOWN]
    message = (f"Found {', '.join(known)}" if known else
               f"{len(predictions)} unknown face(s)" if predictions else "No faces found")
    return answer(module, "recognize", received_at, message=message, predictions=predictions,
                  inference_ms=timer.inference_s * 1000, process_ms=timer.process_ms)


def list_faces(module: FacesModule, received_at: float) -> FaceResponse:
    userids = module.faces.userids()
    return answer(module, "list", received_at, message=f"{len(userids)} registered", faces=userids)


def delete(module: FacesModule, userid: str, received_at: float) -> FaceResponse:
    userid = userid.strip()
    if not userid:
        raise BadRequest("send the 'userid' to delete")
    if not module.faces.delete(userid):
        raise NotFound(f"no registered user {userid!r}: POST /v1/vision/face/list lists them")
    return answer(module, "delete", received_at, message=f"deleted '{userid}'")


@dataclass(frozen=True)
class Sighting:
    """One person's box looked at for a face: who it is (None: no usable face, or not a registered
    person), the cosine similarity to them, and the face with a margin (None when none was found)."""

    userid: str | None
    similarity: float
    face: np.ndarray | None = None
    quality: float = 0.0  # face detection score × face width: which of a person's faces to keep


def identify(module: FacesModule, image: np.ndarray, boxes: list[tuple[int, int, int, int]],
             min_face_px: int) -> list[Sighting]:
    """For each person box in a camera frame, the face in its top part recognised against the face
    store (one embedder run for all). Runs on the caller's thread: a camera runs it through the queue."""
    h, w = image.shape[:2]
    detector = module.detector()
    sightings: list[Sighting] = []
    aligned: list[np.ndarray] = []
    for x1, y1, x2, y2 in boxes:
        x1, x2 = max(0, int(x1)), min(w, int(x2))
        y1, y2 = max(0, int(y1)), min(h, int(y1 + (y2 - y1) * HEAD_SHARE))
        if x2 - x1 < min_face_px or y2 - y1 < min_face_px:
            sightings.append(Sighting(None, 0.0))
            continue
        crop = image[y1:y2, x1:x2]
        found = detect_faces(detector.backend, detector.manifest, crop, module.settings.min_confidence)
        widths = found.boxes[:, 2] - found.boxes[:, 0]
        usable = np.flatnonzero(widths >= min_face_px)
        if not len(usable):
            sightings.append(Sighting(None, 0.0))
            continue
        i = int(usable[np.argmax(widths[usable])])
        fx1, fy1, fx2, fy2 = found.boxes[i]
        m = (fx2 - fx1) * FACE_MARGIN
        face = crop[max(0, int(fy1 - m)):int(fy2 + m) + 1, max(0, int(fx1 - m)):int(fx2 + m) + 1].copy()
        sightings.append(Sighting(None, 0.0, face, float(found.scores[i] * widths[i])))
        aligned.append(align(crop, found.landmarks[i]))
    if not aligned:
        return sightings
    embedder = module.embedder()
    vectors = iter(embed(embedder.backend, embedder.manifest, aligned))
    gallery = module.faces.gallery(embedder.key)
    out = []
    for s in sightings:
        if s.face is None:
            out.append(s)
            continue
        who, similarity = _recognised(module, gallery, next(vectors))
        out.append(Sighting(who, similarity, s.face, s.quality))
    return out
