"""ONNX Runtime on the CPU: the baseline every box can run."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from pydantic import Field

from edgewatch.backends.base import Backend, BackendConfig, BackendError, ProbeResult
from edgewatch.backends.devices import importable
from edgewatch.models.manifest import ModelManifest


class OnnxRuntimeConfig(BackendConfig):
    threads: int = Field(0, ge=0, le=64, description="intra-op threads per inference; 0 = one per core")


class OnnxRuntimeCpuBackend(Backend):
    type_key = "onnxruntime"
    title = "ONNX Runtime (CPU)"
    config_model = OnnxRuntimeConfig

    def __init__(self, config: OnnxRuntimeConfig | None = None) -> None:
        super().__init__(config)
        self._session = None
        self._input_name = ""

    @classmethod
    def probe(cls) -> ProbeResult:
        if not importable("onnxruntime"):
            return ProbeResult(False, "onnxruntime not importable: pip install onnxruntime")
        import onnxruntime as ort

        return ProbeResult(True, f"onnxruntime {ort.__version__}, CPUExecutionProvider, {os.cpu_count()} cores")

    @property
    def execution_provider(self) -> str:
        return "CPU"

    def _open(self, model_path: Path, manifest: ModelManifest) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = self.config.threads or (os.cpu_count() or 1)
        opts.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise BackendError(
                f"onnxruntime cannot load {model_path}: {exc}. Reinstall the model: "
                f"edgewatch models install {manifest.name}"
            ) from exc
        self._input_name = self._session.get_inputs()[0].name

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        if self._session is None:
            raise BackendError("no model loaded")
        return self._session.run(None, {self._input_name: batch})

    def close(self) -> None:
        self._session = None
        super().close()
