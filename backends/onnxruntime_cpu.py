"""ONNX Runtime on the CPU: the baseline every box can run."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
from pydantic import Field

from edgewatch.backends.base import Backend, BackendConfig, BackendError, ProbeResult
from edgewatch.backends.devices import importable
from edgewatch.backends.lanes import LaneBackendMixin, LaneSettings
from edgewatch.models.manifest import ModelManifest

_arena_lock = threading.Lock()
_arena_registered = False


def _share_arena(ort, opts) -> None:
    """Make the session allocate from one process-wide CPU arena instead of its own.

    Each lane session would otherwise grow an arena as big as the wide one's: measured, the
    two one-thread sessions of centernet fp32 cost 193 MB with their own arenas and 111 MB with
    the shared one, at the same speed.
    """
    global _arena_registered
    with _arena_lock:
        if not _arena_registered:
            cpu = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
            ort.create_and_register_allocator(cpu, ort.OrtArenaCfg(0, -1, -1, -1))
            _arena_registered = True
    opts.add_session_config_entry("session.use_env_allocators", "1")


class OnnxRuntimeConfig(BackendConfig, LaneSettings):
    threads: int = Field(0, ge=0, le=64, description="intra-op threads of a lone inference; 0 = one per core")
    spin: bool = Field(
        True,
        description="let the threads of a multi-thread inference spin between runs: about 10% lower "
                    "inference latency, but a quarter more CPU for a lone client; turn off when "
                    "cameras need the CPU")


class OnnxRuntimeCpuBackend(LaneBackendMixin, Backend):
    """A lone request runs on a session with ``threads`` threads (lowest latency); overlapping
    requests on lane sessions with ``split_threads`` threads each (see :mod:`.lanes`)."""

    type_key = "onnxruntime"
    title = "ONNX Runtime (CPU)"
    cpu = True
    config_model = OnnxRuntimeConfig
    convert_target = False  # it runs the ONNX variants `models install` makes
    max_batch = None

    def __init__(self, config: OnnxRuntimeConfig | None = None) -> None:
        super().__init__(config)
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

    def _new_session(self, model_path: Path, threads: int):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        if not self.config.spin:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        _share_arena(ort, opts)
        return ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])

    def _open(self, model_path: Path, manifest: ModelManifest) -> None:
        try:
            session = self._new_session(model_path, self.threads)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise BackendError(
                f"onnxruntime cannot load {model_path}: {exc}. Reinstall the model: "
                f"edgewatch models install {manifest.name}"
            ) from exc
        self._input_name = session.get_inputs()[0].name
        self._start_lanes(session, lambda threads: self._new_session(model_path, threads))

    def infer(self, batch: np.ndarray | dict[str, np.ndarray]) -> list[np.ndarray]:
        """``batch`` feeds the model's one input; a model with several (a text encoder's int64
        input_ids, attention_mask, token_type_ids) takes them as a dict by input name."""
        if self._lanes is None:
            raise BackendError("no model loaded")
        feeds = batch if isinstance(batch, dict) else {self._input_name: batch}
        with self._lanes.runtime() as session:
            return session.run(None, feeds)

    def close(self) -> None:
        self._close_lanes()
        super().close()
