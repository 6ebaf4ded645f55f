"""The scene classifier as a use case, the same for every transport: image bytes in, the module's
envelope with a Places365 scene name out; what the sender can fix raises the module errors.
Decoding and inference run on the shared inference queue."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from edgewatch.daemon.imaging import ImageError, decode_image
from edgewatch.daemon.inference_queue import InferenceQueue
from edgewatch.daemon.modules.envelope import envelope_fields
from edgewatch.daemon.modules.errors import BadRequest
from edgewatch.daemon.modules.requests import queued
from edgewatch.daemon.modules.scene.places import short_name
from edgewatch.daemon.modules.scene.schemas import ImageNetScore, SceneResponse
from edgewatch.models.runtime.classification import top_k

if TYPE_CHECKING:
    from edgewatch.daemon.modules.scene.module import SceneModule

COMMAND = "scene"
UNKNOWN = "unknown"
TOP = 5


def answer(module: SceneModule, command: str, received_at: float, *, success: bool = True, code: int = 200,
           message: str = "", error: str | None = None, inference_ms: float = 0.0, process_ms: float = 0.0,
           **fields: Any) -> SceneResponse:
    """The module's envelope for ``command`` with the Scene Classifier's ``fields``."""
    return SceneResponse(**envelope_fields(module, command, success=success, received_at=received_at, code=code,
                                           message=message, error=error),
                         inferenceMs=round(inference_ms), processMs=round(process_ms), **fields)


async def classify_scene(module: SceneModule, queue: InferenceQueue, data: bytes, received_at: float) -> SceneResponse:
    min_confidence = module.settings.min_confidence

    def job():
        start = time.perf_counter()
        try:
            # the model was trained on upright photos: turn the image as its EXIF orientation says
            image, _ = decode_image(data, module.config.server.max_image_pixels, exif_orientation=True)
        except ImageError as exc:
            raise BadRequest(str(exc)) from None
        result, manifest, scenes = module.classify(image)
        return result, manifest, scenes, (time.perf_counter() - start) * 1000

    result, manifest, scenes, process_ms = await queued(queue, job)
    scene, score = scenes.best(result.probs)
    top = top_k(result.probs, manifest.labels, TOP)
    index = {label: i for i, label in enumerate(manifest.labels)}
    imagenet = [ImageNetScore(short_name(label), round(p, 4), scenes.scene_of_class.get(index[label]))
                for label, p in top]
    label = scene if score >= min_confidence else UNKNOWN
    derived = (f"scene derived from ImageNet classes of {manifest.name} (not a Places365 model): "
               f"{scene} {score:.2f}" + ("" if label != UNKNOWN else f", under min_confidence {min_confidence:g}"))
    return answer(module, COMMAND, received_at, message=derived, inference_ms=result.inference_ms,
                  process_ms=process_ms, label=label, confidence=round(score, 4),
                  imagenet_label=imagenet[0].label, imagenet_confidence=imagenet[0].confidence, imagenet=imagenet)
