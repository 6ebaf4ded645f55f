"""Frame sources: open a camera url and pull frames from it, one call at a time.

A source is used by one thread only (the camera's reader). ``grab()`` takes the next frame from the
source without decoding more than it must; ``retrieve()`` turns the last grabbed frame into a BGR
``numpy`` array. The reader grabs every frame a live source sends (so nothing queues up in sockets
or decoders) and retrieves only the frames it hands out. Errors are raised as :class:`SourceError`
with a message meant for people.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import deque
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import httpx
import numpy as np

from edgewatch.daemon.cameras.config import CameraConfig
from edgewatch.daemon.cameras.mjpeg import MAX_FRAME_BYTES, MjpegParser, boundary_of
from edgewatch.daemon.imaging import ImageError, decode_image
from edgewatch.daemon.redaction import redact

# FFmpeg demuxer options for every capture (OpenCV reads them from this variable on each open).
# TCP: no lost packets and no UDP ports to open. Shorter probing: an RTSP open takes about 1.3 s
# instead of the 5 s FFmpeg's default analyzeduration costs on a 5 fps stream.
FFMPEG_OPTIONS = {"rtsp_transport": "tcp", "analyzeduration": "1000000", "probesize": "500000"}
_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
_env_lock = threading.Lock()
_env_done = False

MAX_FRAME_PIXELS = 1 << 30
"""The largest image decoded from an HTTP camera: OpenCV's own limit (CV_IO_MAX_IMAGE_PIXELS's
default), which its decoder, the one cameras always used, enforces anyway."""


class SourceError(RuntimeError):
    """The source cannot be opened or read; the message says why."""


def _ensure_ffmpeg_options() -> None:
    """Set OPENCV_FFMPEG_CAPTURE_OPTIONS once per process, keeping any keys the user set.

    Done once (not per open): changing the environment while other threads run is not safe.
    """
    global _env_done
    with _env_lock:
        if _env_done:
            return
        current = os.environ.get(_ENV, "")
        keys = {item.split(";", 1)[0] for item in current.split("|") if item}
        extra = [f"{k};{v}" for k, v in FFMPEG_OPTIONS.items() if k not in keys]
        if extra:
            os.environ[_ENV] = "|".join([current, *extra] if current else extra)
        _env_done = True


class FrameSource:
    """Base class. ``pace_s``: the reader waits this long between grabs (files, snapshot polling);
    None means ``grab()`` itself blocks until the source sends the next frame. ``frame_interval_s``
    lets the reader tell frames buffered while opening (returned at once) from live ones."""

    pace_s: float | None = None
    frame_interval_s: float | None = None  # live sources: 1 / the stream's frame rate
    description: str = ""

    def open(self) -> None:
        raise NotImplementedError

    def grab(self) -> None:
        raise NotImplementedError

    def retrieve(self) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass


class CaptureSource(FrameSource):
    """cv2.VideoCapture: RTSP and other FFmpeg inputs, local video files (looped), V4L2 devices."""

    def __init__(self, cfg: CameraConfig, kind: str) -> None:
        self.cfg, self.kind = cfg, kind
        self.description = f"{kind} {cfg.redacted_url}"
        self._cap: cv2.VideoCapture | None = None

    def open(self) -> None:
        cfg, kind = self.cfg, self.kind
        timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(cfg.open_timeout_s * 1000),
                    cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(cfg.read_timeout_s * 1000)]
        if kind == "v4l2":
            target: str | int = cfg.url if isinstance(cfg.url, int) else (cfg.local_path or "")
            dev = f"/dev/video{target}" if isinstance(target, int) else target
            if not Path(dev).exists():
                raise SourceError(f"no such video device: {dev}")
            api, params = cv2.CAP_V4L2, []  # OpenCV refuses open() params a backend does not know
        elif kind == "file":
            target = cfg.local_path or ""
            if not Path(target).is_file():
                raise SourceError(f"video file not found: {target}")
            api, params = cv2.CAP_FFMPEG, []
        else:
            if kind == "rtsp":
                _check_reachable(str(cfg.url), cfg.open_timeout_s)
            _ensure_ffmpeg_options()
            target, api, params = str(cfg.url), cv2.CAP_FFMPEG, timeouts
        started = time.monotonic()
        try:
            cap = cv2.VideoCapture(target, api, params)
        except cv2.error as e:
            raise SourceError(f"cannot open {self.description}: {redact(str(e))}") from None
        if not cap.isOpened():
            cap.release()
            if kind in ("rtsp", "http") and time.monotonic() - started >= 0.9 * cfg.open_timeout_s:
                raise SourceError(f"cannot open {self.description}: no video within {cfg.open_timeout_s:g} s")
            why = {"rtsp": "refused by the server (wrong path or credentials?) or not a video stream",
                   "file": "not a video FFmpeg can read",
                   "v4l2": "not a capture device, or busy"}.get(kind, "not a video stream")
            raise SourceError(f"cannot open {self.description}: {why}")
        if kind == "v4l2":
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
            cap.set(cv2.CAP_PROP_READ_TIMEOUT_MSEC, cfg.read_timeout_s * 1000)  # ignored where unsupported
        native = cap.get(cv2.CAP_PROP_FPS)
        if kind == "file":
            self.pace_s = 1.0 / native if 0 < native <= 240 else 1.0 / 25
        else:
            self.frame_interval_s = 1.0 / native if 1 <= native <= 120 else 1.0 / 30
        self._cap = cap

    def grab(self) -> None:
        assert self._cap is not None
        started = time.monotonic()
        if self._cap.grab():
            return
        if self.kind == "file":  # end of file: start again
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            if self._cap.grab():
                return
            raise SourceError(f"cannot read a frame from {self.description}")
        if time.monotonic() - started >= 0.9 * self.cfg.read_timeout_s:
            raise SourceError(f"no frame within {self.cfg.read_timeout_s:g} s from {self.description}")
        raise SourceError(f"stream ended (connection closed or unreadable data) from {self.description}")

    def retrieve(self) -> np.ndarray:
        assert self._cap is not None
        ok, frame = self._cap.retrieve()
        if not ok or frame is None:
            raise SourceError(f"cannot decode a frame from {self.description}")
        return frame

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class HttpSource(FrameSource):
    """HTTP(S): a JPEG snapshot polled at the camera's fps, or an MJPEG stream read with httpx.

    With kind ``auto`` the first response's Content-Type decides (``multipart/*``: MJPEG,
    ``image/*``: snapshot); any other video type is handed to FFmpeg. Credentials in the url are
    sent as Basic auth, or Digest when the camera asks for it. A snapshot or MJPEG part over
    ``max_bytes`` is refused (read no further), so a wrong URL cannot fill the memory.
    """

    def __init__(self, cfg: CameraConfig, kind: str, max_bytes: int = MAX_FRAME_BYTES) -> None:
        self.cfg, self.kind = cfg, kind  # kind: snapshot, mjpeg or http (= decide on open)
        self.max_bytes = max_bytes
        self.description = f"{kind} {cfg.redacted_url}"
        self._client: httpx.Client | None = None
        self._resp: httpx.Response | None = None
        self._chunks = None
        self._parser: MjpegParser | None = None
        self._pending: deque[bytes] = deque()
        self._jpeg: bytes | None = None
        self._ffmpeg: CaptureSource | None = None

    def open(self) -> None:
        cfg = self.cfg
        timeout = httpx.Timeout(cfg.read_timeout_s, connect=cfg.open_timeout_s, pool=cfg.open_timeout_s)
        self._client = httpx.Client(timeout=timeout, follow_redirects=True)
        try:
            resp = self._send(stream=True)
            ctype = resp.headers.get("content-type", "").lower()
            mode = self.kind
            if mode == "http":
                if ctype.startswith("multipart/"):
                    mode = "mjpeg"
                elif ctype.startswith("image/"):
                    mode = "snapshot"
                else:
                    resp.close()
                    self._client.close()
                    self._client = None
                    self._ffmpeg = CaptureSource(cfg, "http")
                    self._ffmpeg.open()
                    self.pace_s, self.description = None, f"ffmpeg {cfg.redacted_url}"
                    self.frame_interval_s = self._ffmpeg.frame_interval_s
                    return
            self.description = f"{mode} {cfg.redacted_url}"
            if mode == "snapshot":
                self._pending.append(self._read_capped(resp))
                self.pace_s = 1.0 / cfg.fps
            else:
                self._resp, self._chunks = resp, resp.iter_bytes()
                self._parser = MjpegParser(boundary_of(ctype), self.max_bytes)
                self.pace_s = None
            self.kind = mode
        except httpx.HTTPError as e:
            self.close()
            raise SourceError(_http_error(e, cfg)) from None
        except SourceError:
            self.close()
            raise

    def _send(self, stream: bool) -> httpx.Response:
        assert self._client is not None
        req = self._client.build_request("GET", str(self.cfg.url))
        resp = self._client.send(req, stream=stream)
        if resp.status_code == 401 and "digest" in resp.headers.get("www-authenticate", "").lower():
            parts = urlsplit(str(self.cfg.url))
            resp.close()
            self._client.auth = httpx.DigestAuth(parts.username or "", parts.password or "")
            resp = self._client.send(self._client.build_request("GET", str(self.cfg.url)), stream=stream)
        if resp.status_code != 200:
            resp.close()
            hint = ": check the user:password in the camera URL" if resp.status_code in (401, 403) else ""
            raise SourceError(f"HTTP {resp.status_code} {resp.reason_phrase} from {self.cfg.redacted_url}{hint}")
        return resp

    def _read_capped(self, resp: httpx.Response) -> bytes:
        """A snapshot's body, refused early (Content-Length) or while reading once over ``max_bytes``."""
        too_big = (f"the snapshot from {self.cfg.redacted_url} is over {self.max_bytes} bytes: point the camera "
                   "at a JPEG snapshot or MJPEG URL (or lower its resolution)")
        try:
            length = resp.headers.get("content-length", "").strip()
            if length.isdigit() and int(length) > self.max_bytes:
                raise SourceError(f"{too_big} (Content-Length {length})")
            body = bytearray()
            for chunk in resp.iter_bytes():
                body += chunk
                if len(body) > self.max_bytes:
                    raise SourceError(too_big)
            return bytes(body)
        finally:
            resp.close()

    def grab(self) -> None:
        if self._ffmpeg is not None:
            return self._ffmpeg.grab()
        try:
            if self.kind == "snapshot":
                self._jpeg = self._pending.popleft() if self._pending else self._read_capped(self._send(stream=True))
                return
            assert self._parser is not None and self._chunks is not None
            while not self._pending:
                try:
                    chunk = next(self._chunks)
                except StopIteration:
                    raise SourceError(f"MJPEG stream ended: {self.cfg.redacted_url}") from None
                self._pending.extend(self._parser.feed(chunk))
            while len(self._pending) > 1:  # several parts in one read: keep the newest
                self._pending.popleft()
            self._jpeg = self._pending.popleft()
        except httpx.HTTPError as e:
            raise SourceError(_http_error(e, self.cfg)) from None
        except ValueError as e:
            raise SourceError(f"bad MJPEG stream from {self.cfg.redacted_url}: {e} (the most is {self.max_bytes}); "
                              "check that the URL is the camera's MJPEG stream") from None

    def retrieve(self) -> np.ndarray:
        if self._ffmpeg is not None:
            return self._ffmpeg.retrieve()
        data = self._jpeg or b""
        try:
            frame, _ = decode_image(data, MAX_FRAME_PIXELS, exif_orientation=True)
        except ImageError:  # its message is for an API client; this one says which camera
            raise SourceError(f"cannot decode the image ({len(data)} bytes) from {self.cfg.redacted_url}") from None
        return frame

    def close(self) -> None:
        if self._ffmpeg is not None:
            self._ffmpeg.close()
        if self._resp is not None:
            self._resp.close()
        if self._client is not None:
            self._client.close()
        self._resp = self._client = self._chunks = self._ffmpeg = None


def _http_error(e: httpx.HTTPError, cfg: CameraConfig) -> str:
    url = cfg.redacted_url
    detail = redact(str(e).replace(str(cfg.url), url)) or type(e).__name__
    if isinstance(e, httpx.ConnectTimeout):
        return f"cannot connect to {url}: no answer within {cfg.open_timeout_s:g} s"
    if isinstance(e, httpx.ReadTimeout):
        return f"no data within {cfg.read_timeout_s:g} s from {url}"
    if isinstance(e, httpx.ConnectError):
        return f"cannot connect to {url}: {detail}"
    return f"{type(e).__name__} from {url}: {detail}"


def _check_reachable(url: str, timeout: float) -> None:
    """Connect once to the RTSP host: OpenCV says only 'cannot open', this says why."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port or (322 if parts.scheme.lower() == "rtsps" else 554)
    except ValueError:
        raise SourceError(f"bad port in {parts.scheme}://{host}") from None
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except socket.gaierror as e:
        raise SourceError(f"cannot resolve host {host!r}: {e.strerror}") from None
    except TimeoutError:
        raise SourceError(f"cannot connect to {host}:{port}: no answer within {timeout:g} s") from None
    except OSError as e:
        raise SourceError(f"cannot connect to {host}:{port}: {e.strerror or e}") from None


def open_source(cfg: CameraConfig) -> FrameSource:
    """An unopened source for the camera (call ``open()`` on it)."""
    kind = cfg.resolved_kind
    if kind in ("http", "snapshot", "mjpeg"):
        return HttpSource(cfg, kind)
    return CaptureSource(cfg, kind)
