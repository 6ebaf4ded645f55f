"""Camera harness for tests/cameras and bench/cameras.py: a restartable loopback RTSP server process
(rtsp_server.py) and a tiny HTTP camera."""

from __future__ import annotations

import base64
import http.server
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"
RTSP_SERVER = Path(__file__).with_name("rtsp_server.py")
APT_PACKAGES = ("gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-tools "
                "gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly")
FRAME_SIZE = (1280, 720)
STREAM_PHOTOS = ("bus", "zidane", "astronaut")
STREAM_FPS = 5

GST_CHECK = """
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer
Gst.init(None)
missing = [e for e in ("multifilesrc", "jpegdec", "videoconvert", "videoscale", "videorate",
                       "x264enc", "rtph264pay") if Gst.ElementFactory.find(e) is None]
print(" ".join(missing))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


class RtspServer:
    """rtsp_server.py (next to this file) in a subprocess, on a fixed loopback port (restartable)."""

    def __init__(self, frames: Path, port: int, log: Path, mount: str = "/cam") -> None:
        self.frames, self.port, self.log, self.mount = frames, port, log, mount
        self.url = f"rtsp://127.0.0.1:{port}{mount}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 15) -> None:
        assert self.proc is None
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [SYSTEM_PYTHON, str(RTSP_SERVER), "--port", str(self.port), "--frames", str(self.frames),
                 "--mount", self.mount, "--size", "x".join(map(str, FRAME_SIZE)), "--fps", str(STREAM_FPS)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )

        def ready() -> bool:
            return "READY" in self.log.read_bytes()[offset:].decode(errors="replace") or self.proc.poll() is not None

        wait_until(ready, timeout)
        if self.proc.poll() is not None or not ready():
            text = self.log.read_bytes()[offset:].decode(errors="replace")
            self.stop()
            raise RuntimeError(f"RTSP server did not start on port {self.port}:\n{text}")

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None


class HttpCamera:
    """A tiny HTTP camera on loopback: /snap.jpg (one photo per request, in turn),
    /stream.mjpg (multipart/x-mixed-replace at ``mjpeg_fps``) and any ``files`` added;
    counts requests per path."""

    def __init__(self, jpegs: list[bytes], mjpeg_fps: float = 10) -> None:
        self.jpegs, self.mjpeg_fps = jpegs, mjpeg_fps
        self.files: dict[str, tuple[str, bytes]] = {}  # other paths: (content type, body)
        self.requests: dict[str, int] = {}
        # /private.jpg wants HTTP Basic auth as admin:secret, like many cameras' snapshot URLs
        self.basic_auth = "Basic " + base64.b64encode(b"admin:secret").decode()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        camera = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                try:
                    self._get()
                except ConnectionError:  # the reader hung up: fine
                    self.close_connection = True

            def _get(self) -> None:
                with camera._lock:
                    n = camera.requests.get(self.path, 0)
                    camera.requests[self.path] = n + 1
                if self.path == "/private.jpg" and self.headers.get("Authorization") != camera.basic_auth:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="camera"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif self.path in ("/snap.jpg", "/private.jpg"):
                    body = camera.jpegs[n % len(camera.jpegs)]
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                elif self.path == "/stream.mjpg":
                    self.send_response(200)
                    self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    i = 0
                    try:
                        while not camera._closing.is_set():
                            body = camera.jpegs[i % len(camera.jpegs)]
                            self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n"
                                             + f"Content-Length: {len(body)}\r\n\r\n".encode() + body + b"\r\n")
                            self.wfile.flush()
                            i += 1
                            camera._closing.wait(1 / camera.mjpeg_fps)
                    except OSError:
                        pass
                    self.close_connection = True
                elif self.path in camera.files:
                    ctype, body = camera.files[self.path]
                    self.send_response(200)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    self.send_error(404, "no such camera path")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="http-camera", daemon=True)
        self._thread.start()

    def count(self, path: str) -> int:
        with self._lock:
            return self.requests.get(path, 0)

    def close(self) -> None:
        self._closing.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)
