"""The one interface every inference runtime implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from edgewatch.models.manifest import InputSpec, ModelManifest, Preprocessing, Runtime, Variant


class BackendError(RuntimeError):
    """A backend could not start or run; the message says what to do about it."""


@dataclass(frozen=True, slots=True)
class ProbeResult:
    available: bool
    reason: str  # what was found, or exactly why the backend cannot run here and what to install
    hardware: bool | None = None  # the accelerator device was found (None: a CPU runtime, no device)


class BackendConfig(BaseModel):
    """Settings shared by all backends; each backend may subclass it with its own keys."""

    model_config = ConfigDict(extra="forbid")


class Backend(ABC):
    """One runtime with one model loaded. ``infer`` must be safe to call from several threads."""

    type_key: ClassVar[str]
    title: ClassVar[str]
    runtime: ClassVar[Runtime] = "onnx"  # which model files (variants) this backend runs
    config_model: ClassVar[type[BackendConfig]] = BackendConfig
    can_use_gpu: ClassVar[bool] = False
    cpu: ClassVar[bool] = False  # a CPU runtime: among these, auto tries first the one that runs the default variant
    convert_target: ClassVar[bool] = True  # `edgewatch models convert --target <type_key>` makes its variant
    # Most samples one infer() takes (a batch of faces to embed); None: any (a symbolic batch
    # dimension). Converted models (TFLite, RKNN, EdgeTPU) have their batch fixed at 1.
    max_batch: ClassVar[int | None] = 1

    def __init__(self, config: BackendConfig | None = None) -> None:
        self.config = config or self.config_model()
        self.manifest: ModelManifest | None = None
        self.variant: Variant | None = None
        self.variant_key: str | None = None

    @classmethod
    def complete_config(cls, config: BackendConfig, cache_dir: Path, workers: int) -> BackendConfig:
        """``config`` with the defaults that depend on the daemon's settings filled in."""
        return config

    @classmethod
    @abstractmethod
    def probe(cls) -> ProbeResult:
        """Say whether this runtime can run on this machine, without loading any model."""

    def pick_variant(self, manifest: ModelManifest) -> str | None:
        """The variant of ``manifest`` this backend would run, or None if it has none: the default
        when it is for this runtime, else its fastest faithful one (int8 first where unmeasured);
        None also when every variant for this runtime failed the int8 gate."""
        if manifest.variants[manifest.default_variant].runtime == self.runtime:
            return manifest.default_variant
        usable = [k for k, v in manifest.variants.items() if v.runtime == self.runtime]
        faithful = [k for k in usable if manifest.faithful(k)]  # an unfaithful conversion is never run

        def rank(key: str) -> tuple:
            v = manifest.variants[key]
            return v.inference_ms_p50 is None, v.inference_ms_p50 or 0.0, v.precision != "int8"

        return min(faithful, key=rank) if faithful else None

    def unusable_reason(self, manifest: ModelManifest) -> str:
        """Why :meth:`pick_variant` found no variant of ``manifest`` to run, with the next step."""
        if any(v.runtime == self.runtime for v in manifest.variants.values()):
            what = "detections" if manifest.task == "detection" else "outputs"
            return (f"{manifest.name}'s {self.runtime} variant failed its gate (its {what} differ too much from "
                    "fp32's), so it is not used (`edgewatch models list` shows why)")
        if not self.convert_target:  # ncnn: only models that ship as ncnn files have a variant for it
            return f"it runs no variant of {manifest.name} (none can be converted for it)"
        return (f"{manifest.name} has no {self.runtime} variant: run `edgewatch models convert {manifest.name} "
                f"--target {self.type_key}`")

    @property
    @abstractmethod
    def execution_provider(self) -> str:
        """What actually runs inference, as reported to clients (e.g. ``CPU``, ``NPU``)."""

    def load(self, model_path: Path, manifest: ModelManifest, variant: str | None = None) -> None:
        """Load the model file; raise BackendError with a next step if it cannot be used."""
        self._open(model_path, manifest)
        self.manifest = manifest
        self.variant_key = variant or manifest.default_variant
        self.variant = manifest.variants[self.variant_key]

    @abstractmethod
    def _open(self, model_path: Path, manifest: ModelManifest) -> None:
        """Runtime-specific loading of ``model_path``."""

    def input_format(self) -> tuple[InputSpec, Preprocessing]:
        """The tensor the loaded variant wants: its own input spec, normalised on the host unless
        the device does it. Preprocessing asks this before building the tensor."""
        if self.manifest is None or self.variant is None:
            raise BackendError("no model loaded")
        spec = self.variant.input or self.manifest.input
        pre = self.manifest.preprocessing
        if self.variant.device_normalises:
            pre = pre.model_copy(update={"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)})
        return spec, pre

    @abstractmethod
    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run the preprocessed ``batch`` and return the raw outputs in the model's order."""

    def close(self) -> None:
        """Release the runtime's resources."""
        self.manifest = None
        self.variant = None
        self.variant_key = None

