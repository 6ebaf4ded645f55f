"""`edgewatch status` against a real daemon, and journald records with structured fields."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edgewatch.daemon.testing.daemon_process import DaemonProcess, free_port

JOURNAL_SOCKET = Path("/run/systemd/journal/socket")


def status(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgewatch.daemon.cli", "status", *args], capture_output=True,
                          text=True, timeout=30)


def test_status_of_a_running_daemon(daemon: DaemonProcess) -> None:
    out = status("--url", daemon.url)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert f"running at {daemon.url}" in text and "accelerator in use: onnxruntime (CPU)" in text
    assert "models: " in text and "nanodet" in text and f"{daemon.url}/schema/swagger" in text
    assert "MQTT is off: set mqtt.host" in text, "it says what to do about what is missing"
    assert re.search(r"disk: [\d.]+ [GM]B free of [\d.]+ [GM]B \(data dir\)", text), text
    report = json.loads(status("--url", daemon.url, "--json").stdout)
    assert report["running"] is True and report["inference"]["active"] == "onnxruntime"
    assert 0 < report["storage"]["freeBytes"] <= report["storage"]["totalBytes"]


def test_status_when_the_daemon_is_not_running() -> None:
    out = status("--url", f"http://127.0.0.1:{free_port()}")
    assert out.returncode == 3
    assert "not running" in out.stdout and "systemctl start edgewatch" in out.stdout and "journalctl" in out.stdout


@pytest.fixture()
def journald(tmp_path: Path):
    """Stand in for journald's native socket (this machine runs no journald) and collect what arrives."""
    pytest.importorskip("systemd.journal", reason="systemd-python is needed: pip install -e '.[test]'")
    if JOURNAL_SOCKET.exists() or not os.access(JOURNAL_SOCKET.parent.parent, os.W_OK):
        pytest.skip("a real journald runs here (or /run/systemd is not writable): nothing to stand in for")
    JOURNAL_SOCKET.parent.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(JOURNAL_SOCKET))
    sock.settimeout(0.2)
    records: list[dict[str, str]] = []
    stop = threading.Event()

    def receive() -> None:
        while not stop.is_set():
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            records.append(dict(line.split("=", 1) for line in data.decode(errors="replace").splitlines()
                                if "=" in line))

    thread = threading.Thread(target=receive, daemon=True)
    thread.start()
    yield records
    stop.set()
    thread.join(2)
    sock.close()
    JOURNAL_SOCKET.unlink()


def test_journald_records_carry_camera_model_and_request_id(journald: list, data_dir: Path, cache_dir: Path,
                                                              tmp_path: Path) -> None:
    import httpx

    # systemd's stdout/stderr → journal link; the daemon recognises it by JOURNAL_STREAM=dev:inode of its stderr
    stderr_file = tmp_path / "stderr"
    stderr_file.touch()
    st = stderr_file.stat()
    config = tmp_path / "config.yaml"
    config.write_text(f"cameras:\n  - name: porch\n    url: rtsp://127.0.0.1:{free_port()}/none\n")
    daemon = DaemonProcess(data_dir, cache_dir, env={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}",
                                                    "EDGEWATCH_CONFIG": str(config),
                                                    "EDGEWATCH_DETECTION_MODEL": "nanodet"})
    with stderr_file.open("wb") as err:
        daemon.stderr = err
        daemon.start()
        try:
            r = httpx.post(f"{daemon.url}/v1/vision/detection", files={"image": ("x.jpg", b"not an image")},
                           headers={"X-Request-ID": "nvr-42"}, timeout=10)
            assert r.headers["x-request-id"] == "nvr-42"
            assert httpx.get(f"{daemon.url}/v1/status/ping", timeout=5).headers["x-request-id"]
            deadline = time.monotonic() + 15
            while not any(rec.get("CAMERA") == "porch" and rec.get("PRIORITY") == "4" for rec in journald):
                assert time.monotonic() < deadline, journald[-5:]
                time.sleep(0.1)
        finally:
            daemon.stop()
    assert all(rec.get("SYSLOG_IDENTIFIER") == "edgewatch" for rec in journald)
    loaded = [rec for rec in journald if rec.get("MODEL") == "nanodet"]
    assert loaded and "loaded nanodet" in loaded[0]["MESSAGE"] and loaded[0]["PRIORITY"] == "6"
    porch = [rec for rec in journald if rec.get("CAMERA") == "porch"]
    assert any("camera porch" in rec["MESSAGE"] for rec in porch)
    assert any(rec.get("PRIORITY") == "4" for rec in porch), "a camera that cannot connect is a warning"
    bad = [rec for rec in journald if rec.get("REQUEST_ID") == "nvr-42"]
    assert bad and "400 on POST /v1/vision/detection" in bad[0]["MESSAGE"]
