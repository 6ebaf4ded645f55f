"""The snapshot published for a label: the frame with its objects' boxes drawn, as JPEG."""

from __future__ import annotations

import cv2
import numpy as np

from edgewatch.daemon.pipeline.tracker import Track


def annotated_jpeg(frame: np.ndarray, tracks: list[Track], quality: int = 80) -> bytes:
    image = frame.copy()
    for t in tracks:
        x1, y1, x2, y2 = t.box
        cv2.rectangle(image, (x1, y1), (x2, y2), (0, 200, 255), 2)
        cv2.putText(image, f"{t.label} {t.score:.0%}", (x1 + 3, max(14, y1 - 5)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 200, 255), 1, cv2.LINE_AA)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return buf.tobytes() if ok else b""
