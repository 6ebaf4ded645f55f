"""A camera scene made of real photos: people cut out of bus.jpg and zidane.jpg walk (or stand)
over the coffee photo along scripted paths, for a real detector to find. The truth comes from the
same paths as in scenes.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgewatch.daemon.pipeline.filters import Located
from edgewatch.daemon.testing.scenes import (FPS, HEIGHT, WIDTH, Box, Frame, Recorded, Walker, area, clip, in_view,
                                             overlap)

# where the people stand in the pinned photos (models/photos.py): (photo, y1, y2, x1, x2)
CUTOUTS = {"bus_man": ("bus", 370, 930, 30, 245), "zidane_man": ("zidane", 30, 720, 740, 1160)}


def cutout(photos: dict[str, Path], name: str, height: int) -> np.ndarray:
    photo, y1, y2, x1, x2 = CUTOUTS[name]
    crop = cv2.imread(str(photos[photo]))[y1:y2, x1:x2]
    return cv2.resize(crop, (round(crop.shape[1] * height / crop.shape[0]), height), interpolation=cv2.INTER_AREA)


@dataclass(frozen=True)
class PhotoScene:
    background: np.ndarray                      # WIDTH x HEIGHT, BGR
    cast: tuple[tuple[Walker, np.ndarray], ...]  # each walker's size is its cut-out's
    seconds: float
    fps: float = FPS

    @property
    def walkers(self) -> tuple[Walker, ...]:
        return tuple(w for w, _ in self.cast)

    def __len__(self) -> int:
        return int(self.seconds * self.fps)

    def truth(self, i: int) -> dict[str, Box]:
        return in_view(self.walkers, i / self.fps)

    def frame(self, i: int) -> np.ndarray:
        """Frame ``i``: the background with each walker pasted where the path has them (later ones in front)."""
        out = self.background.copy()
        for walker, image in self.cast:
            box = walker.box(i / self.fps)
            if box is None:
                continue
            x, y = round(box[0]), round(box[1])
            h, w = image.shape[:2]
            x1, y1, x2, y2 = max(x, 0), max(y, 0), min(x + w, WIDTH), min(y + h, HEIGHT)
            if x1 < x2 and y1 < y2:
                out[y1:y2, x1:x2] = image[y1 - y:y2 - y, x1 - x:x2 - x]
        return out


def lobby(photos: dict[str, Path]) -> PhotoScene:
    """Ann (from bus.jpg) walks in from the left and stands still for a minute, then walks out to the
    right; meanwhile Ben (from zidane.jpg) walks across from right to left, passing in front of her."""
    ann, ben = cutout(photos, "bus_man", 320), cutout(photos, "zidane_man", 240)
    aw, bw = ann.shape[1], ben.shape[1]
    ann_path = ((2.0, -aw / 2, 700), (6.0, 300, 700), (66.0, 300, 700), (71.0, WIDTH + aw / 2, 700))
    ben_path = ((12.0, WIDTH + bw / 2, 715), (22.0, -bw / 2, 715))
    background = cv2.resize(cv2.imread(str(photos["coffee"])), (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
    cast = ((Walker("ann", ann_path, (aw, 320)), ann), (Walker("ben", ben_path, (bw, 240)), ben))
    return PhotoScene(background, cast, seconds=74)


def detected(scene: PhotoScene, detect: Callable[[np.ndarray], list[Located]]) -> Recorded:
    """Every frame of ``scene`` through ``detect``, with the truth, as a scene the tracker can replay."""
    frames = []
    for i in range(len(scene)):
        truth, found = scene.truth(i), detect(scene.frame(i))
        # anyone the detections find, also someone mostly out of the frame (not in view by the truth's rule)
        present = {w.name: clip(b) for w in scene.walkers if (b := w.box(i / scene.fps)) is not None}
        seen = {n for n, box in present.items() for d in found
                if area(box) and overlap(box, _box(d)) > 0.5 * area(box)}
        frames.append(Frame(i / scene.fps, truth, found, frozenset(seen)))
    return Recorded("lobby (real detector)", scene.walkers, frames, scene.fps)


def _box(d: Located) -> Box:
    p = d.prediction
    return p.x_min, p.y_min, p.x_max, p.y_max
