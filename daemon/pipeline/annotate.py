"""The snapshot published for an object: the frame with its boxes drawn, as JPEG."""

from __future__ import annotations

import cv2
import numpy as np

from edgewatch.daemon.pipeline.filters import Located


def annotated_jpeg(frame: np.ndarray, located: list[Located], quality: int = 80) -> bytes:
    image = frame.copy()
    for item in located:
        p = item.prediction
        cv2.rectangle(image, (p.x_min, p.y_min), (p.x_max, p.y_max), (0, 200, 255), 2)
        cv2.putText(image, f"{p.label} {p.confidence:.0%}", (p.x_min + 3, max(14, p.y_min - 5)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 200, 255), 1, cv2.LINE_AA)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return buf.tobytes() if ok else b""
