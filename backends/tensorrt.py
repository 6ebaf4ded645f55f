"""NVIDIA Jetson through the ``tensorrt`` Python API (TensorRT 10), CUDA buffers via cuda-python.

On first load the store's ONNX is built into an engine (FP16 where the GPU has fast FP16) and
cached under ``engine_dir``, keyed by the ONNX sha256, the TensorRT version, the GPU name and
the precision, so later starts only deserialise it.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from edgewatch.backends.base import Backend, BackendConfig, BackendError, ProbeResult
from edgewatch.backends.devices import importable, jetson_release
from edgewatch.models.files import atomic_write_bytes, sha256_file
from edgewatch.models.manifest import ModelManifest


class TensorRtConfig(BackendConfig):
    precision: Literal["fp16", "int8", "fp32"] = Field(
        "fp16", description="fp16 (default, where the GPU has fast FP16); int8 builds from the store's QDQ "
                            "int8 ONNX, calibrated on real photos at install (explicit quantisation)")
    workspace_mb: int = Field(1024, ge=64, le=65536)
    engine_dir: Path | None = Field(None, description="engine cache; default <cache_dir>/tensorrt")


def _cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.8
    except ImportError:
        from cuda import cudart  # older cuda-python
    return cudart


def _check(result, what: str):
    """cuda-python returns (error, *values); raise BackendError unless error is cudaSuccess."""
    cudart = _cudart()
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != cudart.cudaError_t.cudaSuccess:
        raise BackendError(f"CUDA {what} failed ({err}); check the GPU with `tegrastats` or `nvidia-smi`")
    return values[0] if len(values) == 1 else values


class TensorRtBackend(Backend):
    type_key = "tensorrt"
    title = "NVIDIA TensorRT (Jetson)"
    runtime = "onnx"  # builds its engine from the store's ONNX
    can_use_gpu = True
    config_model = TensorRtConfig

    def __init__(self, config: BackendConfig | None = None) -> None:
        super().__init__(config)
        self._context = None
        self._engine = None
        self._buffers: dict[str, tuple[int, np.ndarray]] = {}
        self._inputs: list[str] = []
        self._outputs: list[str] = []
        self._stream = None
        self._lock = threading.Lock()

    @classmethod
    def complete_config(cls, config: BackendConfig, cache_dir: Path, workers: int) -> BackendConfig:
        """The engine cache defaults to ``<cache_dir>/tensorrt``."""
        if isinstance(config, TensorRtConfig) and config.engine_dir is None:
            return config.model_copy(update={"engine_dir": cache_dir / "tensorrt"})
        return config

    @classmethod
    def probe(cls) -> ProbeResult:
        release = jetson_release()
        if not release:
            return ProbeResult(False, "no Jetson found (no /etc/nv_tegra_release, no tegra in the device tree)",
                               hardware=False)
        if not importable("tensorrt"):
            return ProbeResult(False, f"{release} found but tensorrt not importable: install JetPack's "
                                      "python3-libnvinfer and use a venv with --system-site-packages", hardware=True)
        if not importable("cuda"):
            return ProbeResult(False, f"{release} with tensorrt, but cuda-python not importable: pip install cuda-python",
                               hardware=True)
        return ProbeResult(True, f"{release}, tensorrt and cuda-python importable", hardware=True)

    def pick_variant(self, manifest: ModelManifest) -> str | None:
        wanted = "int8" if self.config.precision == "int8" else "fp32"
        onnx = {k for k, v in manifest.variants.items() if v.runtime == "onnx"}
        return wanted if wanted in onnx else super().pick_variant(manifest)

    @property
    def execution_provider(self) -> str:
        return "GPU (TensorRT)"

    def _engine_path(self, trt, model_path: Path, device: str) -> Path:
        root = self.config.engine_dir or model_path.parent / "tensorrt"
        precision = self.config.precision
        tag = re.sub(r"[^A-Za-z0-9.]+", "_", f"{sha256_file(model_path)[:16]}-trt{trt.__version__}-{device}-{precision}")
        return root / f"{tag}.engine"

    def _build(self, trt, logger, model_path: Path) -> bytes:
        builder = trt.Builder(logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(model_path.read_bytes()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BackendError(f"TensorRT cannot parse {model_path.name}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, self.config.workspace_mb << 20)
        if self.config.precision in ("fp16", "int8") and builder.platform_has_fast_fp16:
            config.set_flag(trt.BuilderFlag.FP16)  # int8 engines keep unquantised layers in FP16
        if self.config.precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)  # scales come from the ONNX's Q/DQ nodes
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise BackendError(f"TensorRT could not build an engine for {model_path.name}; see the log above")
        return bytes(plan)

    def _open(self, model_path: Path, manifest: ModelManifest) -> None:
        try:
            import tensorrt as trt
        except ImportError as exc:
            raise BackendError(f"tensorrt not importable ({exc})") from exc
        cudart = _cudart()
        logger = trt.Logger(trt.Logger.WARNING)
        props = _check(cudart.cudaGetDeviceProperties(0), "device query")
        device = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
        engine_path = self._engine_path(trt, model_path, device)
        plan = engine_path.read_bytes() if engine_path.is_file() else None
        if plan is None:
            plan = self._build(trt, logger, model_path)
            atomic_write_bytes(engine_path, plan)
        engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
        if engine is None:  # a stale or foreign cache file: rebuild once
            engine_path.unlink(missing_ok=True)
            engine = trt.Runtime(logger).deserialize_cuda_engine(self._build(trt, logger, model_path))
            if engine is None:
                raise BackendError(f"TensorRT could not deserialise the engine for {model_path.name}")
        self._engine, self._context = engine, engine.create_execution_context()
        self._stream = _check(cudart.cudaStreamCreate(), "stream creation")
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            host = np.empty(tuple(engine.get_tensor_shape(name)), dtype=trt.nptype(engine.get_tensor_dtype(name)))
            ptr = _check(cudart.cudaMalloc(host.nbytes), "allocation")
            self._buffers[name] = (ptr, host)
            self._context.set_tensor_address(name, ptr)
            (self._inputs if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else self._outputs).append(name)

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        if self._context is None:
            raise BackendError("no model loaded")
        cudart = _cudart()
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        with self._lock:  # one execution context: the GPU runs one request at a time anyway
            ptr, host = self._buffers[self._inputs[0]]
            src = np.ascontiguousarray(batch, dtype=host.dtype)
            _check(cudart.cudaMemcpyAsync(ptr, src.ctypes.data, src.nbytes, h2d, self._stream), "copy to GPU")
            if not self._context.execute_async_v3(self._stream):
                raise BackendError("TensorRT execution failed; see the log above")
            outputs = []
            for name in self._outputs:
                ptr, host = self._buffers[name]
                out = np.empty_like(host)
                _check(cudart.cudaMemcpyAsync(out.ctypes.data, ptr, out.nbytes, d2h, self._stream), "copy from GPU")
                outputs.append(out)
            _check(cudart.cudaStreamSynchronize(self._stream), "synchronise")
        return [o.astype(np.float32, copy=False) for o in outputs]

    def close(self) -> None:
        if self._buffers or self._stream is not None:
            cudart = _cudart()
            for ptr, _ in self._buffers.values():
                cudart.cudaFree(ptr)
            if self._stream is not None:
                cudart.cudaStreamDestroy(self._stream)
        self._buffers, self._inputs, self._outputs = {}, [], []
        self._context = self._engine = self._stream = None
        super().close()
