"""systemd integration against a real notify socket: READY only once the API answers, STATUS lines,
WATCHDOG pings, RELOADING/READY around SIGHUP, STOPPING on SIGTERM, and the watchdog giving up
on a really hung inference (an ONNX model whose Loop never ends, run by the real onnxruntime)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

from edgewatch.daemon.server import DRAIN_S
from edgewatch.daemon.testing.daemon_process import DaemonProcess

pytest.importorskip("systemd.daemon", reason="systemd-python is needed: pip install -e '.[test]' "
                                             "after scripts/bootstrap-deps.sh --test (libsystemd-dev)")


class NotifySocket:
    """What systemd listens on for a Type=notify service: an AF_UNIX datagram socket."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []  # (perf_counter, datagram)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.messages.append((time.perf_counter(), data.decode()))

    def wait_for(self, predicate, after: int = 0, timeout: float = 30) -> tuple[int, float, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, (t, msg) in enumerate(self.messages[after:], start=after):
                if predicate(msg):
                    return i, t, msg
            time.sleep(0.02)
        raise AssertionError(f"no such notify message; got {[m for _, m in self.messages[after:]][-10:]}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def fields(message: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in message.splitlines() if "=" in line)


@pytest.fixture()
def notify(tmp_path: Path):
    s = NotifySocket(tmp_path / "notify.sock")
    yield s
    s.close()


def test_ready_status_watchdog_reload_and_stop(notify: NotifySocket, data_dir: Path, cache_dir: Path,
                                               tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"detection": {"min_confidence": 0.4}}))
    daemon = DaemonProcess(data_dir, cache_dir, env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000",
                                                    "EDGEWATCH_CONFIG": str(config)})
    daemon.start()
    try:
        i, ready_at, ready = notify.wait_for(lambda m: "READY=1" in m)
        statuses = [fields(m).get("STATUS", "") for _, m in notify.messages[:i]]
        assert any(s.startswith("probing") for s in statuses) and any(s.startswith("loading model ")
                                                                       for s in statuses), statuses
        assert fields(ready)["STATUS"].startswith(f"serving on :{daemon.port} with backend ")
        assert "(auto)" in fields(ready)["STATUS"]  # detection.model auto: the start line says so
        print(f"READY {ready_at - daemon.started_at:.2f} s after start")  # the figure bench/startup.py reports
        # READY means the API answers: nothing sent READY before the port listened
        assert httpx.get(f"{daemon.url}/v1/status/ping", timeout=5).status_code == 200

        # watchdog pings at half of WATCHDOG_USEC (1 s): the next five pings, spaced about 0.5 s
        after, pings = len(notify.messages), []
        for _ in range(5):
            i, at, _ = notify.wait_for(lambda m: "WATCHDOG=1" in m, after=after, timeout=10)
            pings.append(at)
            after = i + 1
        gaps = np.diff(pings)
        assert 0.25 <= float(np.median(gaps)) <= 0.75, gaps  # a late ping or two cannot move the median

        # SIGHUP: RELOADING=1, the new config applied, READY=1 again
        config.write_text(yaml.safe_dump({"detection": {"min_confidence": 0.7}}))
        mark = len(notify.messages)
        daemon.proc.send_signal(signal.SIGHUP)
        i, _, _ = notify.wait_for(lambda m: "RELOADING=1" in m and "MONOTONIC_USEC=" in m, after=mark)
        notify.wait_for(lambda m: "READY=1" in m, after=i)
        settings = httpx.get(f"{daemon.url}/v1/settings/ObjectDetectionEdgewatch", timeout=5).json()["settings"]
        assert settings["min_confidence"] == 0.7

        # a broken config is refused on reload; the daemon keeps the one it runs
        config.write_text("detection: {min_confidence: 7}\n")
        mark = len(notify.messages)
        daemon.proc.send_signal(signal.SIGHUP)
        notify.wait_for(lambda m: "READY=1" in m, after=mark)
        settings = httpx.get(f"{daemon.url}/v1/settings/ObjectDetectionEdgewatch", timeout=5).json()["settings"]
        assert settings["min_confidence"] == 0.7

        # SIGTERM: STOPPING=1 at once, then a clean exit
        mark = len(notify.messages)
        daemon.proc.send_signal(signal.SIGTERM)
        notify.wait_for(lambda m: "STOPPING=1" in m, after=mark, timeout=5)
        assert daemon.proc.wait(15) in (0, -signal.SIGTERM)
    finally:
        log = daemon.stop()
    assert "reload refused, keeping the running configuration" in log and "detection.min_confidence" in log
    assert "systemd watchdog: pinging every 0.5 s" in log


