"""The models `edgewatch models install` knows how to obtain, and from which registry package."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict

from edgewatch.models.labels import COCO80
from edgewatch.models.manifest import InputSpec, Postprocessing, Preprocessing, Source


class CatalogueEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    title: str
    task: Literal["detection"]
    labels: Literal["coco80"]
    input: InputSpec
    preprocessing: Preprocessing
    postprocessing: Postprocessing
    source: Source
    convert_from: Literal["tfjs"]
    model_file: str  # the file inside the package the converter starts from
    default: bool = False
    notes: str = ""

    @property
    def label_names(self) -> tuple[str, ...]:
        return COCO80


@cache
def catalogue() -> dict[str, CatalogueEntry]:
    text = resources.files(__package__).joinpath("detectors.yaml").read_text()
    entries = [CatalogueEntry.model_validate(e) for e in yaml.safe_load(text)["models"]]
    return {e.name: e for e in entries}


def default_names() -> list[str]:
    return [e.name for e in catalogue().values() if e.default]
