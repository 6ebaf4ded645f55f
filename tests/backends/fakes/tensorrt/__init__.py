"""A stand-in for NVIDIA's ``tensorrt`` module (TensorRT 10 API) on a machine with no GPU.

Names, signatures and failure modes follow the real API: ``OnnxParser.parse`` returns False and
keeps errors, ``build_serialized_network`` returns None on failure (also for a network with
dynamic inputs and no optimisation profile covering them), ``deserialize_cuda_engine`` returns
None for a foreign plan, ``IOptimizationProfile.set_shape`` raises ValueError for inconsistent
min/opt/max, ``IExecutionContext.set_input_shape`` returns False outside the profile and
``execute_async_v3`` returns False while an input shape is unset (or a buffer is too small).
Engines report -1 for dynamic dims; the context resolves them. The "engine" is onnxruntime on the
parsed ONNX; it reads and writes the device addresses given to ``set_tensor_address`` (host
memory in the fake cudart).
"""

from __future__ import annotations

import ctypes
import json

import numpy as np

__version__ = "10.99.0-fake"
_PLAN_MAGIC = b"FAKE-TRT-PLAN\n"


class FakeGpu:
    builds = 0
    build_fails = False
    flags: set[str] = set()
    profiles: list[dict[str, list[tuple[int, ...]]]] = []  # the last build's, as set_shape got them

    @classmethod
    def reset(cls) -> None:
        cls.builds, cls.build_fails, cls.flags, cls.profiles = 0, False, set(), []


class Logger:
    WARNING = 2
    INFO = 3
    ERROR = 1

    def __init__(self, severity: int = WARNING) -> None:
        self.severity = severity


class BuilderFlag:
    FP16 = "FP16"
    INT8 = "INT8"


class MemoryPoolType:
    WORKSPACE = "WORKSPACE"


class TensorIOMode:
    INPUT = "INPUT"
    OUTPUT = "OUTPUT"


class DataType:
    FLOAT = np.float32


def nptype(dtype):
    return dtype


def _dims(shape) -> tuple[int, ...]:
    """An onnxruntime shape as TensorRT Dims: symbolic dims are -1."""
    return tuple(d if isinstance(d, int) and d > 0 else -1 for d in shape)


class _Tensor:
    def __init__(self, name: str, shape: tuple[int, ...]) -> None:
        self.name, self.shape = name, shape


class _Network:
    def __init__(self) -> None:
        self.onnx: bytes | None = None
        self._inputs: list[_Tensor] = []

    @property
    def num_inputs(self) -> int:
        return len(self._inputs)

    def get_input(self, i: int) -> _Tensor:
        return self._inputs[i]


class OnnxParser:
    def __init__(self, network: _Network, logger: Logger) -> None:
        self.network, self._errors = network, []

    def parse(self, data: bytes) -> bool:
        import onnx

        try:
            model = onnx.load_from_string(data)
        except Exception as exc:
            self._errors = [f"ModelImporter: failed to parse ONNX ({exc.__class__.__name__})"]
            return False
        weights = {w.name for w in model.graph.initializer}
        self.network.onnx = data
        self.network._inputs = [
            _Tensor(i.name, tuple(d.dim_value if d.dim_value > 0 else -1 for d in i.type.tensor_type.shape.dim))
            for i in model.graph.input if i.name not in weights]
        return True

    @property
    def num_errors(self) -> int:
        return len(self._errors)

    def get_error(self, i: int) -> str:
        return self._errors[i]


class IOptimizationProfile:
    def __init__(self) -> None:
        self.shapes: dict[str, list[tuple[int, ...]]] = {}

    def set_shape(self, input: str, min, opt, max) -> None:
        low, mid, high = (tuple(int(d) for d in s) for s in (min, opt, max))
        if not len(low) == len(mid) == len(high) or not all(1 <= a <= b <= c for a, b, c in zip(low, mid, high)):
            raise ValueError(f"inconsistent shapes for {input}: min {low}, opt {mid}, max {high}")
        self.shapes[input] = [low, mid, high]

    def get_shape(self, input: str) -> list[tuple[int, ...]]:
        return self.shapes.get(input, [])


class _BuilderConfig:
    def __init__(self) -> None:
        self.flags: set[str] = set()
        self.profiles: list[IOptimizationProfile] = []

    def set_memory_pool_limit(self, pool: str, size: int) -> None:
        self.workspace = size

    def set_flag(self, flag: str) -> None:
        self.flags.add(flag)

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        if not profile.shapes:
            return -1
        self.profiles.append(profile)
        return len(self.profiles) - 1


def _profile_fits(network: _Network, profile: dict[str, list[tuple[int, ...]]]) -> bool:
    """The builder's check: every dynamic input covered, fixed dims kept, ranks equal."""
    for tensor in network._inputs:
        shapes = profile.get(tensor.name)
        if shapes is None:
            if -1 in tensor.shape:
                return False  # "Network has dynamic or shape inputs, but no optimization profile has been defined."
            continue
        for shape in shapes:
            if len(shape) != len(tensor.shape) or any(d not in (-1, s) for d, s in zip(tensor.shape, shape)):
                return False
    return set(profile) <= {t.name for t in network._inputs}


