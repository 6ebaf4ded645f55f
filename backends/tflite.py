"""TFLite on the CPU (XNNPACK), for a Raspberry Pi with no accelerator; runs `.tflite` variants.

The interpreter comes from ai-edge-litert (numpy 2, aarch64 wheels) or, when that is what the
box has, tflite-runtime (numpy < 2). Quantised outputs are dequantised here with the model's own
scale and zero point, so the pipeline always gets back float tensors. An int8 input is asked for
as such (see ``input_format``: the letterbox quantises); a float tensor is still quantised here.
"""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path
from types import ModuleType

import numpy as np
from pydantic import Field

from edgewatch.backends.base import Backend, BackendConfig, BackendError, ProbeResult
from edgewatch.backends.devices import importable
from edgewatch.backends.lanes import LaneBackendMixin, LaneSettings
from edgewatch.models.manifest import InputSpec, ModelManifest, Preprocessing
from edgewatch.models.runtime.layouts import dequantise
from edgewatch.models.tensor_info import TensorInfo

INTERPRETER_MODULES = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter")


def interpreter_module() -> ModuleType | None:
    """The first importable TFLite interpreter module, or None."""
    for name in INTERPRETER_MODULES:
        if importable(name.split(".")[0]):
            try:
                return importlib.import_module(name)
            except ImportError:
                continue
    return None


class TfliteConfig(BackendConfig, LaneSettings):
    threads: int = Field(0, ge=0, le=64, description="XNNPACK threads of a lone inference; 0 = one per core")


class TfliteCpuBackend(LaneBackendMixin, Backend):
    """A lone request runs on an interpreter with ``threads`` threads; overlapping requests on
    lane interpreters with ``split_threads`` threads each (see :mod:`.lanes`). An interpreter
    is never invoked by two threads at once."""

    type_key = "tflite"
    title = "TFLite (CPU, XNNPACK)"
    runtime = "tflite"
    cpu = True
    config_model = TfliteConfig

    @classmethod
    def probe(cls) -> ProbeResult:
        module = interpreter_module()
        if module is None:
            return ProbeResult(False, "no TFLite interpreter importable: pip install ai-edge-litert "
                                      "(or tflite-runtime on a numpy<2 environment)")
        return ProbeResult(True, f"{module.__name__.split('.')[0]} interpreter, XNNPACK, {os.cpu_count()} cores")

    @property
    def execution_provider(self) -> str:
        return "CPU"

    def _make_interpreter(self, module: ModuleType, model_path: Path, threads: int):
        return module.Interpreter(model_path=str(model_path), num_threads=threads)

    def _ready_interpreter(self, module: ModuleType, model_path: Path, threads: int):
        interpreter = self._make_interpreter(module, model_path, threads)
        interpreter.allocate_tensors()
        return interpreter

    def _open(self, model_path: Path, manifest: ModelManifest) -> None:
        module = interpreter_module()
        if module is None:
            raise BackendError("no TFLite interpreter importable: pip install ai-edge-litert")
        try:
            interpreter = self._ready_interpreter(module, model_path, self.threads)
        except BackendError:
            raise
        except (ValueError, RuntimeError, OSError) as exc:  # what the interpreter raises for bad files
            raise BackendError(f"the TFLite interpreter cannot load {model_path.name} ({exc}); convert it again: "
                               f"edgewatch models convert {manifest.name} --target {self.type_key}") from exc
        self._input = interpreter.get_input_details()[0]
        self._outputs = graph_order(interpreter.get_output_details())
        self._start_lanes(interpreter, lambda threads: self._ready_interpreter(module, model_path, threads))

    def input_format(self) -> tuple[InputSpec, Preprocessing]:
        """For an int8-quantised input, the int8 tensor itself: the input's scale and zero point
        folded into mean and std, so the letterbox quantises in its one table lookup."""
        spec, pre = super().input_format()
        detail = getattr(self, "_input", None)
        if spec.dtype != "float32" or detail is None or np.dtype(detail["dtype"]) != np.int8:
            return spec, pre
        scale, zero = detail["quantization"]
        if not scale:
            return spec, pre
        mean = tuple(m - zero * s * scale for m, s in zip(pre.mean, pre.std))
        std = tuple(s * scale for s in pre.std)
        return spec.model_copy(update={"dtype": "int8"}), pre.model_copy(update={"mean": mean, "std": std})

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        if self._lanes is None:
            raise BackendError("no model loaded")
        x = _quantise(batch, self._input)
        with self._lanes.runtime() as interpreter:
            interpreter.set_tensor(self._input["index"], x)
            interpreter.invoke()
            raw = [interpreter.get_tensor(o["index"]) for o in self._outputs]
        return [_dequantise(r, o) for r, o in zip(raw, self._outputs)]

    def close(self) -> None:
        self._close_lanes()
        super().close()


def graph_order(outputs: list[dict]) -> list[dict]:
    """The interpreter's output details in the converted graph's own order, which is the ONNX
    model's: TensorFlow names a function's outputs ``PartitionedCall:<index>`` (``…:0``, ``…:1``),
    and the interpreter may list them in another order. Models named otherwise keep its order
    (their heads tell outputs apart by shape)."""
    indices = [re.fullmatch(r"[^:]+:(\d+)", o["name"]) for o in outputs]
    if not all(indices) or len({m.group(0).split(":")[0] for m in indices}) != 1:
        return outputs
    return [o for _, o in sorted(zip((int(m.group(1)) for m in indices), outputs), key=lambda pair: pair[0])]


def _quantise(x: np.ndarray, detail: dict) -> np.ndarray:
    """A float tensor in the input's own quantisation; one already in the input's dtype as it is."""
    dtype = np.dtype(detail["dtype"])
    if x.dtype == dtype:
        return x
    if dtype.kind == "f":
        return x.astype(dtype, copy=False)
    scale, zero = detail["quantization"]
    if scale == 0:  # not quantised: raw integer input (e.g. uint8 pixels)
        return x.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)


def _dequantise(y: np.ndarray, detail: dict) -> np.ndarray:
    """An output as float32, with its tensor's scale and zero point (the decoders' own rule)."""
    scale, zero = detail["quantization"]
    return dequantise(y, TensorInfo(detail["name"], y.shape, np.dtype(detail["dtype"]).name, scale or None, zero))