def _looping_detector(path: Path, trips: int = 2**62) -> None:
    """A YOLOv8-shaped ONNX model whose Loop runs ``trips`` times: 2**62 is a real inference that never
    returns; :func:`_trips_lasting` finds how many take a given time on this CPU."""
    zeros = np.zeros((1, 84, 10), np.float32)
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Add", ["v_in", "zero"], ["v_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [1, 84, 10])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [1, 84, 10])],
        [numpy_helper.from_array(zeros, "zero")])
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["images"], ["m"], keepdims=0),
         helper.make_node("Mul", ["m", "nought"], ["m0"]),
         helper.make_node("Add", ["v0", "m0"], ["v_init"]),
         helper.make_node("Loop", ["trips", "cond", "v_init"], ["output0"], body=body)],
        "hang",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 84, 10])],
        [numpy_helper.from_array(np.array(trips, np.int64), "trips"), numpy_helper.from_array(np.array(True), "cond"),
         numpy_helper.from_array(zeros, "v0"), numpy_helper.from_array(np.zeros((), np.float32), "nought")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


def _trips_lasting(seconds: float, scratch: Path) -> int:
    """How many Loop trips of :func:`_looping_detector` run for about ``seconds`` on this CPU, measured
    with onnxruntime on a run of at least 0.2 s (a Pi takes several times as long per trip as a PC)."""
    probe, trips = scratch / "timing.onnx", 20_000
    while True:
        _looping_detector(probe, trips)
        session = ort.InferenceSession(str(probe), providers=["CPUExecutionProvider"])
        t0 = time.perf_counter()
        session.run(None, {"images": np.zeros((1, 3, 64, 64), np.float32)})
        took = time.perf_counter() - t0
        if took >= 0.2:
            return max(1, int(trips * seconds / took))
        trips *= 4


def _add_model(model: Path, name: str, data_dir: Path, cache_dir: Path) -> None:
    labels = model.with_suffix(".txt")
    labels.write_text("\n".join(f"class{i}" for i in range(80)) + "\n")
    env = {**os.environ, "EDGEWATCH_DATA_DIR": str(data_dir), "EDGEWATCH_CACHE_DIR": str(cache_dir)}
    # --no-int8: calibrating these deliberately slow or endless models would take for ever; --kind: so
    # would the one run that tells pixel boxes from fractions of the input
    subprocess.run([sys.executable, "-m", "edgewatch.daemon.cli", "models", "add", str(model), "--name", name,
                    "--labels", str(labels), "--no-int8", "--kind", "yolov8"], check=True, env=env,
                   capture_output=True, timeout=120)


def test_sigterm_lets_the_request_in_flight_finish(notify: NotifySocket, data_dir: Path, cache_dir: Path,
                                                  tmp_path: Path, photo_bytes: dict[str, bytes]) -> None:
    # An inference of about a quarter of the drain time on this CPU: long enough to still be running
    # when SIGTERM comes, short enough to finish within the drain.
    model = tmp_path / "slow.onnx"
    _looping_detector(model, trips=_trips_lasting(DRAIN_S / 4, tmp_path))
    _add_model(model, "slow", data_dir, cache_dir)
    # The signal that the inference is running is the daemon's own view of its inference queue: the
    # watchdog reports any inference in a worker for over hang_after_s (0.1 s), checking every 0.2 s.
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"inference": {"hang_after_s": 0.1}}))
    daemon = DaemonProcess(data_dir, cache_dir, env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000",
                                                    "EDGEWATCH_CONFIG": str(config)})
    daemon.start()
    answers: list[tuple[float, httpx.Response]] = []

    def ask() -> None:
        r = httpx.post(f"{daemon.url}/v1/vision/custom/slow", files={"image": photo_bytes["bus"]}, timeout=60)
        answers.append((time.perf_counter(), r))

    try:
        notify.wait_for(lambda m: "READY=1" in m)
        mark = len(notify.messages)
        client = threading.Thread(target=ask)
        client.start()
        i, _, running = notify.wait_for(lambda m: "WATCHDOG=trigger" in m, after=mark, timeout=60)
        assert "an inference has run for" in fields(running)["STATUS"]  # the slow inference is running now
        daemon.proc.send_signal(signal.SIGTERM)
        _, stopping_at, _ = notify.wait_for(lambda m: "STOPPING=1" in m, after=i, timeout=5)
        client.join(60)
        assert daemon.proc.wait(20) in (0, -signal.SIGTERM)
    finally:
        log = daemon.stop()
    assert answers, log[-3000:]
    answered_at, answer = answers[0]
    assert answer.status_code == 200 and answer.json()["success"] is True, answer.text
    print(f"inference {answer.json()['inferenceMs'] / 1000:.2f} s, answered {answered_at - stopping_at:.2f} s "
          f"after STOPPING=1 (drain {DRAIN_S} s)")
    # still in flight when the daemon said STOPPING, and answered from the slow model after it
    assert answered_at > stopping_at and answer.json()["inferenceMs"] > 100