class Builder:
    platform_has_fast_fp16 = True

    def __init__(self, logger: Logger) -> None:
        self.logger = logger

    def create_network(self, flags: int = 0) -> _Network:
        return _Network()

    def create_builder_config(self) -> _BuilderConfig:
        return _BuilderConfig()

    def create_optimization_profile(self) -> IOptimizationProfile:
        return IOptimizationProfile()

    def build_serialized_network(self, network: _Network, config: _BuilderConfig):
        profile = config.profiles[0].shapes if config.profiles else {}
        if FakeGpu.build_fails or network.onnx is None or not _profile_fits(network, profile):
            return None
        FakeGpu.builds += 1
        FakeGpu.flags = set(config.flags)
        FakeGpu.profiles = [p.shapes for p in config.profiles]
        header = json.dumps({n: [list(s) for s in shapes] for n, shapes in profile.items()}).encode()
        return _PLAN_MAGIC + header + b"\n" + network.onnx


class _Engine:
    def __init__(self, onnx_bytes: bytes, profile: dict[str, list[tuple[int, ...]]]) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
        self.profile = profile
        self.io = [(i.name, _dims(i.shape), TensorIOMode.INPUT) for i in self.session.get_inputs()] + \
                  [(o.name, _dims(o.shape), TensorIOMode.OUTPUT) for o in self.session.get_outputs()]
        self._output_shapes: dict[tuple, list[tuple[int, ...]]] = {}

    @property
    def num_io_tensors(self) -> int:
        return len(self.io)

    def get_tensor_name(self, i: int) -> str:
        return self.io[i][0]

    def get_tensor_mode(self, name: str) -> str:
        return next(m for n, _, m in self.io if n == name)

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return next(s for n, s, _ in self.io if n == name)

    def get_tensor_dtype(self, name: str):
        return DataType.FLOAT

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[tuple[int, ...]]:
        if self.get_tensor_mode(name) != TensorIOMode.INPUT or profile_index != 0:
            raise RuntimeError(f"no profile {profile_index} shapes for tensor {name}")
        return list(self.profile.get(name) or [self.get_tensor_shape(name)] * 3)

    def create_execution_context(self) -> "_Context":
        return _Context(self)

    def output_shapes(self, inputs: dict[str, tuple[int, ...]]) -> list[tuple[int, ...]]:
        """What TensorRT's shape inference gives: here, the shapes onnxruntime produces on zeros."""
        key = tuple(sorted(inputs.items()))
        if key not in self._output_shapes:
            feed = {n: np.zeros(s, np.float32) for n, s in inputs.items()}
            self._output_shapes[key] = [o.shape for o in self.session.run(None, feed)]
        return self._output_shapes[key]


class _Context:
    def __init__(self, engine: _Engine) -> None:
        self.engine, self.addresses = engine, {}
        self.shapes = {n: s for n, s, m in engine.io if m == TensorIOMode.INPUT}

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self.addresses[name] = ptr
        return True

    def set_input_shape(self, name: str, shape) -> bool:
        shape = tuple(int(d) for d in shape)
        low, _, high = self.engine.get_tensor_profile_shape(name, 0)
        if len(shape) != len(low) or not all(a <= d <= b for a, d, b in zip(low, shape, high)):
            return False  # the real one logs "... is out of the range of the optimization profile"
        self.shapes[name] = shape
        return True

    def _specified(self) -> bool:
        return all(-1 not in s for s in self.shapes.values())

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        if name in self.shapes:
            return self.shapes[name]
        if not self._specified():
            return self.engine.get_tensor_shape(name)
        outputs = [n for n, _, m in self.engine.io if m == TensorIOMode.OUTPUT]
        return self.engine.output_shapes(self.shapes)[outputs.index(name)]

    def _view(self, name: str) -> np.ndarray | None:
        """The tensor at its device address, or None when the buffer there is too small for it."""
        from cuda.bindings.runtime import allocation_size

        shape = self.get_tensor_shape(name)
        n = int(np.prod(shape))
        if (allocation_size(self.addresses.get(name, 0)) or 0) < n * 4:
            return None
        buf = (ctypes.c_float * n).from_address(self.addresses[name])
        return np.ctypeslib.as_array(buf).reshape(shape)

    def execute_async_v3(self, stream_handle: int) -> bool:
        if not self._specified():
            return False
        views = {n: self._view(n) for n, _, _ in self.engine.io}
        if any(v is None for v in views.values()):
            return False  # on a GPU: an illegal memory access
        inputs = {n: views[n].copy() for n in self.shapes}
        outputs = self.engine.session.run(None, inputs)
        for (name, _, _), value in zip([io for io in self.engine.io if io[2] == TensorIOMode.OUTPUT], outputs):
            views[name][...] = value
        return True


class Runtime:
    def __init__(self, logger: Logger) -> None:
        self.logger = logger

    def deserialize_cuda_engine(self, plan: bytes):
        plan = bytes(plan)
        if not plan.startswith(_PLAN_MAGIC):
            return None
        header, onnx_bytes = plan[len(_PLAN_MAGIC):].split(b"\n", 1)
        profile = {n: [tuple(s) for s in shapes] for n, shapes in json.loads(header).items()}
        return _Engine(onnx_bytes, profile)
