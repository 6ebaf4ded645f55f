"""AudioSet scores → the 10 UrbanSound8K classes, by the mapping in ``urbansound8k.yaml``."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np
import yaml

MAPPING_FILE = "urbansound8k.yaml"


@cache
def _mapping() -> dict[str, list[str] | dict[str, list[str]]]:
    return yaml.safe_load(resources.files(__package__).joinpath(MAPPING_FILE).read_text())["classes"]


@dataclass(frozen=True)
class UrbanMap:
    """Which AudioSet label indices make each UrbanSound8K class, for one model's label order."""

    classes: dict[str, np.ndarray]

    @classmethod
    def for_labels(cls, labels: tuple[str, ...]) -> UrbanMap:
        """The mapping over ``labels`` (a model's); ValueError names a mapped label the model lacks."""
        index = {name: i for i, name in enumerate(labels)}
        missing = [n for spec in _mapping().values() for n in _names(spec) if n not in index]
        if missing:
            raise ValueError(f"the model has no AudioSet label(s) {missing} that {MAPPING_FILE} maps: it is not an "
                             "AudioSet classifier with YAMNet's labels")
        out = {}
        for urban, spec in _mapping().items():
            if isinstance(spec, dict):
                first, last = (index[n] for n in spec["audioset_range"])
                out[urban] = np.arange(first, last + 1)
            else:
                out[urban] = np.asarray([index[n] for n in spec])
        return cls(out)

    def class_of(self, index: int) -> str | None:
        """The class AudioSet label ``index`` counts for, if any."""
        return next((urban for urban, idx in self.classes.items() if index in idx), None)

    def scores(self, clip: np.ndarray) -> dict[str, tuple[float, int]]:
        """Each class's score in ``clip`` (one score per AudioSet label) and the label index that gave it."""
        out = {}
        for urban, idx in self.classes.items():
            best = int(idx[np.argmax(clip[idx])])
            out[urban] = (float(clip[best]), best)
        return out


def _names(spec: list[str] | dict[str, list[str]]) -> list[str]:
    return spec["audioset_range"] if isinstance(spec, dict) else spec
