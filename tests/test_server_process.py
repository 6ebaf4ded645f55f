"""`edgewatch serve` as a real process: start, answer, survive bad input, stop cleanly."""

from __future__ import annotations

import concurrent.futures
import signal

import httpx

from edgewatch.daemon.testing.daemon_process import DaemonProcess


def test_real_process_end_to_end(daemon: DaemonProcess, photo_bytes: dict[str, bytes]) -> None:
    r = httpx.post(daemon.url + "/v1/vision/detection", files={"image": ("bus.jpg", photo_bytes["bus"])}, timeout=30)
    assert r.status_code == 200
    assert "content-length" in r.headers and "chunked" not in r.headers.get("transfer-encoding", "")
    labels = {p["label"] for p in r.json()["predictions"]}
    assert {"bus", "person"} <= labels
    bad = httpx.post(daemon.url + "/v1/vision/detection", files={"image": ("x.jpg", b"\xff\xd8\xff\xe0garbage")}, timeout=30)
    assert bad.status_code == 400 and bad.json()["success"] is False
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: httpx.post(daemon.url + "/v1/vision/detection",
                                                   files={"image": photo_bytes["chelsea"]}, timeout=60).status_code,
                              range(16)))
    assert codes == [200] * 16
    assert httpx.get(daemon.url + "/v1/status/ping", timeout=5).json()["success"] is True
    daemon.proc.send_signal(signal.SIGTERM)
    # uvicorn re-raises the SIGTERM after a graceful shutdown; systemd counts that as a clean stop
    assert daemon.proc.wait(15) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in daemon.stop()


def test_starts_without_models_and_says_what_to_do(tmp_path, cache_dir) -> None:
    proc = DaemonProcess(tmp_path / "empty", cache_dir)
    proc.start()
    try:
        r = httpx.post(proc.url + "/v1/vision/detection", files={"image": b"\x89PNG"}, timeout=10)
        assert r.status_code == 503 and "edgewatch models install --default" in r.json()["error"]
        assert httpx.post(proc.url + "/v1/vision/custom/list", timeout=5).json()["models"] == []
    finally:
        out = proc.stop()
    assert "no detection model is installed" in out
