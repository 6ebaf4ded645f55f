"""One bad camera, source or sink never takes down the others: body caps on HTTP cameras, a
worker that outlives any failure, a service whose start and state publisher survive one camera."""

from __future__ import annotations

import asyncio
import http.server
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from media import write_video

from edgewatch.daemon.cameras import CameraConfig, CameraReader, SourceError
from edgewatch.daemon.cameras.mjpeg import MAX_FRAME_BYTES
from edgewatch.daemon.cameras.sources import HttpSource
from edgewatch.daemon.config import CameraSettings, load_settings
from edgewatch.daemon.modules.detection import DetectionModule
from edgewatch.daemon.inference_queue import InferenceQueue
from edgewatch.daemon.pipeline import camera_service
from edgewatch.daemon.pipeline.camera_service import CameraService
from edgewatch.daemon.pipeline.camera_worker import CameraWorker
from edgewatch.daemon.pipeline.rules import DetectConfig
from edgewatch.daemon.testing.camera_support import wait_until
from edgewatch.models.store import ModelStore

BIG = 32 * 1024 * 1024  # what the oversize server would send in all
CAP = 1024 * 1024       # the cap injected into HttpSource
CHUNK = 64 * 1024


class BigBodyServer:
    """A loopback HTTP "camera" with oversize answers, written lazily (never held in memory):
    /declared: Content-Length ``declared`` and that many bytes; /undeclared: no Content-Length,
    ``BIG`` bytes then close; /small-then-big: a real JPEG, then /undeclared's answer;
    /mjpeg: an MJPEG part without Content-Length that never ends. ``sent`` counts the bytes
    each request wrote before the client hung up; ``finished`` has the paths of ended requests."""

    def __init__(self, jpeg: bytes, declared: int = BIG) -> None:
        self.jpeg, self.declared = jpeg, declared
        self.sent: dict[str, int] = {}
        self.started: list[str] = []
        self.finished: list[str] = []
        self.cond = threading.Condition()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                with server.cond:
                    n = server.started.count(self.path)
                    server.started.append(self.path)
                written = 0
                try:
                    if self.path == "/small-then-big" and n == 0:
                        self._head("image/jpeg", len(server.jpeg))
                        self.wfile.write(server.jpeg)
                        written = len(server.jpeg)
                    elif self.path == "/declared":
                        self._head("image/jpeg", server.declared)
                        written = self._zeros(server.declared)
                    elif self.path == "/mjpeg":
                        self._head("multipart/x-mixed-replace; boundary=frame", None)
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n\r\n\xff\xd8")
                        written = self._zeros(BIG)
                    else:  # /undeclared and /small-then-big after the first request
                        self._head("image/jpeg", None)
                        written = self._zeros(BIG)
                except OSError as e:  # the client hung up; _zeros noted how much it had written
                    written = getattr(e, "written", written)
                finally:
                    with server.cond:
                        server.sent[self.path] = written
                        server.finished.append(self.path)
                        server.cond.notify_all()
                    self.close_connection = True

            def _head(self, ctype: str, length: int | None) -> None:
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                if length is None:
                    self.send_header("Connection", "close")
                else:
                    self.send_header("Content-Length", str(length))
                self.end_headers()

            def _zeros(self, size: int) -> int:
                written, chunk = 0, bytes(CHUNK)
                while written < size:
                    try:
                        self.wfile.write(chunk[:size - written])
                    except OSError as e:
                        e.written = written  # type: ignore[attr-defined]
                        raise
                    written += min(CHUNK, size - written)
                return written

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="big-body", daemon=True)
        self._thread.start()

    def wait_finished(self, path: str, count: int = 1, timeout: float = 10) -> int:
        """Wait until ``count`` requests for ``path`` ended; the bytes the last one wrote."""
        with self.cond:
            assert self.cond.wait_for(lambda: self.finished.count(path) >= count, timeout), self.finished
            return self.sent[path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


@pytest.fixture()
def big_server(photo_bytes: dict[str, bytes]) -> Iterator[BigBodyServer]:
    server = BigBodyServer(photo_bytes["bus"])
    yield server
    server.close()


def _source(server: BigBodyServer, path: str, kind: str = "snapshot") -> HttpSource:
    cfg = CameraConfig(name="big", url=f"{server.base}{path}", kind=kind, open_timeout_s=5, read_timeout_s=5)
    return HttpSource(cfg, kind, max_bytes=CAP)


def test_snapshot_without_content_length_is_cut_at_the_cap(big_server: BigBodyServer) -> None:
    source = _source(big_server, "/undeclared")
    try:
        with pytest.raises(SourceError, match=f"over {CAP} bytes: point the camera at a JPEG snapshot"):
            source.open()
    finally:
        source.close()
    assert big_server.wait_finished("/undeclared") < BIG // 2  # the reader hung up early, not after 32 MiB


def test_snapshot_polls_are_capped_too(big_server: BigBodyServer, photo_bytes: dict[str, bytes]) -> None:
    source = _source(big_server, "/small-then-big")
    try:
        source.open()
        source.grab()
        assert source.retrieve().shape == cv2.imdecode(np.frombuffer(photo_bytes["bus"], np.uint8), 1).shape
        with pytest.raises(SourceError, match=f"over {CAP} bytes"):
            source.grab()  # the next poll answers 32 MiB
    finally:
        source.close()
    assert big_server.wait_finished("/small-then-big", count=2) < BIG // 2


def test_mjpeg_part_over_the_cap_is_refused(big_server: BigBodyServer) -> None:
    source = _source(big_server, "/mjpeg", kind="mjpeg")
    try:
        source.open()
        with pytest.raises(SourceError, match="bad MJPEG stream .* check that the URL is the camera's MJPEG stream"):
            source.grab()
    finally:
        source.close()
    assert big_server.wait_finished("/mjpeg") < BIG // 2


def test_reader_refuses_a_declared_oversize_snapshot_before_reading_it(photo_bytes: dict[str, bytes]) -> None:
    """The real cap (16 MiB, shared with MJPEG) through a CameraReader: one byte over is refused
    from the Content-Length, and the reconnects do not read the body either."""
    server = BigBodyServer(photo_bytes["bus"], declared=MAX_FRAME_BYTES + 1)
    cfg = CameraConfig(name="huge", url=f"{server.base}/declared", kind="snapshot")
    try:
        with CameraReader(cfg, backoff_initial_s=0.05, backoff_max_s=0.1) as reader:
            assert wait_until(lambda: reader.state().reconnects >= 2, timeout=10), reader.state()
            state = reader.state()
        assert not state.connected and state.frames_out == 0
        assert f"over {MAX_FRAME_BYTES} bytes" in state.last_error and "Content-Length" in state.last_error
        assert server.wait_finished("/declared", count=2) < MAX_FRAME_BYTES // 2
    finally:
        server.close()


# ---- the worker and the service ----------------------------------------------------------------

class Scene:
    """A live camera: a new frame on every call, alternating two photos (so there is motion)."""

    def __init__(self, a: np.ndarray, b: np.ndarray) -> None:
        self.frames, self.seq = (a, b), 0

    def latest(self, after_seq: int):
        self.seq += 1
        return self.seq, self.frames[self.seq % 2], 0.0


class FlakySink:
    """A sink that fails ``failures`` times (a broker that went away), then works."""

    def __init__(self, failures: int) -> None:
        self.failures, self.calls = failures, 0
        self.failed, self.worked = asyncio.Event(), asyncio.Event()

    def camera_update(self, camera, events, counts, frame, located) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            if self.calls == self.failures:
                self.failed.set()
            raise RuntimeError("broker connection lost")
        self.worked.set()


@pytest.fixture()
def module(data_dir: Path, cache_dir: Path) -> Iterator[DetectionModule]:
    config = load_settings(data_dir=data_dir, cache_dir=cache_dir)
    detection = DetectionModule(config, ModelStore(config.models_dir), {})
    yield detection
    detection.close()


def test_worker_logs_and_survives_any_failure(module: DetectionModule, photos: dict[str, Path],
                                              caplog: pytest.LogCaptureFixture) -> None:
    scene = Scene(*(cv2.resize(cv2.imread(str(photos[n])), (640, 480)) for n in ("bus", "coffee")))
    sink = FlakySink(failures=2)

    async def scenario() -> tuple[CameraWorker, str | None]:
        queue = InferenceQueue(1, 4)
        worker = CameraWorker("porch", scene, DetectConfig(), module, queue, sink)
        task = asyncio.create_task(worker.run())
        await asyncio.wait_for(sink.failed.wait(), 20)
        error = worker.error
        await asyncio.wait_for(sink.worked.wait(), 20)
        worker.stop()
        await asyncio.wait_for(task, 10)
        queue.close()
        return worker, error

    with caplog.at_level(logging.INFO, logger="edgewatch"):
        worker, error = asyncio.run(scenario())
    assert error == "detection failed: RuntimeError: broker connection lost"
    assert worker.error is None and worker.detections >= 3  # it came back by itself
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "broker connection lost" in r.getMessage()]
    assert len(warnings) == 1, "the same failure is logged once, not on every retry"
    assert "camera porch: detection works again" in caplog.text


