"""Uploaded bytes → H×W×3 BGR uint8 array, refusing what is not a whole, sane-sized image."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

Image.MAX_IMAGE_PIXELS = None  # our own limit below applies, per request, before decoding


class ImageError(ValueError):
    """The upload is not a usable image; the message tells the client what to send instead."""


def decode_image(data: bytes, max_pixels: int, target: tuple[int, int] | None = None) -> tuple[np.ndarray, float]:
    """Decode ``data``; return (BGR array, scale of the array relative to the original image).

    With ``target`` (the network's input size), JPEGs are decoded at a reduced DCT scale that
    still covers it, which is much faster for large camera snapshots; boxes are then divided
    by the returned scale to get original-image pixels.
    """
    if not data:
        raise ImageError("the 'image' file is empty: send the JPEG or PNG bytes of a snapshot")
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageError("the 'image' file is not an image format edgewatch can read: send a JPEG, PNG, BMP or WebP") from None
    except Exception as exc:  # Pillow raises many types for malformed headers; all are the client's bytes
        raise ImageError(f"the image header is malformed ({exc}): send an unmodified JPEG or PNG snapshot") from None
    width, height = img.size
    if width * height > max_pixels:
        raise ImageError(f"image is {width}x{height} = {width * height} pixels, over the limit of {max_pixels}: "
                         "send a smaller snapshot or raise server.max_image_pixels")
    scale = 1.0
    try:
        if target is not None and img.format == "JPEG":
            img.draft("RGB", target)
            scale = img.size[0] / width
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img.load()
        if img.mode != "RGB":
            img = img.convert("RGB")
    except Exception as exc:
        raise ImageError(f"the image could not be decoded ({exc}): the file is truncated or corrupt, send it whole") from None
    rgb = np.asarray(img)
    return np.ascontiguousarray(rgb[:, :, ::-1]), scale
