"""Motion gating on a small grey copy of the frame, so a static scene costs almost nothing.

A running-average background (OpenCV's accumulateWeighted) is compared with each new frame;
motion is the share of pixels that changed by more than a threshold.
"""

from __future__ import annotations

import cv2
import numpy as np


class MotionGate:
    def __init__(self, width: int = 160, threshold: int = 25, min_changed: float = 0.005, learn_rate: float = 0.05) -> None:
        self.width, self.threshold = width, threshold
        self.min_changed, self.learn_rate = min_changed, learn_rate
        self._background: np.ndarray | None = None
        self.last_changed = 0.0

    def _small_grey(self, frame_bgr: np.ndarray) -> np.ndarray:
        h, w = frame_bgr.shape[:2]
        height = max(1, round(h * self.width / w))
        grey = cv2.cvtColor(cv2.resize(frame_bgr, (self.width, height), interpolation=cv2.INTER_AREA),
                            cv2.COLOR_BGR2GRAY)
        return cv2.GaussianBlur(grey, (5, 5), 0)

    def moved(self, frame_bgr: np.ndarray) -> bool:
        """True if this frame differs from the learnt background (the first frame counts as motion)."""
        grey = self._small_grey(frame_bgr)
        if self._background is None or self._background.shape != grey.shape:
            self._background = grey.astype(np.float32)
            self.last_changed = 1.0
            return True
        diff = cv2.absdiff(grey, cv2.convertScaleAbs(self._background))
        self.last_changed = float(np.count_nonzero(diff > self.threshold)) / diff.size
        cv2.accumulateWeighted(grey, self._background, self.learn_rate)
        return self.last_changed >= self.min_changed
