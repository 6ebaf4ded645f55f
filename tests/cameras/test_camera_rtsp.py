"""CameraReader against a real RTSP server (GStreamer, H.264 over TCP) playing real photos."""

from __future__ import annotations

import logging
import os
import re
import threading
import time

import numpy as np
import pytest

from edgewatch.daemon.cameras import CameraConfig, CameraReader
from edgewatch.daemon.testing.camera_support import FRAME_SIZE, STREAM_FPS, RtspServer, wait_until


def _closest_photo(frame: np.ndarray, refs: dict[str, np.ndarray]) -> tuple[str, float]:
    diffs = {n: float(np.abs(frame.astype(np.int16) - ref.astype(np.int16)).mean()) for n, ref in refs.items()}
    name = min(diffs, key=diffs.__getitem__)
    return name, diffs[name]


def _reader(url: str, **cfg: object) -> CameraReader:
    fields = {"fps": 5.0, "open_timeout_s": 5.0, "read_timeout_s": 3.0} | cfg
    return CameraReader(CameraConfig(name="rtsp-test", url=url, **fields),
                        backoff_initial_s=0.2, backoff_max_s=1.0)


def test_reads_real_frames_of_the_stream_size(rtsp_server: RtspServer, stream_frames: dict) -> None:
    with _reader(rtsp_server.url) as reader:
        seen: list[str] = []
        seq = 0
        for _ in range(6):
            got = reader.wait(seq, timeout=8)
            assert got is not None, reader.state()
            seq, frame, stamp = got
            assert frame.shape == (FRAME_SIZE[1], FRAME_SIZE[0], 3) and frame.dtype == np.uint8
            assert not frame.flags.writeable  # shared with other consumers: read-only
            assert frame.std() > 20  # not a constant or blank frame
            assert abs(time.time() - stamp) < 1.0
            name, diff = _closest_photo(frame, stream_frames)
            assert diff < 12, f"frame {seq} matches no photo (closest {name}: mean diff {diff:.1f})"
            seen.append(name)
        state = reader.state()
    assert len(set(seen)) >= 2, seen  # the stream really moves through the photos
    assert state.connected and state.kind == "rtsp" and state.last_error is None
    assert (state.width, state.height) == FRAME_SIZE
    assert state.open_time_s is not None and state.open_time_s < 4
    assert state.reconnects == 0


def test_fps_cap_is_honoured(rtsp_server: RtspServer) -> None:
    cap = 2.0
    with _reader(rtsp_server.url, fps=cap) as reader:
        first = reader.wait(0, timeout=8)
        assert first is not None, reader.state()
        seq, count, start = first[0], 0, time.monotonic()
        while (left := 3.0 - (time.monotonic() - start)) > 0:
            got = reader.wait(seq, timeout=left)
            if got is not None and time.monotonic() - start <= 3.0:
                seq, count = got[0], count + 1
        state = reader.state()
    assert 4 <= count <= cap * 3 + 1, count  # a consumer polling without pause gets <= cap a second
    assert state.fps_out <= cap * 1.1, state
    assert state.fps_in >= STREAM_FPS * 0.7, state  # every frame is still read from the stream


def test_slow_consumer_only_gets_the_newest_frame(rtsp_server: RtspServer) -> None:
    with _reader(rtsp_server.url) as reader:
        got = reader.wait(0, timeout=8)
        assert got is not None, reader.state()
        seqs, stamps = [got[0]], [got[2]]
        assert reader.latest(got[0]) is None  # nothing newer yet: no copy, no wait
        for _ in range(3):
            time.sleep(1.0)  # a consumer busy for a second per frame
            got = reader.latest(seqs[-1])
            assert got is not None
            assert time.time() - got[2] < 0.5  # what it gets is fresh, not a second old
            seqs.append(got[0])
            stamps.append(got[2])
    gaps = np.diff(seqs)
    assert (gaps >= 3).all(), seqs  # the frames in between were replaced, not queued
    assert (np.diff(stamps) > 1.0 - 1 / STREAM_FPS - 0.1).all(), stamps  # newest at each look


def test_server_outage_reconnects_with_backoff(own_rtsp_server: RtspServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="edgewatch.daemon.cameras")
    with _reader(own_rtsp_server.url) as reader:
        got = reader.wait(0, timeout=8)
        assert got is not None, reader.state()

        own_rtsp_server.stop()  # the camera goes away mid-stream
        assert wait_until(lambda: not reader.state().connected, timeout=5), reader.state()
        down = reader.state()
        assert down.last_error and "stream ended" in down.last_error, down
        assert wait_until(lambda: reader.state().reconnects >= 4, timeout=6), reader.state()
        state = reader.state()
        assert not state.connected and "Connection refused" in (state.last_error or ""), state
        assert state.running and state.fps_out == 0 and state.last_frame_age_s > 1

        delays = [float(m) for m in re.findall(r"reconnecting in ([\d.]+) s", caplog.text)]
        assert delays[:5] == [0.2, 0.4, 0.8, 1.0, 1.0][:len(delays[:5])] and len(delays) >= 4, delays
        assert any("disconnected" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)

        own_rtsp_server.start()  # back on the same port
        seq = reader.latest()[0]
        got = reader.wait(seq, timeout=10)
        assert got is not None, reader.state()
        assert got[1].shape == (FRAME_SIZE[1], FRAME_SIZE[0], 3) and got[1].std() > 20
        again = reader.state()
        assert again.connected and again.last_error is None and again.retry_in_s is None, again
        # frames flow again, not just one
        assert reader.wait(got[0], timeout=3) is not None
    assert any("connected to" in r.getMessage() and "after: cannot connect" in r.getMessage()
               for r in caplog.records)


def _os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def test_stop_leaves_no_thread(rtsp_server: RtspServer) -> None:
    # one round first: OpenCV and FFmpeg create some process-wide worker threads on first use
    with _reader(rtsp_server.url) as warm:
        assert warm.wait(0, timeout=8) is not None, warm.state()
    before, before_os = threading.active_count(), _os_threads()
    reader = _reader(rtsp_server.url).start()
    assert threading.active_count() == before + 1
    assert reader.wait(0, timeout=8) is not None, reader.state()
    assert _os_threads() > before_os  # the reader and FFmpeg's decoder threads
    started = time.monotonic()
    assert reader.stop() is True
    assert time.monotonic() - started < 1.5
    assert threading.active_count() == before
    # FFmpeg's decoder threads are gone too (<=: other native threads may come and go meanwhile)
    assert wait_until(lambda: _os_threads() <= before_os, timeout=1), (_os_threads(), before_os)
    assert not any(t.name == "camera-rtsp-test" for t in threading.enumerate())
    assert reader.state().running is False and reader.state().connected is False


def test_wrong_rtsp_path_is_reported(rtsp_server: RtspServer) -> None:
    url = rtsp_server.url.replace("/cam", "/nothing-here")
    with _reader(url) as reader:
        assert wait_until(lambda: reader.state().last_error is not None, timeout=6), reader.state()
        state = reader.state()
    assert not state.connected and state.frames_out == 0
    assert state.last_error == f"cannot open rtsp {url}: refused by the server (wrong path or credentials?) " \
                               "or not a video stream", state.last_error
