"""The unknown-faces folder (``<data_dir>/faces/unknown``): faces cameras saw and could not
recognise, kept (opt-in, per camera) so the owner can register them later. Bounded: beyond
``faces.unknown_max_files`` the oldest files go. Each file is written atomically."""

from __future__ import annotations

import re
import time
from pathlib import Path

import cv2
import numpy as np

from edgewatch.models.files import atomic_write_bytes

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def unknown_dir(data_dir: Path) -> Path:
    return data_dir / "faces" / "unknown"


def save_unknown(folder: Path, camera: str, track_id: str, face_bgr: np.ndarray, max_files: int,
                 wall: float | None = None) -> Path:
    """Write one face as ``<UTC time>_<camera>_<track id>.jpg`` and drop the oldest files beyond
    ``max_files``; returns the path written."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if wall is None else wall))
    path = folder / f"{stamp}_{_UNSAFE.sub('-', camera)}_{_UNSAFE.sub('-', track_id)}.jpg"
    ok, jpeg = cv2.imencode(".jpg", face_bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise ValueError(f"cannot encode a {face_bgr.shape} face as JPEG")
    atomic_write_bytes(path, jpeg.tobytes())
    files = sorted(folder.glob("*.jpg"))  # names start with the UTC time: oldest first
    for old in files[:max(0, len(files) - max_files)]:
        old.unlink(missing_ok=True)
    return path
