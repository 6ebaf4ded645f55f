"""HTTP camera frames go through the upload decoder (daemon/imaging.py), keep what cameras always
had (EXIF orientation applied, OpenCV's pixel limit), and fail as camera errors, not upload errors."""

from __future__ import annotations

import http.server
import io
import struct
import threading
from collections.abc import Iterator

import cv2
import numpy as np
import pytest
from PIL import Image

from edgewatch.daemon.cameras import CameraConfig, SourceError
from edgewatch.daemon.cameras.sources import HttpSource
from edgewatch.daemon.imaging import decode_image


@pytest.fixture(scope="module")
def snapshots() -> Iterator[tuple[str, dict[str, bytes]]]:
    """A loopback HTTP camera answering each path with its bytes as image/jpeg."""
    bodies: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            body = bodies[self.path]
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", bodies
    server.shutdown()
    server.server_close()


def _frame(snapshots: tuple[str, dict[str, bytes]], path: str, body: bytes) -> np.ndarray:
    base, bodies = snapshots
    bodies[path] = body
    source = HttpSource(CameraConfig(name="snap", url=base + path), "snapshot")
    try:
        source.open()
        source.grab()
        return source.retrieve()
    finally:
        source.close()


def _jpeg(width: int, height: int, orientation: int | None = None) -> bytes:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    out = io.BytesIO()
    if orientation is None:
        img.save(out, "JPEG")
    else:
        exif = img.getexif()
        exif[0x0112] = orientation
        img.save(out, "JPEG", exif=exif.tobytes())
    return out.getvalue()


def test_snapshot_decodes_as_opencv_always_did(snapshots, photo_bytes: dict[str, bytes]) -> None:
    for body in (photo_bytes["bus"], _jpeg(200, 120, orientation=6)):  # EXIF "turn 90°" is still applied
        expected = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
        assert np.array_equal(_frame(snapshots, "/same.jpg", body), expected)
    assert _frame(snapshots, "/turned.jpg", _jpeg(200, 120, orientation=6)).shape == (200, 120, 3)


@pytest.mark.parametrize("body", [b"not an image at all", b"\xff\xd8\xff\xe0 a JPEG start, nothing more", b""])
def test_undecodable_frames_are_camera_errors(snapshots, body: bytes) -> None:
    with pytest.raises(SourceError, match=rf"^cannot decode the image \({len(body)} bytes\) from http://"):
        _frame(snapshots, "/bad.jpg", body)


def test_a_frame_over_opencvs_pixel_limit_is_a_camera_error(snapshots) -> None:
    jpeg = bytearray(_jpeg(64, 64))
    sof = jpeg.find(b"\xff\xc0")
    struct.pack_into(">HH", jpeg, sof + 5, 40000, 40000)  # claims 1.6 Gpx: OpenCV raised cv2.error for it
    with pytest.raises(SourceError, match="cannot decode the image"):
        _frame(snapshots, "/bomb.jpg", bytes(jpeg))


def test_exif_orientation_scale_follows_the_turn() -> None:
    turned, scale = decode_image(_jpeg(200, 120, orientation=6), 10**8, exif_orientation=True)
    assert turned.shape == (200, 120, 3) and scale == 1.0
    stored, scale = decode_image(_jpeg(200, 120, orientation=6), 10**8)  # uploads: the stored pixel grid
    assert stored.shape == (120, 200, 3) and scale == 1.0
