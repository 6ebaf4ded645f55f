"""Alpha matting along a mask's boundary with pymatting (closed-form matting, Levin et al.; the
foreground colours by its multi-level estimate), as rembg's ``alpha_matting`` does.

A trimap is made from the mask: surely foreground (probability ≥ 0.94, eroded by the band), surely
background (≤ 0.04, eroded likewise), unknown between; the alpha is solved only there, at a working
size with the long side at most ``max_side``. pymatting compiles its numba kernels on first use
(about a minute once; cached under the edgewatch cache dir): :class:`Matting` does that on a thread
at start, and says whether it is ready.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

FOREGROUND = 240 / 255  # rembg's alpha_matting_foreground_threshold
BACKGROUND = 10 / 255   # rembg's alpha_matting_background_threshold


def levels(prob: np.ndarray) -> np.ndarray:
    """The mask as an alpha 0–1: sure background 0, sure foreground 1, linear between (a network's
    faint 1-3 % over the background would otherwise show as a haze in the cut-out)."""
    return np.clip((prob - BACKGROUND) / (FOREGROUND - BACKGROUND), 0.0, 1.0)


class Matting:
    """pymatting, imported and compiled on a thread (:meth:`prepare`); :meth:`refine` once ready."""

    def __init__(self, numba_cache: Path) -> None:
        self.numba_cache = numba_cache
        self.ready = threading.Event()
        self.error: str | None = None
        self._thread: threading.Thread | None = None

    def prepare(self) -> None:
        """Import pymatting and run it once on a small image, on a thread (returns at once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._warm_up, name="pymatting-warm-up", daemon=True)
            self._thread.start()

    def _warm_up(self) -> None:
        # numba caches compiled kernels beside pymatting's sources, unwritable in a system venv
        os.environ.setdefault("NUMBA_CACHE_DIR", str(self.numba_cache))
        try:
            rng = np.random.default_rng(0)
            image = rng.integers(0, 255, (32, 32, 3), np.uint8)
            prob = np.zeros((32, 32), np.float32)
            prob[8:24, 8:24] = 1.0
            self._solve(image, cv2.GaussianBlur(prob, (7, 7), 2), 2)
        except Exception as exc:  # an install without pymatting, or numba failing on this CPU
            self.error = f"{type(exc).__name__}: {exc}"
            log.error("background: alpha matting unavailable (%s)", self.error)
        self.ready.set()

    def refine(self, image_bgr: np.ndarray, prob: np.ndarray, max_side: int, band: int) -> tuple[np.ndarray, np.ndarray, bool]:
        """(BGR with the foreground's colours in the band, alpha 0–1, whether matting ran) for the
        image and its mask; a mask with no sure foreground or background is left as it is."""
        height, width = prob.shape
        scale = min(1.0, max_side / max(height, width))
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            small_image = cv2.resize(image_bgr, size, interpolation=cv2.INTER_AREA)
            small_prob = cv2.resize(prob, size, interpolation=cv2.INTER_AREA)
        else:
            small_image, small_prob = image_bgr, prob
        solved = self._solve(small_image, small_prob, band)
        if solved is None:
            return image_bgr, levels(prob), False
        alpha, foreground, unknown = solved
        if scale < 1.0:
            alpha = cv2.resize(alpha, (width, height), interpolation=cv2.INTER_LINEAR)
            foreground = cv2.resize(foreground, (width, height), interpolation=cv2.INTER_LINEAR)
            unknown = cv2.resize(unknown.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
        # outside the band the mask stands; inside it the solved alpha and the foreground's own colours
        alpha = np.where(unknown, alpha, (prob >= 0.5).astype(np.float32))
        colours = image_bgr.copy()
        colours[unknown] = foreground[unknown]
        return colours, alpha, True

    @staticmethod
    def _solve(image_bgr: np.ndarray, prob: np.ndarray, band: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        from pymatting import estimate_alpha_cf, estimate_foreground_ml

        kernel = np.ones((band, band), np.uint8)
        sure_fg = cv2.erode((prob >= FOREGROUND).astype(np.uint8), kernel) > 0
        sure_bg = cv2.erode((prob <= BACKGROUND).astype(np.uint8), kernel, borderValue=1) > 0
        unknown = ~(sure_fg | sure_bg)
        if not sure_fg.any() or not sure_bg.any() or not unknown.any():
            return None
        trimap = np.full(prob.shape, 0.5)
        trimap[sure_fg], trimap[sure_bg] = 1.0, 0.0
        rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB) / 255.0
        alpha = np.clip(estimate_alpha_cf(rgb, trimap), 0.0, 1.0)
        foreground = estimate_foreground_ml(rgb, alpha)
        bgr = cv2.cvtColor(np.clip(foreground * 255 + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
        return alpha.astype(np.float32), bgr, unknown