def test_hung_inference_stops_the_watchdog(notify: NotifySocket, data_dir: Path, cache_dir: Path, tmp_path: Path,
                                           photo_bytes: dict[str, bytes]) -> None:
    model = tmp_path / "hang.onnx"
    _looping_detector(model)
    _add_model(model, "hang", data_dir, cache_dir)
    watchdog_sec = 2.0
    daemon = DaemonProcess(data_dir, cache_dir, env={"NOTIFY_SOCKET": notify.path,
                                                    "WATCHDOG_USEC": str(int(watchdog_sec * 1e6))})
    daemon.start()
    try:
        notify.wait_for(lambda m: "READY=1" in m)
        notify.wait_for(lambda m: "WATCHDOG=1" in m)
        hung_at = time.perf_counter()

        def hang() -> None:
            try:
                httpx.post(f"{daemon.url}/v1/vision/custom/hang", timeout=60, files={"image": photo_bytes["bus"]})
            except httpx.HTTPError:
                pass  # the daemon is killed while this request hangs

        threading.Thread(target=hang, daemon=True).start()
        i, trigger_at, msg = notify.wait_for(lambda m: "WATCHDOG=trigger" in m, timeout=15)
        assert "an inference has run for" in fields(msg)["STATUS"]
        # systemd acts on the trigger at once; without it, the pings stop and WatchdogSec runs out
        print(f"watchdog trigger {trigger_at - hung_at:.2f} s after the inference hung (WatchdogSec {watchdog_sec} s)")
        assert trigger_at - hung_at <= 2 * watchdog_sec
        time.sleep(1.5)
        assert not any("WATCHDOG=1" in m for _, m in notify.messages[i + 1:])
        # the other worker still serves, so a person looking can see why
        r = httpx.post(f"{daemon.url}/v1/vision/detection", files={"image": photo_bytes["bus"]}, timeout=30)
        assert r.status_code == 200
    finally:
        daemon.proc.kill()  # what systemd does to a hung service after WatchdogSignal= and TimeoutAbortSec=
        log = daemon.stop()
    assert "watchdog: an inference has run for" in log
