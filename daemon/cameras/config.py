"""One camera's configuration: where its frames come from and how often to take them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edgewatch.daemon.redaction import redact_url

CameraKind = Literal["auto", "rtsp", "snapshot", "mjpeg", "v4l2", "file"]

_NET_SCHEMES = {"rtsp": "rtsp", "rtsps": "rtsp", "http": "http", "https": "http"}
_DEVICE = re.compile(r"^/dev/video\d+$")


class CameraConfig(BaseModel):
    """A camera. ``url`` is one of

    - ``rtsp://[user:pass@]host[:port]/path`` (H.264/H.265 over RTSP, read with FFmpeg over TCP);
    - ``http(s)://...``: a JPEG snapshot URL (polled at ``fps``) or an MJPEG stream
      (``multipart/x-mixed-replace``); with ``kind: auto`` the response's Content-Type decides;
    - ``file:/path/video.avi``, ``file:///path/video.mp4`` or a plain path: a local video, looped;
    - ``/dev/videoN`` or an integer index: a V4L2 device.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")
    url: str | int
    kind: CameraKind = "auto"
    fps: float = Field(5.0, gt=0, le=30, description="most frames per second handed out")
    enabled: bool = True
    open_timeout_s: float = Field(10.0, gt=0, le=120, description="connect/open limit")
    read_timeout_s: float = Field(5.0, gt=0, le=120, description="longest wait for one frame")

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str | int) -> str | int:
        if isinstance(v, int):
            if v < 0:
                raise ValueError("a device index must be >= 0")
            return v
        v = v.strip()
        if not v:
            raise ValueError("url is empty")
        if v.isdigit():
            return int(v)
        scheme = urlsplit(v).scheme.lower()
        if scheme and len(scheme) > 1 and scheme not in _NET_SCHEMES and scheme != "file":
            raise ValueError(f"unsupported url scheme {scheme!r}: use rtsp://, http(s)://, file: or a path")
        return v

    @model_validator(mode="after")
    def _check_kind(self) -> CameraConfig:
        natural = self.source_kind  # what the url is
        allowed = {
            "rtsp": {"rtsp"},
            "snapshot": {"http"},
            "mjpeg": {"http"},
            "v4l2": {"v4l2", "file"},  # a v4l2 device given as some other path (udev symlink)
            "file": {"file"},
        }
        if self.kind != "auto" and natural not in allowed[self.kind]:
            raise ValueError(f"kind {self.kind!r} does not fit url {self.redacted_url!r}")
        return self

    @property
    def source_kind(self) -> str:
        """What the url itself says: rtsp, http (snapshot or MJPEG, decided on open), v4l2 or file."""
        if isinstance(self.url, int):
            return "v4l2"
        scheme = urlsplit(self.url).scheme.lower()
        if scheme in _NET_SCHEMES:
            return _NET_SCHEMES[scheme]
        if _DEVICE.match(self.local_path or ""):
            return "v4l2"
        return "file"

    @property
    def resolved_kind(self) -> str:
        """The kind used to open the source: ``kind`` unless auto, else :attr:`source_kind`."""
        return self.source_kind if self.kind == "auto" else self.kind

    @property
    def local_path(self) -> str | None:
        """The filesystem path of a file or device url (``file:`` stripped), else None."""
        if isinstance(self.url, int):
            return None
        parts = urlsplit(self.url)
        if parts.scheme.lower() == "file":
            return unquote(parts.path) or None
        if parts.scheme.lower() in _NET_SCHEMES:
            return None
        return str(Path(self.url).expanduser())

    @property
    def redacted_url(self) -> str:
        """The url with any password replaced by ``***`` (for logs, errors and answers); never raises."""
        if isinstance(self.url, int):
            return str(self.url)
        return redact_url(self.url)
