"""`systemctl reload edgewatch` (SIGHUP) on a real process: cameras and the broker connection
change without a restart; settings that need one are named in the log."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import httpx
import yaml

from daemon_process import DaemonProcess
from media import write_video
from mqtt_harness import Client


def _until(fn, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def test_sighup_adds_a_camera_and_a_broker_then_removes_the_camera(broker, data_dir: Path, cache_dir: Path,
                                                                  tmp_path: Path, photos) -> None:
    clip = write_video(tmp_path / "porch.avi", photos, ("coffee", "bus"), (640, 360), 10)
    config = tmp_path / "config.yaml"
    config.write_text("node_id: reloaded\n")
    daemon = DaemonProcess(data_dir, cache_dir, env={"EDGEWATCH_CONFIG": str(config)})
    daemon.start()
    ha = Client(broker.port, "ha")
    try:
        assert httpx.get(f"{daemon.url}/v1/status/mqtt", timeout=5).json()["mqtt"]["enabled"] is False
        ha.subscribe("homeassistant/binary_sensor/reloaded/+/config")
        config.write_text(yaml.safe_dump({
            "node_id": "reloaded", "mqtt": {"host": "127.0.0.1", "port": broker.port},
            "cameras": [{"name": "porch", "url": str(clip), "fps": 5}], "server": {"port": 1}}))
        daemon.proc.send_signal(signal.SIGHUP)

        mqtt = _until(lambda: (m := httpx.get(f"{daemon.url}/v1/status/mqtt", timeout=5).json()["mqtt"])
                      .get("connected") and m)
        assert mqtt["host"] == "127.0.0.1"
        cams = _until(lambda: httpx.get(f"{daemon.url}/v1/cameras", timeout=5).json()["cameras"])
        assert cams[0]["name"] == "porch"
        disc = ha.wait_for(lambda m: m.topic == "homeassistant/binary_sensor/reloaded/porch_person_occupancy/config")
        assert json.loads(disc.payload)["state_topic"] == "edgewatch/reloaded/porch/person/count"

        config.write_text(yaml.safe_dump({"node_id": "reloaded", "mqtt": {"host": "127.0.0.1", "port": broker.port}}))
        daemon.proc.send_signal(signal.SIGHUP)
        _until(lambda: httpx.get(f"{daemon.url}/v1/cameras", timeout=5).json()["cameras"] == [])
        # an empty retained config is how Home Assistant is told to delete the entity
        ha.wait_for(lambda m: m.topic == "homeassistant/binary_sensor/reloaded/porch_person_occupancy/config"
                    and m.payload == b"")
        assert httpx.get(f"{daemon.url}/v1/status/ping", timeout=5).status_code == 200  # still on its port
    finally:
        log = daemon.stop()
        ha.close()
    assert "server changed; restart the service to apply" in log
    assert "reload: cameras restarted, added or removed: porch" in log
