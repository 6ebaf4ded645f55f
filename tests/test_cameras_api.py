"""/v1/cameras with a real looping video file: add at run time, state, persistence, removal."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from litestar.testing import TestClient

from media import write_video

from edgewatch.daemon.app import create_app
from edgewatch.daemon.config import load_settings


@pytest.fixture()
def video(tmp_path: Path, photos) -> Path:
    """A real MJPG video of a street scene and a portrait, 2 s at 5 fps."""
    return write_video(tmp_path / "scene.avi", photos, ("bus", "astronaut"), (640, 480), 5)


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


def test_add_list_persist_remove(data_dir: Path, cache_dir: Path, video: Path) -> None:
    body = {"name": "yard", "url": f"file:{video}", "fps": 5,
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
