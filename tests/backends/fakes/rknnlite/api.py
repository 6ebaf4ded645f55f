"""A stand-in for rknn-toolkit-lite2's ``rknnlite.api`` on a machine with no Rockchip NPU.

It keeps RKNNLite's signatures, core-mask constants and return codes (0 = ok, -1 = failure;
``inference`` returns None on failure). The "NPU" is onnxruntime running the ONNX embedded in a
fake .rknn file (``FAKE_MAGIC`` + ONNX bytes), so the backend above it sees real outputs. As a
real .rknn built with ``mean_values``/``std_values`` does, a fake made by :func:`fake_rknn` with
``mean``/``std`` normalises the raw pixels it is fed before running the model.
"""

from __future__ import annotations

import json
import threading

import numpy as np

FAKE_MAGIC = b"RKNN-FAKE\n"
_NORM = b"NORM "


def fake_rknn(onnx: bytes, mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None) -> bytes:
    """The bytes of a fake .rknn running ``onnx``, normalising its input with ``mean``/``std`` if given."""
    if mean is None:
        return FAKE_MAGIC + onnx
    return FAKE_MAGIC + _NORM + json.dumps({"mean": list(mean), "std": list(std)}).encode() + b"\n" + onnx


class FakeNpu:
    """Knobs a test turns to imitate a board's failure modes, and what the fake recorded."""

    init_fails = False          # driver/runtime mismatch: init_runtime returns -1
    inference_fails = False     # inference returns None
    calls_per_core: dict[int, int] = {}
    lock = threading.Lock()

    @classmethod
    def reset(cls) -> None:
        cls.init_fails = cls.inference_fails = False
        cls.calls_per_core = {}


class RKNNLite:
    NPU_CORE_AUTO = 0
    NPU_CORE_0 = 1
    NPU_CORE_1 = 2
    NPU_CORE_2 = 4
    NPU_CORE_0_1 = 3
    NPU_CORE_0_1_2 = 7
    NPU_CORE_ALL = 0xFFFF

    def __init__(self, verbose: bool = False, verbose_file: str | None = None) -> None:
        self._onnx: bytes | None = None
        self._norm: tuple[np.ndarray, np.ndarray] | None = None
        self._session = None
        self._core_mask: int | None = None

    def load_rknn(self, path: str) -> int:
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError:
            return -1
        if not data.startswith(FAKE_MAGIC):
            return -1
        self._onnx = data[len(FAKE_MAGIC):]
        self._norm = None
        if self._onnx.startswith(_NORM):
            header, self._onnx = self._onnx[len(_NORM):].split(b"\n", 1)
            norm = json.loads(header)
            self._norm = (np.asarray(norm["mean"], np.float32), np.asarray(norm["std"], np.float32))
        return 0

    def init_runtime(self, target: str | None = None, device_id: str | None = None, async_mode: bool = False,
                     core_mask: int = NPU_CORE_AUTO) -> int:
        import onnxruntime as ort

        if self._onnx is None or FakeNpu.init_fails or core_mask not in (0, 1, 2, 4, 3, 7, 0xFFFF):
            return -1
        try:
            self._session = ort.InferenceSession(self._onnx, providers=["CPUExecutionProvider"])
        except Exception:
            return -1
        self._core_mask = core_mask
        return 0

    def inference(self, inputs: list, data_type=None, data_format=None, inputs_pass_through=None):
        if self._session is None or FakeNpu.inference_fails:
            return None
        x = np.asarray(inputs[0], dtype=np.float32)
        if self._norm is not None:  # per channel, the last axis of the NHWC pixels fed
            x = (x - self._norm[0]) / self._norm[1]
        if data_format == "nhwc" and x.shape[-1] == 3 and self._session.get_inputs()[0].shape[1] == 3:
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        with FakeNpu.lock:
            FakeNpu.calls_per_core[self._core_mask] = FakeNpu.calls_per_core.get(self._core_mask, 0) + 1
        return self._session.run(None, {self._session.get_inputs()[0].name: x})

    def release(self) -> None:
        self._session = None
