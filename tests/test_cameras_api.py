"""/v1/cameras with a real network camera (MJPEG over HTTP on loopback) and a real video file from the config:
add at run time, state, persistence, removal."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from pathlib import Path

import pytest
from litestar.testing import TestClient

import cv2
from media import write_video

from edgewatch.daemon.app import create_app
from edgewatch.daemon.config import load_settings
from edgewatch.daemon.testing.camera_support import HttpCamera


@pytest.fixture()
def video(tmp_path: Path, photos) -> Path:
    """A real MJPG video of a street scene and a portrait, 2 s at 5 fps."""
    return write_video(tmp_path / "scene.avi", photos, ("bus", "astronaut"), (640, 480), 5)


@pytest.fixture()
def stream(photos) -> str:
    """A network camera on loopback: MJPEG over HTTP of the same two photos at 5 fps (cameras added through
    the API must be network cameras)."""
    frames = [cv2.imencode(".jpg", cv2.resize(cv2.imread(str(photos[n])), (640, 480)))[1].tobytes()
              for n in ("bus", "astronaut")]
    camera = HttpCamera(frames, mjpeg_fps=5)
    yield f"{camera.base}/stream.mjpg"
    camera.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def client_for(data_dir: Path, cache_dir: Path) -> TestClient:
    return TestClient(create_app(load_settings(data_dir=data_dir, cache_dir=cache_dir)))


def wait_state(client: TestClient, name: str, check, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cams = {c["name"]: c for c in client.get("/v1/cameras").json()["cameras"]}
        if name in cams and check(cams[name]):
            return cams[name]
        time.sleep(0.2)
    raise AssertionError(f"camera {name} never reached the expected state: {cams.get(name)}")


def test_add_list_persist_remove(data_dir: Path, cache_dir: Path, stream: str) -> None:
    body = {"name": "yard", "url": stream, "fps": 5,
            "detect": {"filters": {"labels": ["person", "bus"], "min_confidence": 0.4}}}
    with client_for(data_dir, cache_dir) as client:
        assert client.get("/v1/cameras").json() == {"success": True, "cameras": []}
        r = client.post("/v1/cameras", json=body)
        assert r.status_code == 201 and r.json()["camera"]["name"] == "yard"
        state = wait_state(client, "yard", lambda c: c["connected"] and c["detections"] > 0)
        assert state["width"] == 640 and state["fps_out"] <= 6 and state["last_error"] is None
        assert client.post("/v1/cameras", json=body).status_code == 409
    with client_for(data_dir, cache_dir) as client:  # a restart keeps the camera
        wait_state(client, "yard", lambda c: c["connected"])
        assert client.delete("/v1/cameras/yard").json() == {"success": True, "removed": "yard"}
        assert client.get("/v1/cameras").json()["cameras"] == []
        assert client.delete("/v1/cameras/yard").status_code == 404
    with client_for(data_dir, cache_dir) as client:  # and the removal
        assert client.get("/v1/cameras").json()["cameras"] == []


@pytest.mark.parametrize("body, words", [
    (b"not json", "JSON object"),
    (b'{"name": "Bad Name", "url": "rtsp://x/y"}', "name"),
    (b'{"name": "cam", "url": "gopher://x"}', "unsupported url scheme"),
    (b'{"name": "cam", "url": "rtsp://x/y", "fps": 99}', "fps"),
    (b'{"name": "cam", "url": "rtsp://x/y", "detect": {"filters": {"zones": [{"name": "z", "points": [[0,0],[2,0],[0,1]]}]}}}', "fractions"),
])
def test_bad_camera_bodies_are_400(data_dir: Path, cache_dir: Path, body: bytes, words: str) -> None:
    with client_for(data_dir, cache_dir) as client:
        r = client.post("/v1/cameras", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["success"] is False and words in r.json()["error"]


def test_unreachable_camera_reports_its_error_and_the_daemon_serves(data_dir: Path, cache_dir: Path, photo_bytes) -> None:
    with client_for(data_dir, cache_dir) as client:
        client.post("/v1/cameras", json={"name": "gone", "url": "rtsp://127.0.0.1:9/none", "open_timeout_s": 1})
        state = wait_state(client, "gone", lambda c: c["last_error"])
        assert not state["connected"]
        assert client.post("/v1/vision/detection", files={"image": photo_bytes["bus"]}).json()["success"]


def _saved(data_dir: Path) -> dict:
    path = data_dir / "cameras.json"
    return json.loads(path.read_text()) if path.exists() else {"added": [], "removed": []}


def test_bad_port_with_a_password_is_400_and_nothing_is_saved(data_dir: Path, cache_dir: Path) -> None:
    with client_for(data_dir, cache_dir) as client:
        r = client.post("/v1/cameras", json={"name": "badport", "url": "http://u:hunter22@127.0.0.1:99999/x"})
        assert r.status_code == 400 and "url: the url's port must be a number from 1 to 65535" in r.json()["error"]
        assert "hunter22" not in r.text
        assert _saved(data_dir)["added"] == []
        listed = client.get("/v1/cameras")
        assert listed.status_code == 200 and listed.json()["cameras"] == []


def test_an_invalid_saved_camera_is_listed_not_started_and_removable(data_dir: Path, cache_dir: Path,
                                                                      stream: str) -> None:
    """cameras.json as an older daemon left it: a bad port (with a password) and junk next to a
    good camera. The daemon starts, runs the good one, lists the bad ones with the reason and
    removes them on DELETE."""
    (data_dir / "cameras.json").write_text(json.dumps({"added": [
        {"name": "badport", "url": "http://u:hunter22@127.0.0.1:99999/x"},
        "junk",
        {"name": "yard", "url": stream}], "removed": []}))
    with client_for(data_dir, cache_dir) as client:
        wait_state(client, "yard", lambda c: c["connected"])
        listed = client.get("/v1/cameras")
        assert listed.status_code == 200 and "hunter22" not in listed.text
        cams = {c["name"]: c for c in listed.json()["cameras"]}
        bad = cams["badport"]
        assert bad["enabled"] is False and bad["running"] is False and bad["invalid"] is True
        assert bad["url"] == "http://u:***@127.0.0.1:99999/x"
        assert "port must be a number" in bad["last_error"] and "DELETE /v1/cameras/badport" in bad["last_error"]
        junk = next(c for name, c in cams.items() if name.startswith("invalid-"))
        assert f"DELETE /v1/cameras/{junk['name']}" in junk["last_error"]
        assert client.post("/v1/cameras", json={"name": "badport", "url": stream}).status_code == 409
        assert client.delete("/v1/cameras/badport").json() == {"success": True, "removed": "badport"}
        assert client.delete(f"/v1/cameras/{junk['name']}").status_code == 200
        assert [c["name"] for c in client.get("/v1/cameras").json()["cameras"]] == ["yard"]
    assert [e["name"] for e in _saved(data_dir)["added"]] == ["yard"]
    with client_for(data_dir, cache_dir) as client:  # and the next start is clean
        assert [c["name"] for c in client.get("/v1/cameras").json()["cameras"]] == ["yard"]


@pytest.mark.parametrize("url", ["file:{video}", "{video}", "/dev/video0", "file:///etc/passwd"])
def test_the_api_adds_network_cameras_only(data_dir: Path, cache_dir: Path, video: Path, url: str) -> None:
    """Local files and devices come from the config file alone: an API caller cannot make the daemon read
    the box's files or open its devices; nor can an entry an older version saved in cameras.json."""
    url = url.format(video=video)
    with client_for(data_dir, cache_dir) as client:
        r = client.post("/v1/cameras", json={"name": "local", "url": url})
        assert r.status_code == 400 and "network cameras" in r.json()["error"] and "config file" in r.json()["error"]
        assert client.get("/v1/cameras").json()["cameras"] == [] and _saved(data_dir)["added"] == []
    (data_dir / "cameras.json").write_text(json.dumps({"added": [{"name": "old", "url": url}], "removed": []}))
    with client_for(data_dir, cache_dir) as client:
        old = client.get("/v1/cameras").json()["cameras"]
        assert [(c["name"], c["running"], c["invalid"]) for c in old] == [("old", False, True)]
        assert "only be configured in the config file" in old[0]["last_error"]
        assert not any(t.name == "camera-old" for t in threading.enumerate())


