"""CameraReader with a looped video file, a local HTTP camera (snapshot and MJPEG), and bad sources."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgewatch.daemon.cameras import CameraConfig, CameraReader
from edgewatch.daemon.testing.camera_support import HttpCamera, free_port, wait_until

CLIP_SIZE = (640, 360)
CLIP_FPS = 10
CLIP_PHOTOS = ("bus", "zidane", "chelsea")
FRAMES_PER_PHOTO = 3  # 9 frames: 0.9 s at 10 fps


@pytest.fixture(scope="module")
def clip(photos: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    """A short MJPG .avi made from real photos with cv2.VideoWriter; returns it and its frames."""
    path = tmp_path_factory.mktemp("clip") / "yard.avi"
    refs = {n: cv2.resize(cv2.imread(str(photos[n])), CLIP_SIZE, interpolation=cv2.INTER_AREA) for n in CLIP_PHOTOS}
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), CLIP_FPS, CLIP_SIZE)
    assert writer.isOpened()
    for name in CLIP_PHOTOS:
        for _ in range(FRAMES_PER_PHOTO):
            writer.write(refs[name])
    writer.release()
    assert path.stat().st_size > 10_000
    return path, refs


def _closest(frame: np.ndarray, refs: dict[str, np.ndarray]) -> tuple[str, float]:
    diffs = {n: float(np.abs(frame.astype(np.int16) - r.astype(np.int16)).mean()) for n, r in refs.items()}
    name = min(diffs, key=diffs.__getitem__)
    return name, diffs[name]


def _collect(reader: CameraReader, seconds: float) -> list[tuple[int, np.ndarray, float]]:
    frames, seq, end = [], 0, time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        got = reader.wait(seq, timeout=left)
        if got is not None:
            frames.append(got)
            seq = got[0]
    return frames


def test_video_file_loops(clip: tuple[Path, dict[str, np.ndarray]]) -> None:
    path, refs = clip
    cfg = CameraConfig(name="clip", url=f"file:{path}", fps=10)
    with CameraReader(cfg) as reader:
        frames = _collect(reader, 2.5)  # the file lasts 0.9 s
        state = reader.state()
    assert len(frames) >= 18, len(frames)  # played at its own 10 fps, round and round
    names = []
    for _, frame, _ in frames:
        assert frame.shape == (CLIP_SIZE[1], CLIP_SIZE[0], 3)
        name, diff = _closest(frame, refs)
        assert diff < 8, (name, diff)
        names.append(name)
    # the clip's order, repeated: bus bus bus zidane ... chelsea bus ...
    changes = [n for i, n in enumerate(names) if i == 0 or n != names[i - 1]]
    assert changes.count("bus") >= 2 and "zidane" in changes and "chelsea" in changes, names
    assert state.kind == "file" and state.connected and state.last_error is None
    assert 8 <= state.fps_in <= 12, state


def test_video_file_fps_cap_drops_frames(clip: tuple[Path, dict[str, np.ndarray]]) -> None:
    path, _ = clip
    with CameraReader(CameraConfig(name="clip", url=str(path), fps=4)) as reader:
        frames = _collect(reader, 2.0)
        state = reader.state()
    assert 6 <= len(frames) <= 9, len(frames)
    assert state.fps_out <= 4.4 and state.fps_in >= 8, state


def test_http_snapshot_polled_at_the_cap(http_camera: HttpCamera, photos: dict[str, Path]) -> None:
    cfg = CameraConfig(name="snap", url=f"{http_camera.base}/snap.jpg", fps=4)  # kind auto
    with CameraReader(cfg) as reader:
        frames = _collect(reader, 2.0)
        state = reader.state()
    requests = http_camera.count("/snap.jpg")
    assert state.kind == "snapshot" and state.last_error is None, state
    assert 6 <= len(frames) <= 9, len(frames)
    assert requests <= 4 * 2 + 2, requests  # one request per frame, no faster than the cap
    bus, zidane = (cv2.imread(str(photos[n])) for n in ("bus", "zidane"))
    shapes = {f.shape for _, f, _ in frames}
    assert shapes == {bus.shape, zidane.shape}  # served in turn, decoded at full size
    first = next(f for _, f, _ in frames if f.shape == bus.shape)
    assert np.array_equal(first, bus)  # the same JPEG decoder: bit-identical


def test_http_mjpeg_stream(http_camera: HttpCamera, photos: dict[str, Path]) -> None:
    cfg = CameraConfig(name="mjpeg", url=f"{http_camera.base}/stream.mjpg", fps=5)  # server sends 10/s
    with CameraReader(cfg) as reader:
        frames = _collect(reader, 2.0)
        state = reader.state()
    assert state.kind == "mjpeg" and state.connected and state.last_error is None, state
    assert 7 <= len(frames) <= 11, len(frames)
    assert state.fps_in >= 7 and state.fps_out <= 5.5, state
    bus = cv2.imread(str(photos["bus"]))
    assert any(f.shape == bus.shape and np.array_equal(f, bus) for _, f, _ in frames)


@pytest.fixture()
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel's backlog) but never says a word."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s.getsockname()[1]


UNREACHABLE = {
    "refused": ("rtsp://127.0.0.1:{closed}/cam", "cannot connect to 127.0.0.1:{closed}: Connection refused"),
    "no-dns": ("rtsp://no-such-camera.invalid/cam", "cannot resolve host 'no-such-camera.invalid'"),
    "rtsp-silent": ("rtsp://127.0.0.1:{silent}/cam",
                    "cannot open rtsp rtsp://127.0.0.1:{silent}/cam: no video within 1 s"),
    "http-refused": ("http://127.0.0.1:{closed}/snap.jpg", "cannot connect to http://127.0.0.1:{closed}/snap.jpg: "),
    "http-silent": ("http://127.0.0.1:{silent}/snap.jpg", "no data within 0.5 s from http://127.0.0.1:{silent}/snap.jpg"),
    "no-file": ("{tmp}/missing.mp4", "video file not found: {tmp}/missing.mp4"),
    "not-video": ("{tmp}/broken.mp4", "cannot open file {tmp}/broken.mp4: not a video FFmpeg can read"),
    "no-device": ("/dev/video63", "no such video device: /dev/video63"),
}


@pytest.mark.parametrize("case", UNREACHABLE)
def test_unreachable_source_reports_a_clear_error(case: str, tmp_path: Path, silent_port: int) -> None:
    values = {"closed": free_port(), "silent": silent_port, "tmp": tmp_path}
    (tmp_path / "broken.mp4").write_bytes(b"\0" * 4096)  # a truncated download, say
    url, message = (text.format(**values) for text in UNREACHABLE[case])
    before = threading.active_count()
    cfg = CameraConfig(name="gone", url=url, open_timeout_s=1, read_timeout_s=0.5)
    reader = CameraReader(cfg, backoff_initial_s=0.1, backoff_max_s=0.2).start()
    try:
        assert wait_until(lambda: reader.state().reconnects >= 2, timeout=5), reader.state()
        state = reader.state()
        assert state.running and not state.connected and state.frames_out == 0
        assert message in (state.last_error or ""), state.last_error
        assert reader.latest() is None and reader.wait(0, timeout=0.05) is None
    finally:
        assert reader.stop() is True
    assert threading.active_count() == before


def test_http_video_goes_to_ffmpeg(http_camera: HttpCamera, clip: tuple[Path, dict[str, np.ndarray]]) -> None:
    path, refs = clip
    http_camera.files["/clip.avi"] = ("video/x-msvideo", path.read_bytes())
    cfg = CameraConfig(name="httpclip", url=f"{http_camera.base}/clip.avi")  # neither image nor multipart
    with CameraReader(cfg, backoff_initial_s=0.1, backoff_max_s=0.2) as reader:
        got = reader.wait(0, timeout=5)
        assert got is not None, reader.state()
        assert reader.state().kind == "http"
    name, diff = _closest(got[1], refs)
    assert got[1].shape == (CLIP_SIZE[1], CLIP_SIZE[0], 3) and diff < 8, (name, diff)


def test_http_error_status_is_reported(http_camera: HttpCamera) -> None:
    cfg = CameraConfig(name="cam404", url=f"{http_camera.base}/nothing.jpg", kind="snapshot")
    with CameraReader(cfg, backoff_initial_s=0.1, backoff_max_s=0.2) as reader:
        assert wait_until(lambda: reader.state().last_error is not None, timeout=3)
        error = reader.state().last_error or ""
        assert error.startswith("HTTP 404 ") and error.endswith(f"from {http_camera.base}/nothing.jpg"), error


def test_wrong_camera_credentials_are_reported(http_camera: HttpCamera) -> None:
    host = http_camera.base.removeprefix("http://")
    cfg = CameraConfig(name="locked", url=f"http://admin:wrong@{host}/private.jpg", kind="snapshot")
    with CameraReader(cfg, backoff_initial_s=0.1, backoff_max_s=0.2) as reader:
        assert wait_until(lambda: reader.state().last_error is not None, timeout=3)
        state = reader.state()
        assert not state.connected and state.frames_out == 0
        assert state.last_error.startswith("HTTP 401 ") and "check the user:password" in state.last_error
        assert "wrong" not in state.last_error, "the password is never logged"
    cfg = CameraConfig(name="unlocked", url=f"http://admin:secret@{host}/private.jpg", kind="snapshot")
    with CameraReader(cfg, backoff_initial_s=0.1, backoff_max_s=0.2) as reader:
        assert reader.wait(0, timeout=5) is not None, reader.state()


def test_stop_is_prompt_while_backing_off() -> None:
    cfg = CameraConfig(name="later", url=f"rtsp://127.0.0.1:{free_port()}/cam")
    reader = CameraReader(cfg, backoff_initial_s=30).start()
    assert wait_until(lambda: reader.state().retry_in_s == 30, timeout=3), reader.state()
    started = time.monotonic()
    assert reader.stop() is True
    assert time.monotonic() - started < 0.5
    assert not reader.state().running


def test_disabled_camera_does_not_start(tmp_path: Path) -> None:
    before = threading.active_count()
    reader = CameraReader(CameraConfig(name="off", url=str(tmp_path / "x.mp4"), enabled=False)).start()
    assert threading.active_count() == before
    assert not reader.state().running and reader.latest() is None
    assert reader.stop() is True
