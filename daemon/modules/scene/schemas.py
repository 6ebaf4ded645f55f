"""The scene module's answer: the CodeProject.AI envelope with the Scene Classifier's fields (``label``,
``confidence``) plus the ImageNet classes they are derived from."""

from __future__ import annotations

import msgspec

from edgewatch.daemon.modules.envelope import Envelope


class ImageNetScore(msgspec.Struct, frozen=True, omit_defaults=True):
    label: str                 # an ImageNet class (its first name)
    confidence: float          # 0-1, softmax probability
    scene: str | None = None   # the scene it counts for, if any (places.yaml)


class SceneResponse(Envelope, kw_only=True, omit_defaults=True):
    """/v1/vision/scene: ``label`` is a Places365 scene name derived from ImageNet classes, or "unknown"
    when no scene's classes sum to min_confidence (``confidence`` is then the best scene's sum)."""

    inferenceMs: int = 0
    processMs: int = 0
    label: str | None = None
    confidence: float | None = None
    imagenet_label: str | None = None          # the model's most probable ImageNet class
    imagenet_confidence: float | None = None
    imagenet: list[ImageNetScore] | None = None  # the five most probable ImageNet classes
