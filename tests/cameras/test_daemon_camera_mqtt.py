"""End to end: `edgewatch serve` watching a camera on a real RTSP stream, publishing to a real
mosquitto — a person entering the scene becomes a Home Assistant-visible event."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import httpx
import pytest
import yaml

from edgewatch.daemon.testing.camera_support import RtspServer, free_port
from edgewatch.daemon.testing.daemon_process import DaemonProcess

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "mqtt"))
from mqtt_harness import Broker, Client  # noqa: E402  (the MQTT tests' own broker harness)


@pytest.fixture()
def scene_server(gstreamer_rtsp: None, tmp_path: Path, photos) -> RtspServer:
    """2 s of an empty table scene, then 2 s of a street with people, looping (1280x720, 5 fps)."""
    folder = tmp_path / "scene"
    folder.mkdir()
    images = [cv2.imread(str(photos["coffee"]))] * 10 + [cv2.imread(str(photos["bus"]))] * 10
    for i, img in enumerate(images):
        cv2.imwrite(str(folder / f"img{i:03d}.jpg"), cv2.resize(img, (1280, 720)))
    server = RtspServer(folder, free_port(), tmp_path / "rtsp.log")
    server.start()
    yield server
    server.stop()


def test_person_entering_an_rtsp_camera_reaches_home_assistant(scene_server, tmp_path: Path, data_dir: Path,
                                                               cache_dir: Path) -> None:
    broker = Broker(tmp_path)
    broker.start()
    config = tmp_path / "edgewatch.yaml"
    config.write_text(yaml.safe_dump({"cameras": [{
        "name": "front", "url": scene_server.url, "fps": 5,
        "detect": {"filters": {"labels": ["person", "bus"]}, "end_after_s": 1.0}}]}))
    watcher = Client(broker.port, "ha")
    daemon = DaemonProcess(data_dir, cache_dir, env={"EDGEWATCH_MQTT_HOST": "127.0.0.1",
                                                    "EDGEWATCH_MQTT_PORT": str(broker.port),
                                                    "EDGEWATCH_NODE_ID": "e2e", "EDGEWATCH_CONFIG": str(config)})
    try:
        watcher.subscribe("homeassistant/binary_sensor/e2e/+/config")
        watcher.subscribe("edgewatch/e2e/front/#")
        daemon.start()
        disc = watcher.wait_for(lambda m: m.topic == "homeassistant/binary_sensor/e2e/front_person_occupancy/config")
        assert json.loads(disc.payload)["state_topic"] == "edgewatch/e2e/front/person/count"
        event = watcher.wait_for(lambda m: m.topic == "edgewatch/e2e/front/events"
                                 and json.loads(m.payload)["type"] == "new" and json.loads(m.payload)["label"] == "person",
                                 timeout=40)
        body = json.loads(event.payload)
        assert body["camera"] == "front" and body["score"] >= 0.5 and len(body["box"]) == 4
        watcher.wait_for(lambda m: m.topic == "edgewatch/e2e/front/person/count" and int(m.payload) >= 1)
        watcher.wait_for(lambda m: m.topic == "edgewatch/e2e/front/person/snapshot" and m.payload[:2] == b"\xff\xd8")
        ended = watcher.wait_for(lambda m: m.topic == "edgewatch/e2e/front/events"
                                 and json.loads(m.payload)["type"] == "end", timeout=30)
        assert json.loads(ended.payload)["end_time"] is not None
    finally:
        daemon.stop()
        watcher.close()
        broker.stop()


def _threads(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


def test_camera_outage_is_visible_and_recovers(scene_server, tmp_path: Path, data_dir: Path, cache_dir: Path) -> None:
    """The RTSP server goes away and comes back: the camera's state says so on MQTT and in the API
    within seconds, the reader reconnects by itself, and no threads pile up in the daemon."""
    broker = Broker(tmp_path)
    broker.start()
    config = tmp_path / "edgewatch.yaml"
    config.write_text(yaml.safe_dump({"cameras": [{"name": "yard", "url": scene_server.url, "fps": 5,
                                                   "read_timeout_s": 2, "open_timeout_s": 3}]}))
    watcher = Client(broker.port, "ha")
    daemon = DaemonProcess(data_dir, cache_dir, env={"EDGEWATCH_MQTT_HOST": "127.0.0.1",
                                                    "EDGEWATCH_MQTT_PORT": str(broker.port),
                                                    "EDGEWATCH_NODE_ID": "out", "EDGEWATCH_CONFIG": str(config)})

    def state(m) -> dict:
        return json.loads(m.payload) if m.topic == "edgewatch/out/yard/state" else {}

    try:
        watcher.subscribe("edgewatch/out/yard/state")
        daemon.start()
        watcher.wait_for(lambda m: state(m).get("connected") is True, timeout=30)
        threads_before = _threads(daemon.proc.pid)

        scene_server.stop()
        down = watcher.wait_for(lambda m: state(m).get("connected") is False, timeout=15)
        assert state(down)["last_error"], "a disconnected camera says why"
        api = httpx.get(f"{daemon.url}/v1/cameras", timeout=10).json()
        yard = next(c for c in api["cameras"] if c["name"] == "yard")
        assert yard["connected"] is False and yard["last_error"]

        scene_server.start()
        up = watcher.wait_for(lambda m: state(m).get("connected") is True, timeout=45)
        assert state(up)["reconnects"] >= 1
        api = httpx.get(f"{daemon.url}/v1/cameras", timeout=10).json()
        assert next(c for c in api["cameras"] if c["name"] == "yard")["connected"] is True
        assert _threads(daemon.proc.pid) <= threads_before + 1, "a reconnect must not leave threads behind"
        log = daemon.stop()
        assert "camera yard: disconnected" in log and "camera yard: connected" in log
    finally:
        daemon.stop()
        watcher.close()
        broker.stop()
