"""Image → network input tensor (letterbox), and the geometry needed to map boxes back."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edgewatch.models.manifest import InputSpec, Preprocessing


@dataclass(frozen=True, slots=True)
class Letterbox:
    """How an original image was placed in the network input: scale, then offset by the padding."""

    scale: float
    pad_x: float
    pad_y: float
    width: int   # original image size
    height: int

    def to_original(self, boxes: np.ndarray) -> np.ndarray:
        """Map N×4 x1,y1,x2,y2 boxes in input pixels to original pixels, clipped to the image."""
        out = np.empty_like(boxes, dtype=np.float32)
        out[:, [0, 2]] = np.clip((boxes[:, [0, 2]] - self.pad_x) / self.scale, 0, self.width - 1)
        out[:, [1, 3]] = np.clip((boxes[:, [1, 3]] - self.pad_y) / self.scale, 0, self.height - 1)
        return out


def letterbox(image_bgr: np.ndarray, spec: InputSpec, pre: Preprocessing) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping aspect ratio, pad to the input size, convert colour/layout/dtype.

    ``image_bgr`` is H×W×3 uint8 as OpenCV decodes it. Returns a 1×… tensor ready for the backend.
    """
    in_w, in_h = spec.size
    h, w = image_bgr.shape[:2]
    scale = min(in_w / w, in_h / h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    pad_x, pad_y = (in_w - new_w) // 2, (in_h - new_h) // 2
    # Linear is ~10x faster than area; below half size it would alias, so area there.
    interp = cv2.INTER_AREA if scale < 0.5 else cv2.INTER_LINEAR
    canvas = np.full((in_h, in_w, 3), pre.pad_value, dtype=np.uint8)
    canvas[pad_y:pad_y + new_h, pad_x:pad_x + new_w] = cv2.resize(image_bgr, (new_w, new_h), interpolation=interp)
    geometry = Letterbox(scale, pad_x, pad_y, w, h)
    normalise = any(pre.mean) or any(s != 1 for s in pre.std)
    if spec.layout == "nchw":
        planes = cv2.split(canvas)
        if pre.color == "rgb":
            planes = planes[::-1]
        tensor = np.empty((1, 3, in_h, in_w), np.uint8 if spec.dtype == "uint8" else np.float32)
        for i, plane in enumerate(planes):
            tensor[0, i] = plane
    else:
        if pre.color == "rgb":
            canvas = cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)
        tensor = canvas[None] if spec.dtype == "uint8" else canvas[None].astype(np.float32)
    if spec.dtype != "uint8" and normalise:
        shape = (1, 3, 1, 1) if spec.layout == "nchw" else (1, 1, 1, 3)
        tensor -= np.asarray(pre.mean, np.float32).reshape(shape)
        tensor *= (1.0 / np.asarray(pre.std, np.float32)).reshape(shape)
    return np.ascontiguousarray(tensor), geometry
