"""Tiles for images larger than one inference should take, and their blend back into one image.

Tiles are as few and as equal as fit, and neighbours share ``overlap`` input pixels. Each tile's
output is weighted by a window that ramps linearly from near 0 at its inner edges (where the network
saw least context) to 1 at ``overlap`` pixels in, and is 1 along the image border; the result is the
weighted mean, so seams do not show and a pixel covered by one tile only is that tile's output exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MIN_TILE = 32      # input pixels; smaller tiles would be mostly overlap
MAX_OVERLAP = 16   # input pixels shared by neighbouring tiles (Real-ESRGAN sees about 17 around a pixel)


def overlap_for(tile: int) -> int:
    return min(MAX_OVERLAP, tile // 4)


def spans(length: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """(start, size) of the fewest tiles of at most ``tile`` pixels covering an axis of ``length``,
    equal in size, neighbours sharing ``overlap`` pixels (the last may share a few more)."""
    if length <= tile:
        return [(0, length)]
    count = math.ceil((length - overlap) / (tile - overlap))
    size = math.ceil((length - overlap) / count) + overlap
    return [(min(i * (size - overlap), length - size), size) for i in range(count)]


@dataclass(frozen=True)
class Tile:
    y: int
    x: int
    height: int
    width: int


def plan(height: int, width: int, tile: int) -> list[Tile]:
    """The tiles covering a ``height`` × ``width`` image, row by row."""
    overlap = overlap_for(tile)
    return [Tile(y, x, h, w) for y, h in spans(height, tile, overlap) for x, w in spans(width, tile, overlap)]


def _ramp(length: int, ramp: int, before: bool, after: bool) -> np.ndarray:
    """A 1-D window: rising over ``ramp`` pixels at the start if ``before`` (a neighbour there),
    falling at the end if ``after``; 1 elsewhere, never 0."""
    window = np.ones(length, np.float32)
    edge = (np.arange(min(ramp, length), dtype=np.float32) + 0.5) / ramp
    if before:
        window[: edge.size] = np.minimum(window[: edge.size], edge)
    if after:
        window[length - edge.size:] = np.minimum(window[length - edge.size:], edge[::-1])
    return window


class Canvas:
    """The upscaled image, built from tile outputs in any order."""

    def __init__(self, height: int, width: int, tile: int) -> None:
        self.height, self.width, self.overlap = height, width, overlap_for(tile)
        self.scale = 0
        self._sum: np.ndarray | None = None
        self._weight: np.ndarray | None = None

    def add(self, tile: Tile, pixels: np.ndarray) -> None:
        """Blend in ``pixels``, the model's H'×W'×3 float output for ``tile``."""
        scale = pixels.shape[0] // tile.height
        if pixels.shape[:2] != (tile.height * scale, tile.width * scale) or scale < 1:
            raise ValueError(f"a {tile.width}x{tile.height} tile came out {pixels.shape[1]}x{pixels.shape[0]}, "
                             "not scaled by a whole factor")
        if self._sum is None:
            self.scale = scale
            self._sum = np.zeros((self.height * scale, self.width * scale, 3), np.float32)
            self._weight = np.zeros((self.height * scale, self.width * scale, 1), np.float32)
        elif scale != self.scale:
            raise ValueError(f"tiles came out scaled by {self.scale} and {scale}")
        assert self._weight is not None
        ramp = self.overlap * scale
        rows = _ramp(pixels.shape[0], ramp, tile.y > 0, tile.y + tile.height < self.height)
        cols = _ramp(pixels.shape[1], ramp, tile.x > 0, tile.x + tile.width < self.width)
        window = (rows[:, None] * cols[None, :])[..., None]
        y, x = tile.y * scale, tile.x * scale
        region = np.s_[y: y + pixels.shape[0], x: x + pixels.shape[1]]
        self._sum[region] += pixels * window
        self._weight[region] += window

    def image(self) -> np.ndarray:
        """The blended H'×W'×3 uint8 image (every tile added)."""
        if self._sum is None or self._weight is None:
            raise ValueError("no tile was added")
        return np.clip(self._sum / self._weight + 0.5, 0, 255).astype(np.uint8)
