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

    Each lane session would otherwise grow an arena as big as the main one's: measured, the
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


class OnnxRuntimeConfig(BackendConfig):
    threads: int = Field(0, ge=0, le=64, description="intra-op threads of a lone inference; 0 = one per core")
    overlap: Literal["split", "share"] = Field(
        "split",
        description="when requests overlap: 'split' runs each on a session of its own with "
                    "split_threads threads, so the cores are shared out between requests; 'share' "
                    "runs them all on the one session")
    split_threads: int = Field(
        0, ge=0, le=64,
        description="threads of each session that overlapping requests run on; 0 = threads ÷ "
                    "inference.workers (the daemon fills it in), at least 1")
    spin: bool = Field(
        True,
        description="let the threads of a multi-thread inference spin between runs: about 10% lower "
                    "inference latency, but a quarter more CPU for a lone client; turn off when "
                    "cameras need the CPU")


class OnnxRuntimeCpuBackend(Backend):
    """A lone request runs on the main session, with ``threads`` threads (lowest latency).

    Once requests overlap (``overlap: split``), every request for the next quarter second runs
    on a lane session of its own with ``split_threads`` threads (made on first need, as many as
    fit in ``threads``), even one that happens to start alone: under load the requests' decode
    and pre/postprocessing leave gaps, and a main-session inference started in such a gap would
    fight the others for the cores. On a small CPU this is what makes concurrency pay: narrow
    inferences side by side get more done than wide ones after each other, whose threads wait
    on each other at every layer (measured on 2 cores: about 1.4×).
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
        self._split_until = 0.0  # monotonic time until which requests keep to lane sessions
        self._lanes: queue.SimpleQueue = queue.SimpleQueue()  # idle lane sessions
        self._lanes_made = 0

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
    def split_threads(self) -> int:
        return min(self.threads, self.config.split_threads or max(1, self.threads // 2))

    @property
    def max_lanes(self) -> int:
        """Lane sessions that fit side by side in ``threads``; 0 when overlapping requests share."""
        if self.config.overlap == "share" or self.threads == 1:
            return 0
        return max(1, self.threads // self.split_threads)

    @property
    def lane_sessions(self) -> int:
        """How many lane sessions overlapping requests have needed so far."""
        return self._lanes_made

    @property
    def splitting(self) -> bool:
        """Whether a request starting now would get a lane session."""
        return self.max_lanes > 0 and (self._running > 0 or time.monotonic() < self._split_until)

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
        """(session, is_lane): the main session unless requests overlap, else a lane session."""
        with self._lock:
            session = self._session
            if session is None:
                raise BackendError("no model loaded")
            self._running += 1
            if self.max_lanes == 0:
                return session, False
            now = time.monotonic()
            if self._running > 1:
                self._split_until = now + SPLIT_HOLD_S
            elif now >= self._split_until:
                return session, False
            try:
                return self._lanes.get_nowait(), True
            except queue.Empty:
                pass
            make = self._lanes_made < self.max_lanes
            if make:
                self._lanes_made += 1
        if not make:
            return self._wait_for_lane(), True
        try:
            return self._new_session(self._model_path, self.split_threads), True
        except Exception:
            with self._lock:
                self._lanes_made -= 1
                self._running -= 1
            raise

    def _wait_for_lane(self):
        """Every lane is busy: wait for one rather than crowd the cores."""
        while True:
            try:
                return self._lanes.get(timeout=0.1)
            except queue.Empty:
                if self._session is None:
                    with self._lock:
                        self._running -= 1
                    raise BackendError("the model was unloaded (settings reload or shutdown); send the request again")

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        session, lane = self._take_session()
        try:
            return session.run(None, {self._input_name: batch})
        finally:
            with self._lock:
                self._running -= 1
                if lane and self._session is not None:
                    self._lanes.put(session)

    def close(self) -> None:
        with self._lock:
            self._session = None
            while not self._lanes.empty():
                self._lanes.get_nowait()
            self._lanes_made = 0
        super().close()
