"""ONNX Runtime on the CPU: the baseline every box can run."""

from __future__ import annotations

import os
import queue
import threading
import time
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from edgewatch.backends.base import Backend, BackendConfig, BackendError, ProbeResult
from edgewatch.backends.devices import importable
from edgewatch.models.manifest import ModelManifest


SPLIT_HOLD_S = 0.25  # after requests last overlapped, keep splitting this long


_arena_lock = threading.Lock()
_arena_registered = False


def _share_arena(ort, opts) -> None:
    """Make the session allocate from one process-wide CPU arena instead of its own.

    Each one-thread session would otherwise grow an arena as big as the multi-thread one's:
    measured, the two one-thread sessions of centernet fp32 cost 193 MB with their own arenas
    and 111 MB with the shared one, at the same speed.
    """
    global _arena_registered
    with _arena_lock:
        if not _arena_registered:
            cpu = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
            ort.create_and_register_allocator(cpu, ort.OrtArenaCfg(0, -1, -1, -1))
            _arena_registered = True
    opts.add_session_config_entry("session.use_env_allocators", "1")


class OnnxRuntimeConfig(BackendConfig):
    threads: int = Field(0, ge=0, le=64, description="intra-op threads of one inference; 0 = one per core")
    overlap: Literal["split", "share"] = Field(
        "split",
        description="when requests overlap: 'split' runs each on its own one-thread session, so the "
                    "cores are shared out between requests; 'share' runs them all on the one session")
    spin: bool = Field(
        True,
        description="let the threads of a multi-thread inference spin between runs: about 10% lower "
                    "inference latency, but a quarter more CPU for a lone client; turn off when "
                    "cameras need the CPU")


class OnnxRuntimeCpuBackend(Backend):
    """One session with ``threads`` threads serves a request that runs alone (lowest latency).

    Once requests overlap (``overlap: split``), every request for the next quarter second runs on a
    one-thread session of its own (created on first need, at most one per thread), even one
    that happens to start alone: under load the requests' decode and pre/postprocessing leave
    gaps, and a multi-thread inference started in such a gap would fight the others for the
    cores. On a small CPU this is what makes concurrency pay: one-thread inferences side by
    side get more done than multi-thread ones after each other, whose threads wait on each
    other at every layer (measured on 2 cores: about 1.3×).
    """

    type_key = "onnxruntime"
    title = "ONNX Runtime (CPU)"
    config_model = OnnxRuntimeConfig

    def __init__(self, config: OnnxRuntimeConfig | None = None) -> None:
        super().__init__(config)
        self._session = None
        self._model_path: Path | None = None
        self._input_name = ""
        self._lock = threading.Lock()
        self._running = 0  # inferences now running, on any session
        self._split_until = 0.0  # monotonic time until which requests keep to one-thread sessions
        self._narrow: queue.SimpleQueue = queue.SimpleQueue()  # idle one-thread sessions
        self._narrow_made = 0

    @classmethod
    def probe(cls) -> ProbeResult:
        if not importable("onnxruntime"):
            return ProbeResult(False, "onnxruntime not importable: pip install onnxruntime")
        import onnxruntime as ort

        return ProbeResult(True, f"onnxruntime {ort.__version__}, CPUExecutionProvider, {os.cpu_count()} cores")

    @property
    def execution_provider(self) -> str:
        return "CPU"

    @property
    def threads(self) -> int:
        return self.config.threads or (os.cpu_count() or 1)

    @property
    def one_thread_sessions(self) -> int:
        """How many one-thread sessions overlapping requests have needed so far."""
        return self._narrow_made

    @property
    def splitting(self) -> bool:
        """Whether a request starting now would get a one-thread session."""
        return self.config.overlap == "split" and (self._running > 0 or time.monotonic() < self._split_until)

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
            self._session = self._new_session(model_path, self.threads)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise BackendError(
                f"onnxruntime cannot load {model_path}: {exc}. Reinstall the model: "
                f"edgewatch models install {manifest.name}"
            ) from exc
        self._model_path = model_path
        self._input_name = self._session.get_inputs()[0].name

    def _take_session(self):
        """(session, is_wide): the wide session unless requests overlap, else a one-thread one."""
        with self._lock:
            session = self._session
            if session is None:
                raise BackendError("no model loaded")
            self._running += 1
            if self.config.overlap == "share" or self.threads == 1:
                return session, True
            now = time.monotonic()
            if self._running > 1:
                self._split_until = now + SPLIT_HOLD_S
            elif now >= self._split_until:
                return session, True
            try:
                return self._narrow.get_nowait(), False
            except queue.Empty:
                pass
            make = self._narrow_made < self.threads
            if make:
                self._narrow_made += 1
        if not make:
            return self._narrow.get(), False
        try:
            return self._new_session(self._model_path, 1), False
        except Exception:
            with self._lock:
                self._narrow_made -= 1
                self._running -= 1
            raise

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        session, wide = self._take_session()
        try:
            return session.run(None, {self._input_name: batch})
        finally:
            if not wide:
                self._narrow.put(session)
            with self._lock:
                self._running -= 1

    def close(self) -> None:
        with self._lock:
            self._session = None
            self._narrow = queue.SimpleQueue()
            self._narrow_made = 0
        super().close()
