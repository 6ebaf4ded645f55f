"""The portrait filter itself: the background blurred, the person kept, blended by the soft mask.

The background is blurred with the person cut out (normalised convolution: the blur of the
background alone divided by the blur of its mask), so the person's colours do not bleed into
it as a halo. Large blurs are done at a reduced size, where they cost the same as small ones.
"""

from __future__ import annotations

import cv2
import numpy as np

SIGMA_AT_WORK = 4.0  # the blur is done at the size where its sigma is at most this many pixels


def portrait(image_bgr: np.ndarray, person: np.ndarray, sigma: float) -> np.ndarray:
    """``image_bgr`` with everything outside ``person`` (H×W probabilities 0–1) blurred by a Gaussian
    of ``sigma`` pixels; the person's pixels are kept as they are."""
    if sigma < 0.5:
        return image_bgr.copy()
    height, width = person.shape
    factor = max(1.0, sigma / SIGMA_AT_WORK)
    size = (max(1, round(width / factor)), max(1, round(height / factor)))
    image = image_bgr.astype(np.float32)
    background = 1.0 - person
    small_bg = cv2.resize(background, size, interpolation=cv2.INTER_AREA)
    small_img = cv2.resize(image * background[..., None], size, interpolation=cv2.INTER_AREA)
    sigma_small = sigma / factor
    blurred = cv2.GaussianBlur(small_img, (0, 0), sigma_small)
    weight = cv2.GaussianBlur(small_bg, (0, 0), sigma_small)
    blurred = cv2.resize(blurred, (width, height), interpolation=cv2.INTER_LINEAR)
    weight = cv2.resize(weight, (width, height), interpolation=cv2.INTER_LINEAR)[..., None]
    # where the background is all person (weight ~0) there is nothing to blur: keep the pixel
    filled = np.where(weight > 1e-3, blurred / np.maximum(weight, 1e-3), image)
    out = person[..., None] * image + background[..., None] * filled
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
