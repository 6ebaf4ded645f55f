"""A stand-in for NVIDIA's ``tensorrt`` module (TensorRT 10 API) on a machine with no GPU.

Names, signatures and failure modes follow the real API: ``OnnxParser.parse`` returns False and
keeps errors, ``build_serialized_network`` returns None on failure, ``deserialize_cuda_engine``
returns None for a foreign plan. The "engine" is onnxruntime on the parsed ONNX; it reads and
writes the device addresses given to ``set_tensor_address`` (host memory in the fake cudart).
"""

from __future__ import annotations

import ctypes

import numpy as np

__version__ = "10.99.0-fake"
_PLAN_MAGIC = b"FAKE-TRT-PLAN\n"


class FakeGpu:
    builds = 0
    build_fails = False
    flags: set[str] = set()

    @classmethod
    def reset(cls) -> None:
        cls.builds, cls.build_fails, cls.flags = 0, False, set()


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


class _Network:
    def __init__(self) -> None:
        self.onnx: bytes | None = None


class OnnxParser:
    def __init__(self, network: _Network, logger: Logger) -> None:
        self.network, self._errors = network, []

    def parse(self, data: bytes) -> bool:
        import onnx

        try:
            onnx.load_from_string(data)
        except Exception as exc:
            self._errors = [f"ModelImporter: failed to parse ONNX ({exc.__class__.__name__})"]
            return False
        self.network.onnx = data
        return True

    @property
    def num_errors(self) -> int:
        return len(self._errors)

    def get_error(self, i: int) -> str:
        return self._errors[i]


class _BuilderConfig:
    def __init__(self) -> None:
        self.flags: set[str] = set()

    def set_memory_pool_limit(self, pool: str, size: int) -> None:
        self.workspace = size

    def set_flag(self, flag: str) -> None:
        self.flags.add(flag)


class Builder:
    platform_has_fast_fp16 = True

    def __init__(self, logger: Logger) -> None:
        self.logger = logger

    def create_network(self, flags: int = 0) -> _Network:
        return _Network()

    def create_builder_config(self) -> _BuilderConfig:
        return _BuilderConfig()

    def build_serialized_network(self, network: _Network, config: _BuilderConfig):
        if FakeGpu.build_fails or network.onnx is None:
            return None
        FakeGpu.builds += 1
        FakeGpu.flags = set(config.flags)
        return _PLAN_MAGIC + network.onnx


class _Engine:
    def __init__(self, onnx_bytes: bytes) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
        self.io = [(i.name, i.shape, TensorIOMode.INPUT) for i in self.session.get_inputs()] + \
                  [(o.name, o.shape, TensorIOMode.OUTPUT) for o in self.session.get_outputs()]

    @property
    def num_io_tensors(self) -> int:
        return len(self.io)

    def get_tensor_name(self, i: int) -> str:
        return self.io[i][0]

    def get_tensor_mode(self, name: str) -> str:
        return next(m for n, _, m in self.io if n == name)

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return tuple(next(s for n, s, _ in self.io if n == name))

    def get_tensor_dtype(self, name: str):
        return DataType.FLOAT

    def create_execution_context(self) -> "_Context":
        return _Context(self)


class _Context:
    def __init__(self, engine: _Engine) -> None:
        self.engine, self.addresses = engine, {}

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self.addresses[name] = ptr
        return True

    def _view(self, name: str) -> np.ndarray:
        shape = self.engine.get_tensor_shape(name)
        n = int(np.prod(shape))
        buf = (ctypes.c_float * n).from_address(self.addresses[name])
        return np.ctypeslib.as_array(buf).reshape(shape)

    def execute_async_v3(self, stream_handle: int) -> bool:
        inputs = {n: self._view(n).copy() for n, _, m in self.engine.io if m == TensorIOMode.INPUT}
        outputs = self.engine.session.run(None, inputs)
        for (name, _, mode), value in zip([io for io in self.engine.io if io[2] == TensorIOMode.OUTPUT], outputs):
            self._view(name)[...] = value
        return True


class Runtime:
    def __init__(self, logger: Logger) -> None:
        self.logger = logger

    def deserialize_cuda_engine(self, plan: bytes):
        if not bytes(plan).startswith(_PLAN_MAGIC):
            return None
        return _Engine(bytes(plan)[len(_PLAN_MAGIC):])
