"""What a model file says about one of its inputs or outputs, whatever the runtime (.onnx, .tflite, .rknn).

Readers of model files fill these in; layout recognition (which output head a detector needs, its
input size, layout and normalisation) reads only these, never the file, so the same rules hold for
an ONNX export, its TFLite or EdgeTPU conversion and an RKNN build.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One input or output tensor: name, shape (None for a dynamic dimension), element type and,
    for a quantised tensor, the scale and zero point that give ``real = scale * (q - zero_point)``."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str  # numpy's name: "float32", "float16", "uint8", "int8", "int32", "int64"
    scale: float | None = None
    zero_point: int | None = None

    @property
    def quantised(self) -> bool:
        return self.scale is not None and self.dtype in ("uint8", "int8", "int16")

    def __str__(self) -> str:
        dims = "x".join("?" if d is None else str(d) for d in self.shape)
        quant = f" q(scale={self.scale:g}, zero={self.zero_point})" if self.quantised else ""
        return f"{self.name} [{dims}] {self.dtype}{quant}"
