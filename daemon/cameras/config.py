"""One camera's configuration: where its frames come from and how often to take them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from edgewatch.daemon.redaction import printable, redact_url

CameraKind = Literal["auto", "rtsp", "snapshot", "mjpeg", "v4l2", "file"]
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"  # a camera's name: also its MQTT topic level and entity id part

_NET_SCHEMES = {"rtsp": "rtsp", "rtsps": "rtsp", "http": "http", "https": "http"}
_DEVICE = re.compile(r"^/dev/video\d+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
_HOST = re.compile(r"^[A-Za-z0-9._-]+$")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_ENCODE_HINT = "percent-encode '@', ':', '/', '?', '#' and '%' in the user or password (%40 %3A %2F %3F %23 %25)"


def _url_error(message: str) -> PydanticCustomError:
    """A url error whose message is shown as is (pydantic adds no prefix); it never echoes the url."""
    return PydanticCustomError("camera_url", message.replace("{", "(").replace("}", ")"))


def is_network_url(url: str | int) -> bool:
    """Whether ``url`` names a network camera (rtsp, rtsps, http, https), not a local file or device
    (an integer is a V4L2 device index)."""
    return isinstance(url, str) and urlsplit(url).scheme.lower() in _NET_SCHEMES


def check_url(url: str) -> None:
    """Raise a url error unless ``url`` is a camera url edgewatch can open: rtsp(s)/http(s) with a
    host, a port in 1..65535 and well-formed credentials; file:, a path or /dev/videoN. Messages say
    what is wrong without repeating the url (it may hold a password)."""
    try:
        parts = urlsplit(url)
    except ValueError:  # brackets of an IPv6 address
        raise _url_error("url cannot be parsed: write an IPv6 host in brackets, e.g. rtsp://[fe80::1]:554/path") from None
    scheme = parts.scheme.lower()
    if not scheme or (len(scheme) == 1 and scheme.isalpha()):  # a plain path (or a drive letter)
        if _CONTROL.search(url):
            raise _url_error("url contains control characters: give the file or device path as plain text")
        return
    if _SPACE_OR_CONTROL.search(url):
        raise _url_error("url contains spaces or control characters: percent-encode them (a space is %20)")
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise _url_error("a file: url names a local file: write file:/path/video.mp4 or file:///path/video.mp4")
        if not parts.path:
            raise _url_error("the file: url has no path: write file:/path/video.mp4")
        return
    if scheme not in _NET_SCHEMES:
        raise _url_error(f"unsupported url scheme {printable(scheme, 20)!r}: use rtsp://, rtsps://, http(s)://, "
                         "file:, a path or /dev/videoN")
    _check_netloc(parts.netloc)
    if "@" in parts.path and "@" not in parts.netloc:  # user:pa/ss@host: the host would be "user"
        raise _url_error(f"the url's path contains '@': if it belongs to user:password@host, {_ENCODE_HINT}")


def _check_netloc(netloc: str) -> None:
    userinfo, at, hostport = netloc.rpartition("@")
    if at:
        user, _, _ = userinfo.partition(":")
        if "@" in userinfo or _BAD_ESCAPE.search(userinfo):
            raise _url_error(f"the user:password part of the url is malformed: {_ENCODE_HINT}")
        if not user:
            raise _url_error("the url has a password but no user name: put user:password@ before the host")
    host, port = hostport, ""
    if hostport.startswith("["):
        host, _, rest = hostport.partition("]")
        host += "]"
        if rest and not rest.startswith(":"):
            raise _url_error("after an IPv6 host in brackets only :port may follow, e.g. rtsp://[fe80::1]:554/path")
        port = rest[1:]
    elif ":" in hostport:
        host, _, port = hostport.partition(":")
    if not host:
        raise _url_error("the url has no host: write rtsp://host[:port]/path (with user:password@ before the host "
                         "if the camera needs it)")
    if not host.startswith("[") and not _HOST.match(host):
        raise _url_error(f"the url's host is not a host name or address; {_ENCODE_HINT}")
    if port and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise _url_error("the url's port must be a number from 1 to 65535 (percent-encode any ':', '/', '?', "
                         "'#' or '@' in the password as %3A %2F %3F %23 %40)")


def describe(exc: ValidationError) -> str:
    """Each error of ``exc`` as ``field: message``, never with the rejected input (it may hold a password)."""
    parts = [f"{'.'.join(map(str, err['loc'])) or 'body'}: {printable(err['msg'], 400)}" for err in exc.errors()]
    return "; ".join(parts[:5]) + (f"; and {len(parts) - 5} more" if len(parts) > 5 else "")


class CameraConfig(BaseModel):
    """A camera. ``url`` is one of

    - ``rtsp://[user:pass@]host[:port]/path`` (H.264/H.265 over RTSP, read with FFmpeg over TCP);
    - ``http(s)://...``: a JPEG snapshot URL (polled at ``fps``) or an MJPEG stream
      (``multipart/x-mixed-replace``); with ``kind: auto`` the response's Content-Type decides;
    - ``file:/path/video.avi``, ``file:///path/video.mp4`` or a plain path: a local video, looped;
    - ``/dev/videoN`` or an integer index: a V4L2 device.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
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
                raise _url_error("a device index must be 0 or more (0 is /dev/video0)")
            return v
        v = v.strip()
        if not v:
            raise _url_error("url is empty: give rtsp://, http(s)://, file:, a path or /dev/videoN")
        if v.isdigit():
            return int(v)
        check_url(v)
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
