"""Image → network input tensor (letterbox; fit_pad and face_batch for the face models), and the
geometry needed to map boxes back."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

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


def letterbox(image_bgr: np.ndarray, spec: InputSpec, pre: Preprocessing,
              out: np.ndarray | None = None) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping aspect ratio, pad to the input size, convert colour/layout/dtype.

    ``image_bgr`` is H×W×3 uint8 as OpenCV decodes it. Returns a 1×… tensor ready for the backend
    (uint8: the raw pixels, the model or the device normalises them; float32: (pixel - mean) / std;
    int8: the same rounded and clipped, i.e. quantised with mean and std that fold in the scale),
    written into ``out`` when it is given with the tensor's shape and dtype (a buffer reused
    across frames saves the page faults of a fresh multi-megabyte array each time).
    """
    if pre.kind != "letterbox":
        raise ValueError(f"letterbox() cannot prepare a {pre.kind!r} input (see edgewatch.models.runtime.faces)")
    in_w, in_h = spec.size
    h, w = image_bgr.shape[:2]
    scale = min(in_w / w, in_h / h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    pad_x, pad_y = (in_w - new_w) // 2, (in_h - new_h) // 2
    # Linear is ~10x faster than area; below half size it would alias, so area there.
    interp = cv2.INTER_AREA if scale < 0.5 else cv2.INTER_LINEAR
    canvas = np.full((in_h, in_w, 3), pre.pad_value, dtype=np.uint8)
    canvas[pad_y:pad_y + new_h, pad_x:pad_x + new_w] = cv2.resize(image_bgr, (new_w, new_h), interpolation=interp)
    if pre.color == "rgb":
        cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB, dst=canvas)
    geometry = Letterbox(scale, pad_x, pad_y, w, h)
    dtype = np.dtype(spec.dtype)
    tensor = out if out is not None and out.shape == _shape(spec) and out.dtype == dtype else input_buffer(spec)
    _fill(tensor[0], canvas, spec, pre)
    return tensor, geometry


