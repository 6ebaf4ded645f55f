"""NVIDIA Jetson through the ``tensorrt`` Python API (TensorRT 10), CUDA buffers via cuda-python.

On first load the store's ONNX is built into an engine (FP16 where the GPU has fast FP16) and
cached under ``engine_dir``, keyed by the ONNX sha256, the TensorRT version, the GPU name and
the precision (and, for a dynamic-shape model, its optimisation profile), so later starts only
deserialise it.

Dynamic dimensions (-1 in the ONNX: CenterFace's N, H, W; MobileFaceNet's batch) get one
optimisation profile from the manifest's input spec: batch 1..EMBED_BATCH for embedders (1 for
detectors), H and W from ``multiple_of`` up to the spec's size. Buffers are allocated for the
profile's largest input; each run sets its input shape and reads its outputs' shapes back from
the context.
"""

from __future__ import annotations

import hashlib
import re
import threading
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from edgewatch.backends.base import Backend, BackendConfig, BackendError, ProbeResult
from edgewatch.backends.devices import importable, jetson_release
from edgewatch.models.files import atomic_write_bytes, sha256_file
from edgewatch.models.manifest import InputSpec, ModelManifest
from edgewatch.models.runtime.faces import EMBED_BATCH

Shape = tuple[int, ...]
Profile = dict[str, tuple[Shape, Shape, Shape]]  # input name -> (min, opt, max)


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


def _onnx_inputs(model_path: Path) -> dict[str, Shape]:
    """The ONNX graph's inputs and their dims, -1 where a dim is symbolic (as TensorRT sees them)."""
    import onnx

    try:
        graph = onnx.load(str(model_path), load_external_data=False).graph
    except Exception as exc:  # protobuf's DecodeError and friends: a damaged file
        raise BackendError(f"cannot read {model_path.name} as ONNX ({exc.__class__.__name__}); "
                           "the file is damaged: install the model again") from exc
    weights = {w.name for w in graph.initializer}
    return {i.name: tuple(d.dim_value if d.dim_value > 0 else -1 for d in i.type.tensor_type.shape.dim)
            for i in graph.input if i.name not in weights}