class RecordingSink:
    """Records camera states; every call for ``broken`` raises (its MQTT topic cannot be written)."""

    def __init__(self, broken: str) -> None:
        self.broken, self.states, self.announced = broken, [], []
        self.healthy_connected = asyncio.Event()

    def add_camera(self, name: str, labels: list[str], names_people: bool = False,
                   reads_plates: bool = False) -> None:
        if name == self.broken:
            raise RuntimeError(f"cannot announce {name}")
        self.announced.append(name)

    def camera_state(self, name: str, state: dict) -> None:
        if name == self.broken:
            raise RuntimeError(f"cannot publish {name}")
        self.states.append((name, state))
        if state.get("connected"):
            self.healthy_connected.set()

    def camera_update(self, camera, events, counts, frame, located) -> None:
        pass


@pytest.fixture()
def video(tmp_path: Path, photos: dict[str, Path]) -> Path:
    return write_video(tmp_path / "scene.avi", photos, ("bus", "astronaut"), (320, 240), 5)


def test_one_bad_camera_does_not_stop_the_others(module: DetectionModule, video: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """'boom' cannot start (no thread to be had), 'bad' cannot be announced or published:
    'good' still starts, connects, and its state still reaches the sink."""
    start = CameraReader.start

    def start_or_fail(reader: CameraReader) -> CameraReader:
        if reader.name == "boom":
            raise RuntimeError("can't start new thread")
        return start(reader)

    monkeypatch.setattr(camera_service.CameraReader, "start", start_or_fail)
    monkeypatch.setattr(camera_service, "STATE_POLL_S", 0.05)
    cameras = [CameraSettings(name=n, url=f"file:{video}", fps=5) for n in ("boom", "bad", "good")]
    sink = RecordingSink(broken="bad")

    async def scenario() -> dict[str, dict]:
        queue = InferenceQueue(1, 4)
        service = CameraService(cameras, tmp_path, module, queue, sink)
        await service.start()
        await asyncio.wait_for(sink.healthy_connected.wait(), 20)
        states = service.states()
        await service.stop()
        queue.close()
        return states

    with caplog.at_level(logging.INFO, logger="edgewatch"):
        states = asyncio.run(scenario())
    assert "can't start new thread" in states["boom"]["last_error"] and not states["boom"]["running"]
    assert states["bad"]["running"] and states["good"]["connected"]
    assert sink.announced == ["good"] and {n for n, _ in sink.states} == {"boom", "good"}
    assert all("can't start new thread" in state["last_error"] for n, state in sink.states if n == "boom")
    assert "cannot publish the state of camera bad" in caplog.text
    assert "camera boom: could not start" in caplog.text


def test_cameras_over_max_cameras_are_not_started(module: DetectionModule, video: Path, tmp_path: Path) -> None:
    cameras = [CameraSettings(name=f"cam{i}", url=f"file:{video}") for i in range(3)]

    async def scenario() -> dict[str, dict]:
        queue = InferenceQueue(1, 4)
        service = CameraService(cameras, tmp_path, module, queue, None, max_cameras=2)
        await service.start()
        states = service.states()
        await service.stop()
        queue.close()
        return states

    states = asyncio.run(scenario())
    assert [states[f"cam{i}"]["running"] for i in range(3)] == [True, True, False]
    assert "max_cameras" in states["cam2"]["last_error"]