def test_adding_beyond_max_cameras_is_refused(data_dir: Path, cache_dir: Path, stream: str) -> None:
    config = load_settings(data_dir=data_dir, cache_dir=cache_dir, max_cameras=2)
    with TestClient(create_app(config)) as client:
        for name in ("one", "two"):
            assert client.post("/v1/cameras", json={"name": name, "url": stream}).status_code == 201
        r = client.post("/v1/cameras", json={"name": "three", "url": stream})
        assert r.status_code == 409
        assert "max_cameras (2)" in r.json()["error"] and "raise max_cameras in the config file" in r.json()["error"]
        assert client.delete("/v1/cameras/one").status_code == 200
        assert client.post("/v1/cameras", json={"name": "three", "url": stream}).status_code == 201
    assert sorted(e["name"] for e in _saved(data_dir)["added"]) == ["three", "two"]


def test_unknown_detect_model_is_400_naming_the_installed_ones(data_dir: Path, cache_dir: Path, stream: str) -> None:
    with client_for(data_dir, cache_dir) as client:
        r = client.post("/v1/cameras", json={"name": "odd", "url": stream, "detect": {"model": "nosuchmodel"}})
        assert r.status_code == 400
        assert "'nosuchmodel' is not installed" in r.json()["error"]
        assert "centernet" in r.json()["error"] and "nanodet" in r.json()["error"]
        assert _saved(data_dir)["added"] == []
        preset = {"name": "preset", "url": stream, "detect": {"model": "ipcam-general"}}
        assert client.post("/v1/cameras", json=preset).status_code == 201


