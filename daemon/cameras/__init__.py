"""Cameras: read RTSP, HTTP snapshot/MJPEG, V4L2 and looped video-file sources, newest frame only.

- :class:`CameraConfig` (config.py): one camera's url, kind, fps cap and timeouts.
- :func:`open_source` (sources.py): the source object for a config (FFmpeg/V4L2 capture or httpx).
- :class:`CameraReader` (reader.py): a thread per camera; ``latest()``/``wait()``, ``state()``, ``stop()``.
"""

from edgewatch.daemon.cameras.config import CameraConfig, CameraKind
from edgewatch.daemon.cameras.reader import Backoff, CameraReader, CameraState, Frame
from edgewatch.daemon.cameras.sources import FrameSource, SourceError, open_source

__all__ = [
    "Backoff",
    "CameraConfig",
    "CameraKind",
    "CameraReader",
    "CameraState",
    "Frame",
    "FrameSource",
    "SourceError",
    "open_source",
]
