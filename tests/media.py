"""Real media for tests: videos made from the real photos."""

from __future__ import annotations

from pathlib import Path

import cv2


def write_video(path: Path, photos: dict[str, Path], names: tuple[str, ...], size: tuple[int, int],
                frames_each: int, fps: float = 5) -> Path:
    """An MJPG .avi showing each named photo for ``frames_each`` frames, in order."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for name in names:
        frame = cv2.resize(cv2.imread(str(photos[name])), size)
        for _ in range(frames_each):
            writer.write(frame)
    writer.release()
    return path