def profile_for(inputs: dict[str, Shape], spec: InputSpec, max_batch: int) -> Profile:
    """min/opt/max of each input with dynamic dims: batch 1..max_batch (opt 1), H and W from
    ``spec.multiple_of`` (else the spec's size) up to the spec's size (opt = max), other dims as
    the spec has them. Empty for a fixed-shape model."""
    spatial = (2, 3) if spec.layout == "nchw" else (1, 2)

    def _range(axis: int, dim: int, size: int) -> tuple[int, int]:
        if dim != -1:
            return dim, dim
        if axis == 0:
            return 1, max_batch
        if axis in spatial:
            return spec.multiple_of or size, size
        return size, size

    profile: Profile = {}
    for name, dims in inputs.items():
        if -1 not in dims:
            continue
        if len(dims) != len(spec.shape):
            raise BackendError(f"the ONNX input {name} has dims {dims} but the manifest describes {spec.shape}; "
                               "the model files do not match: remove the model and install it again")
        low, high = zip(*(_range(axis, dim, size) for axis, (dim, size) in enumerate(zip(dims, spec.shape))))
        profile[name] = (tuple(low), (low[0], *high[1:]), tuple(high))
    return profile


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
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes allocated)
        self._dtypes: dict[str, np.dtype] = {}
        self._inputs: list[str] = []
        self._outputs: list[str] = []
        self._fed: Shape | None = None  # the input shape the context is set to
        self._dynamic = False
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

    def _engine_path(self, trt, model_path: Path, device: str, profile: Profile) -> Path:
        root = self.config.engine_dir or model_path.parent / "tensorrt"
        parts = [sha256_file(model_path)[:16], f"trt{trt.__version__}", device]
        if profile:  # fixed-shape engines keep their old names
            parts.append("dyn" + hashlib.sha256(repr(sorted(profile.items())).encode()).hexdigest()[:8])
        tag = re.sub(r"[^A-Za-z0-9.]+", "_", "-".join([*parts, self.config.precision]))
        return root / f"{tag}.engine"

    def _build(self, trt, logger, model_path: Path, profile: Profile) -> bytes:
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
        if profile:
            self._add_profile(builder, config, profile, model_path)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise BackendError(f"TensorRT could not build an engine for {model_path.name}; see the log above")
        return bytes(plan)

    @staticmethod
    def _add_profile(builder, config, profile: Profile, model_path: Path) -> None:
        trt_profile = builder.create_optimization_profile()
        try:
            for name, (low, opt, high) in profile.items():
                trt_profile.set_shape(name, low, opt, high)
        except ValueError as exc:
            raise BackendError(f"TensorRT rejected the input sizes {profile} for {model_path.name} ({exc}); "
                               "check the manifest's input shape and multiple_of") from exc
        if config.add_optimization_profile(trt_profile) < 0:
            raise BackendError(f"TensorRT rejected the optimisation profile {profile} for {model_path.name}")

    def _open(self, model_path: Path, manifest: ModelManifest) -> None:
        try:
            import tensorrt as trt
        except ImportError as exc:
            raise BackendError(f"tensorrt not importable ({exc})") from exc
        cudart = _cudart()
        logger = trt.Logger(trt.Logger.WARNING)
        props = _check(cudart.cudaGetDeviceProperties(0), "device query")
        device = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
        # Only embedders are fed batches (runtime.faces.embed); a detector's batch of one keeps
        # the engine's activation memory to one image.
        max_batch = EMBED_BATCH if manifest.task == "face_embedding" else 1
        profile = profile_for(_onnx_inputs(model_path), manifest.input, max_batch)
        engine_path = self._engine_path(trt, model_path, device, profile)
        plan = engine_path.read_bytes() if engine_path.is_file() else None
        if plan is None:
            plan = self._build(trt, logger, model_path, profile)
            atomic_write_bytes(engine_path, plan)
        engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
        if engine is None:  # a stale or foreign cache file: rebuild once
            engine_path.unlink(missing_ok=True)
            engine = trt.Runtime(logger).deserialize_cuda_engine(self._build(trt, logger, model_path, profile))
            if engine is None:
                raise BackendError(f"TensorRT could not deserialise the engine for {model_path.name}")
        self._engine, self._context = engine, engine.create_execution_context()
        self._stream = _check(cudart.cudaStreamCreate(), "stream creation")
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            self._dtypes[name] = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            (self._inputs if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else self._outputs).append(name)
        self._allocate()

    def _allocate(self) -> None:
        """Buffers for the largest input the engine takes (its profile's max) and its outputs."""
        engine, name = self._engine, self._inputs[0]
        shape = tuple(engine.get_tensor_shape(name))
        self._dynamic = -1 in shape
        if self._dynamic:
            shape = tuple(engine.get_tensor_profile_shape(name, 0)[2])
            self._set_input_shape(shape)
        self._fed = shape
        self.max_batch = shape[0]  # what runtime.faces.embed feeds at most
        for tensor in self._inputs:
            self._reserve(tensor, tuple(self._context.get_tensor_shape(tensor)))
        for tensor in self._outputs:
            self._reserve(tensor, tuple(self._context.get_tensor_shape(tensor)))

    def _reserve(self, name: str, shape: Shape) -> None:
        """Make ``name``'s device buffer hold ``shape``, reallocating only when it has to grow."""
        if min(shape, default=0) < 0:
            raise BackendError(f"TensorRT cannot tell the size of {name} ({shape}) before running; "
                               "data-dependent output shapes are not supported, use the onnxruntime backend")
        nbytes = int(np.prod(shape)) * self._dtypes[name].itemsize
        ptr, have = self._buffers.get(name, (0, -1))
        if nbytes <= have:
            return
        cudart = _cudart()
        if ptr:
            _check(cudart.cudaFree(ptr), "free")
            del self._buffers[name]
        ptr = _check(cudart.cudaMalloc(max(nbytes, 1)), "allocation")
        self._buffers[name] = (ptr, nbytes)
        self._context.set_tensor_address(name, ptr)

    def _set_input_shape(self, shape: Shape) -> None:
        name = self._inputs[0]
        if not self._context.set_input_shape(name, shape):
            low, _, high = (tuple(s) for s in self._engine.get_tensor_profile_shape(name, 0))
            if shape[0] > high[0]:
                fix = f"feed at most {high[0]} samples per run"
            else:
                fix = "feed an input within these sizes (preprocess with the backend's input_format())"
            raise BackendError(f"input {name} of shape {shape} is outside what the TensorRT engine was built "
                               f"for: from {low} to {high}; {fix}")

    def _feed(self, shape: Shape) -> None:
        """Set the context to this run's input shape; grow output buffers if they must."""
        if shape == self._fed:
            return
        if not self._dynamic:
            raise BackendError(f"input {self._inputs[0]} of shape {shape}, but this engine takes exactly "
                               f"{self._fed}; preprocess with the backend's input_format()")
        self._set_input_shape(shape)
        self._fed = shape
        for name in self._outputs:
            self._reserve(name, tuple(self._context.get_tensor_shape(name)))

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        if self._context is None:
            raise BackendError("no model loaded")
        cudart = _cudart()
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        with self._lock:  # one execution context: the GPU runs one request at a time anyway
            name = self._inputs[0]
            src = np.ascontiguousarray(batch, dtype=self._dtypes[name])
            self._feed(src.shape)
            _check(cudart.cudaMemcpyAsync(self._buffers[name][0], src.ctypes.data, src.nbytes, h2d, self._stream),
                   "copy to GPU")
            if not self._context.execute_async_v3(self._stream):
                raise BackendError("TensorRT execution failed; see the log above")
            outputs = []
            for name in self._outputs:
                out = np.empty(tuple(self._context.get_tensor_shape(name)), self._dtypes[name])
                _check(cudart.cudaMemcpyAsync(out.ctypes.data, self._buffers[name][0], out.nbytes, d2h,
                                              self._stream), "copy from GPU")
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
        self._buffers, self._dtypes, self._inputs, self._outputs = {}, {}, [], []
        self._context = self._engine = self._stream = self._fed = None
        self._dynamic = False
        super().close()