def test_configured_camera_with_an_unknown_model_says_so_and_can_be_removed(data_dir: Path, cache_dir: Path,
                                                                            video: Path) -> None:
    config = load_settings(data_dir=data_dir, cache_dir=cache_dir, cameras=[
        {"name": "odd", "url": f"file:{video}", "detect": {"model": "nosuchmodel"}}])
    with TestClient(create_app(config)) as client:
        first = wait_state(client, "odd", lambda c: c["connected"] and c["frames_seen"] > 0)
        assert "'nosuchmodel' is not installed" in first["detect_error"] and first["last_error"] == first["detect_error"]
        later = wait_state(client, "odd", lambda c: c["frames_seen"] > first["frames_seen"] + 3)
        assert later["detect_error"] and later["detections"] == 0  # the worker lives on and says why
        log = client.get("/v1/log/list", params={"count": 1000}).json()["entries"]
        assert any("camera odd: detect.model 'nosuchmodel' is not installed" in e["entry"] for e in log)
        assert client.delete("/v1/cameras/odd").json() == {"success": True, "removed": "odd"}
        assert not any(t.name == "camera-odd" for t in threading.enumerate()), "the reader was stopped"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", None])
def test_add_camera_needs_a_json_content_type(data_dir: Path, cache_dir: Path, stream: str,
                                              content_type: str | None) -> None:
    body = json.dumps({"name": "yard", "url": stream})
    with client_for(data_dir, cache_dir) as client:
        headers = {"content-type": content_type} if content_type else {}
        r = client.post("/v1/cameras", content=body, headers=headers)
        assert r.status_code == 415 and "Content-Type: application/json" in r.json()["error"]
        assert client.get("/v1/cameras").json()["cameras"] == [] and _saved(data_dir)["added"] == []
        r = client.post("/v1/cameras", content=body, headers={"content-type": "application/json; charset=utf-8"})
        assert r.status_code == 201


class RawLines(logging.Handler):
    """Log lines as the code wrote them, before any handler's redaction."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture()
def raw_log() -> RawLines:
    handler = RawLines()
    loggers = [logging.getLogger(n) for n in ("edgewatch.daemon", "edgewatch.api")]  # below the log buffer's logger
    for logger in loggers:
        logger.addHandler(handler)
    yield handler
    for logger in loggers:
        logger.removeHandler(handler)


def test_camera_password_never_shows(data_dir: Path, cache_dir: Path, raw_log: RawLines) -> None:
    with client_for(data_dir, cache_dir) as client:
        url = f"rtsp://admin:s3cret@127.0.0.1:{free_port()}/stream"
        added = client.post("/v1/cameras", json={"name": "backyard", "url": url, "open_timeout_s": 1})
        assert added.status_code == 201 and added.json()["camera"]["url"] == url.replace("s3cret", "***")
        wait_state(client, "backyard", lambda c: c["last_error"])
        bad = client.post("/v1/cameras", json={"name": "porch", "url": "rtsp://admin:s3cret@127.0.0.1:99999/x"})
        assert bad.status_code == 400
        listed = client.get("/v1/cameras")
        log = client.get("/v1/log/list", params={"count": 1000})
        for text in (added.text, bad.text, listed.text, log.text):
            assert "s3cret" not in text
        assert "camera backyard: started (rtsp://admin:***@" in log.text  # the camera's lines are there, redacted
    lines = "\n".join(raw_log.lines)
    assert "camera backyard: started" in lines and "s3cret" not in lines, "not even before the buffer's redaction"
