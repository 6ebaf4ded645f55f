"""Image bytes (an upload, a camera's snapshot or MJPEG frame) → H×W×3 BGR uint8 array, refusing
what is not a whole, sane-sized image.

Pillow reads only the header (format, size: the pixel limit is enforced before any decoding);
OpenCV decodes, at a reduced JPEG DCT scale when the network input is much smaller than the
snapshot. Pillow's full decoder is the fallback for formats OpenCV lacks and the judge of
JPEGs that do not end with an EOI marker (truncated uploads).
"""

from __future__ import annotations

import io
import warnings

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

Image.MAX_IMAGE_PIXELS = None  # our own per-request limit applies, before decoding

_REDUCED = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
            8: cv2.IMREAD_REDUCED_COLOR_8}


class ImageError(ValueError):
    """The upload is not a usable image; the message tells the client what to send instead."""


def _reduction(width: int, height: int, target: tuple[int, int] | None) -> int:
    """Largest JPEG DCT reduction that still leaves the image at least as large as the input it is fitted into."""
    if target is None:
        return 1
    tw, th = target
    for factor in (8, 4, 2):
        if width // factor >= tw or height // factor >= th:
            return factor
    return 1


def _pillow_decode(data: bytes, exif_orientation: bool = False) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data))
            img.load()
            if exif_orientation:
                img = ImageOps.exif_transpose(img)
            rgb = np.asarray(img.convert("RGB"))
    except Exception as exc:  # Pillow raises many types for damaged data; all are the client's bytes
        raise ImageError(f"the image could not be decoded ({exc}): the file is truncated or corrupt, "
                         "send it whole") from None
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def decode_image(data: bytes, max_pixels: int, target: tuple[int, int] | None = None, *,
                 exif_orientation: bool = False) -> tuple[np.ndarray, float]:
    """Decode ``data``; return (BGR array, its width relative to the original image's width).

    Boxes found on the returned array are divided by that scale to get original-image pixels.
    Raises :class:`ImageError`, its message written for an API client that sent the bytes.

    ``exif_orientation``: turn the image as its EXIF Orientation tag says (OpenCV's default, which
    camera frames have always had); uploads keep the pixel grid as stored, the one boxes refer to.
    """
    if not data:
        raise ImageError("the image sent is empty: send the JPEG or PNG bytes of a snapshot")
    try:
        header = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageError("the image sent is not an image format edgewatch can read: "
                         "send a JPEG, PNG, BMP or WebP") from None
    except Exception as exc:
        raise ImageError(f"the image header is malformed ({exc}): send an unmodified JPEG or PNG snapshot") from None
    width, height = header.size
    if width < 1 or height < 1:
        raise ImageError(f"the image claims a size of {width}x{height}: send a real snapshot")
    if width * height > max_pixels:
        raise ImageError(f"image is {width}x{height} = {width * height} pixels, over the limit of {max_pixels}: "
                         "send a smaller snapshot or raise server.max_image_pixels")
    is_jpeg = header.format == "JPEG"
    if is_jpeg and not data.rstrip(b"\0\r\n ").endswith(b"\xff\xd9"):
        _pillow_decode(data)  # raises ImageError if it is really truncated; trailing bytes after EOI are fine
    flags = _REDUCED[_reduction(width, height, target) if is_jpeg else 1]
    if not exif_orientation:
        flags |= cv2.IMREAD_IGNORE_ORIENTATION
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if image is None or image.ndim != 3:
        image = _pillow_decode(data, exif_orientation)
    rows, cols = image.shape[:2]
    turned = exif_orientation and rows != cols and (rows > cols) != (height > width)  # by 90 degrees
    return image, (rows if turned else cols) / width
