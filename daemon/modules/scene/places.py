"""ImageNet class probabilities → Places365 scene names, by the mapping in ``places.yaml``: a scene's
score is the sum of its classes' probabilities."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np
import yaml

MAPPING_FILE = "places.yaml"


@cache
def mapping() -> dict[str, list[str]]:
    """places.yaml's scenes: scene name → ImageNet class names (each class's first name)."""
    return yaml.safe_load(resources.files(__package__).joinpath(MAPPING_FILE).read_text())["scenes"]


def short_name(label: str) -> str:
    """An ImageNet label's first name ("tabby, tabby cat" → "tabby")."""
    return label.split(",")[0].strip()


@dataclass(frozen=True)
class SceneMap:
    """Which class indices of one model's labels make each scene."""

    scenes: dict[str, np.ndarray]
    scene_of_class: dict[int, str]

    @classmethod
    def for_labels(cls, labels: tuple[str, ...]) -> SceneMap:
        """The mapping over ``labels`` (the model's); ValueError names a mapped class the model lacks,
        one that two of its classes share, or one mapped to two scenes."""
        index: dict[str, list[int]] = {}
        for i, label in enumerate(labels):
            index.setdefault(short_name(label), []).append(i)
        missing = [n for names in mapping().values() for n in names if n not in index]
        if missing:
            raise ValueError(f"the model has no ImageNet class(es) {missing} that {MAPPING_FILE} maps: it is not an "
                             "ImageNet classifier with the 1,000 ILSVRC classes")
        shared = [n for names in mapping().values() for n in names if len(index[n]) > 1]
        if shared:
            raise ValueError(f"{MAPPING_FILE} maps {shared}, a name two ImageNet classes share")
        scenes, scene_of_class = {}, {}
        for scene, names in mapping().items():
            idx = [index[n][0] for n in names]
            for i in idx:
                if i in scene_of_class:
                    raise ValueError(f"{MAPPING_FILE} maps {labels[i]!r} to both {scene_of_class[i]} and {scene}")
                scene_of_class[i] = scene
            scenes[scene] = np.asarray(idx)
        return cls(scenes, scene_of_class)

    def scores(self, probs: np.ndarray) -> dict[str, float]:
        """Each scene's score: the sum of its classes' probabilities in ``probs`` (one per class)."""
        return {scene: float(probs[idx].sum()) for scene, idx in self.scenes.items()}

    def best(self, probs: np.ndarray) -> tuple[str, float]:
        """The scene with the largest score, and that score."""
        scores = self.scores(probs)
        scene = max(scores, key=scores.__getitem__)
        return scene, scores[scene]
