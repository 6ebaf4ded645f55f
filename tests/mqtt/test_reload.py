"""`systemctl reload edgewatch` (SIGHUP) on a real process: cameras and the broker connection
change without a restart; settings that need one are named in the log."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx
import yaml

from media import write_video
from mqtt_harness import Client, until

from edgewatch.daemon.testing.daemon_process import DaemonProcess


def _cameras(daemon: DaemonProcess) -> list[dict]:
    return httpx.get(f"{daemon.url}/v1/cameras", timeout=5).json()["cameras"]


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

        ha.wait_online("edgewatch/reloaded")  # the reload connected the new broker link
        mqtt = httpx.get(f"{daemon.url}/v1/status/mqtt", timeout=5).json()["mqtt"]
        assert mqtt["connected"] is True and mqtt["host"] == "127.0.0.1"
        # the camera list has no MQTT signal of its own: poll the API for it
        cams = until(lambda: _cameras(daemon), what="the reloaded camera in /v1/cameras")
        assert cams[0]["name"] == "porch"
        disc = ha.wait_seen(lambda m: m.topic == "homeassistant/binary_sensor/reloaded/porch_person_occupancy/config")
        assert json.loads(disc.payload)["state_topic"] == "edgewatch/reloaded/porch/person/count"

        config.write_text(yaml.safe_dump({"node_id": "reloaded", "mqtt": {"host": "127.0.0.1", "port": broker.port}}))
        daemon.proc.send_signal(signal.SIGHUP)
        until(lambda: _cameras(daemon) == [], what="the camera gone from /v1/cameras")
        # an empty retained config is how Home Assistant is told to delete the entity
        ha.wait_seen(lambda m: m.topic == "homeassistant/binary_sensor/reloaded/porch_person_occupancy/config"
                     and m.payload == b"")
        assert httpx.get(f"{daemon.url}/v1/status/ping", timeout=5).status_code == 200  # still on its port
    finally:
        log = daemon.stop()
        ha.close()
    assert "server changed; restart the service to apply" in log
    assert "reload: cameras restarted, added or removed: porch" in log
