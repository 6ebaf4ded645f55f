"""Fixtures for the camera tests: real photos as frames, a loopback RTSP server, a local HTTP camera."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgewatch.daemon.testing.camera_support import (APT_PACKAGES, FRAME_SIZE, GST_CHECK, STREAM_PHOTOS,
                                                     SYSTEM_PYTHON, HttpCamera, RtspServer, free_port)


@pytest.fixture(scope="session")
def stream_frames(photos: dict[str, Path]) -> dict[str, np.ndarray]:
    """The photos the RTSP stream plays, resized to the stream's frame size (BGR)."""
    return {n: cv2.resize(cv2.imread(str(photos[n])), FRAME_SIZE, interpolation=cv2.INTER_AREA)
            for n in STREAM_PHOTOS}


@pytest.fixture(scope="session")
def frames_dir(tmp_path_factory: pytest.TempPathFactory, stream_frames: dict[str, np.ndarray]) -> Path:
    """img000.jpg, img001.jpg, ...: bus, zidane, astronaut at 1280x720 (multifilesrc needs one size)."""
    d = tmp_path_factory.mktemp("rtsp-frames")
    for i, name in enumerate(STREAM_PHOTOS):
        cv2.imwrite(str(d / f"img{i:03d}.jpg"), stream_frames[name], [cv2.IMWRITE_JPEG_QUALITY, 92])
    return d


@pytest.fixture(scope="session")
def gstreamer_rtsp() -> None:
    """Skips unless GStreamer's RTSP server can run here.

    Needs (Debian/Ubuntu): apt-get install -y gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0
    python3-gi gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
    gstreamer1.0-plugins-ugly
    """
    if not Path(SYSTEM_PYTHON).exists():
        pytest.skip(f"no {SYSTEM_PYTHON} to run the GStreamer RTSP server; apt-get install -y {APT_PACKAGES}")
    check = subprocess.run([SYSTEM_PYTHON, "-c", GST_CHECK], capture_output=True, text=True, timeout=60)
    if check.returncode != 0:
        reason = (check.stderr.strip().splitlines() or ["?"])[-1]
        pytest.skip(f"GStreamer RTSP server not usable ({reason}); apt-get install -y {APT_PACKAGES}")
    if check.stdout.strip():
        pytest.skip(f"GStreamer elements missing: {check.stdout.strip()}; apt-get install -y {APT_PACKAGES}")


def _server(frames_dir: Path, tmp: Path) -> Iterator[RtspServer]:
    server = RtspServer(frames_dir, free_port(), tmp / "rtsp-server.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def rtsp_server(gstreamer_rtsp: None, frames_dir: Path,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[RtspServer]:
    """A shared loopback RTSP server: bus, zidane, astronaut looped as H.264, 1280x720 at 5 fps.

    Runs tests/cameras/rtsp_server.py with /usr/bin/python3. Needs (Debian 12) the apt packages
    gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-tools
    gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly;
    skips (saying so) without them.
    """
    yield from _server(frames_dir, tmp_path_factory.mktemp("rtsp"))


@pytest.fixture()
def own_rtsp_server(gstreamer_rtsp: None, frames_dir: Path, tmp_path: Path) -> Iterator[RtspServer]:
    """Like rtsp_server, but this test's own, to stop and restart (same apt packages)."""
    yield from _server(frames_dir, tmp_path)


@pytest.fixture()
def http_camera(photo_bytes: dict[str, bytes], photos: dict[str, Path]) -> Iterator[HttpCamera]:
    jpegs = [photo_bytes[n] for n in ("bus", "zidane")]  # the .jpg photos, served as they are
    assert all(photos[n].suffix == ".jpg" for n in ("bus", "zidane"))
    camera = HttpCamera(jpegs)
    yield camera
    camera.close()