def fit_pad(image_bgr: np.ndarray, spec: InputSpec, pre: Preprocessing) -> tuple[np.ndarray, float]:
    """Scale ``image_bgr`` down (never up) to fit the input size, pad right and bottom with
    ``pre.pad_value`` to the next multiple of ``spec.multiple_of`` (a dynamic-size input) or to
    the input size, and convert colour/layout/dtype. Returns (1×… tensor, scale): input pixels are
    original pixels × scale, with no offset."""
    in_w, in_h = spec.size
    h, w = image_bgr.shape[:2]
    scale = min(in_w / w, in_h / h, 1.0)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    if spec.multiple_of:
        m = spec.multiple_of
        out_w, out_h = -(-new_w // m) * m, -(-new_h // m) * m
    else:
        out_w, out_h = in_w, in_h
    canvas = np.full((out_h, out_w, 3), pre.pad_value, dtype=np.uint8)
    interp = cv2.INTER_AREA if scale < 0.5 else cv2.INTER_LINEAR
    canvas[:new_h, :new_w] = image_bgr if scale == 1.0 else cv2.resize(image_bgr, (new_w, new_h), interpolation=interp)
    return _tensor([canvas], spec, pre), scale


def face_batch(faces_bgr: list[np.ndarray], spec: InputSpec, pre: Preprocessing) -> np.ndarray:
    """N aligned face crops (H×W×3 BGR uint8, resized if not the input size) → one N×… tensor."""
    in_w, in_h = spec.size
    crops = [f if f.shape[:2] == (in_h, in_w) else cv2.resize(f, (in_w, in_h), interpolation=cv2.INTER_AREA)
             for f in faces_bgr]
    return _tensor(crops, spec, pre)


def text_line_batch(lines_bgr: list[np.ndarray], spec: InputSpec, pre: Preprocessing) -> np.ndarray:
    """Text line strips (H×W×3 BGR uint8) → one N×… tensor: each scaled to the input height keeping
    its aspect, placed left, the rest padded with ``pre.pad_value`` up to the widest strip (rounded up
    to ``spec.multiple_of``), as PaddleOCR batches its recogniser."""
    _, height = spec.size
    scaled = [line if line.shape[0] == height else
              cv2.resize(line, (max(1, round(line.shape[1] * height / line.shape[0])), height))
              for line in lines_bgr]
    multiple = spec.multiple_of or 1
    width = -(-max(line.shape[1] for line in scaled) // multiple) * multiple
    canvases = []
    for line in scaled:
        canvas = np.full((height, width, 3), pre.pad_value, np.uint8)
        canvas[:, :line.shape[1]] = line
        canvases.append(canvas)
    return _tensor(canvases, spec, pre)


def _tensor(images_bgr: list[np.ndarray], spec: InputSpec, pre: Preprocessing) -> np.ndarray:
    """Same-sized H×W×3 BGR uint8 images → an N×… tensor in the spec's layout and dtype,
    in ``pre.color``, normalised as :func:`letterbox` does."""
    h, w = images_bgr[0].shape[:2]
    shape = (len(images_bgr), 3, h, w) if spec.layout == "nchw" else (len(images_bgr), h, w, 3)
    tensor = np.empty(shape, np.dtype(spec.dtype))
    for i, image in enumerate(images_bgr):
        _fill(tensor[i], cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if pre.color == "rgb" else image, spec, pre)
    return tensor


def _fill(slot: np.ndarray, image: np.ndarray, spec: InputSpec, pre: Preprocessing) -> None:
    """Write one H×W×3 uint8 image, already in ``pre.color``, into one sample of a tensor (3×H×W
    or H×W×3): raw pixels for uint8, (pixel - mean) / std through a lookup table otherwise."""
    dtype = slot.dtype
    raw = dtype == np.uint8  # the model or the device normalises them
    if spec.layout == "nchw":
        for i, plane in enumerate(cv2.split(image)):
            if raw:
                slot[i] = plane
            else:
                cv2.LUT(plane, _lut(pre.mean[i], pre.std[i], dtype.str), dst=slot[i])
    elif raw:
        slot[...] = image
    elif dtype.itemsize == 1:  # int8 (TFLite, Edge TPU): per plane, then merged: 1.5x faster than the 3-channel lookup
        planes = [cv2.LUT(plane, _lut(pre.mean[i], pre.std[i], dtype.str)) for i, plane in enumerate(cv2.split(image))]
        cv2.merge(planes, dst=slot)
    else:  # float32: the 3-channel lookup is as fast as planes here
        cv2.LUT(image, _lut3(tuple(pre.mean), tuple(pre.std), dtype.str), dst=slot)


def input_buffer(spec: InputSpec) -> np.ndarray:
    """An uninitialised tensor of the shape and dtype ``spec`` describes, for :func:`letterbox`'s ``out``."""
    return np.empty(_shape(spec), np.dtype(spec.dtype))


def _shape(spec: InputSpec) -> tuple[int, int, int, int]:
    width, height = spec.size
    return (1, 3, height, width) if spec.layout == "nchw" else (1, height, width, 3)


@lru_cache(maxsize=64)
def _lut(mean: float, std: float, dtype: str) -> np.ndarray:
    """(v - mean) / std for every uint8 value v, in ``dtype`` (integers rounded and clipped to its
    range): one table lookup per pixel instead of several passes of float arithmetic."""
    values = (np.arange(256, dtype=np.float64) - mean) / std
    kind = np.dtype(dtype)
    if kind.kind in "iu":
        info = np.iinfo(kind)
        values = np.clip(np.round(values), info.min, info.max)
    return values.astype(kind).reshape(1, 256)


@lru_cache(maxsize=16)
def _lut3(mean: tuple[float, float, float], std: tuple[float, float, float], dtype: str) -> np.ndarray:
    """The per-channel table of :func:`_lut` for an H×W×3 image."""
    return np.stack([_lut(m, s, dtype) for m, s in zip(mean, std)], axis=-1)
