"""Plates on a camera (issue 16, point 9): a looped video made from the real two-car plate photo,
read by the camera reader, through the real detector, tracker and plate models, to a real mosquitto.
Each car's events carry its plate as ``recognized_license_plate`` (Frigate's field), a known plate
gives its name as ``sub_label``, and Home Assistant gets a "last plate" sensor for the camera."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import cv2
import pytest

from edgewatch.daemon.cameras import CameraReader
from edgewatch.daemon.config import CameraPlatesConfig, CameraSettings, load_settings
from edgewatch.daemon.inference_queue import InferenceQueue
from edgewatch.daemon.modules.alpr.camera import CameraPlates
from edgewatch.daemon.modules.alpr.module import AlprModule
from edgewatch.daemon.modules.detection import DetectionModule
from edgewatch.daemon.mqtt.link import MqttLink
from edgewatch.daemon.pipeline.camera_worker import CameraWorker
from edgewatch.daemon.pipeline.rules import DetectConfig, FilterConfig
from edgewatch.models import installer
from edgewatch.models.photos import ensure_plate_photos
from edgewatch.models.store import ModelStore

pytestmark = pytest.mark.slow

SIZE = (1280, 720)
FPS = 5
SCRIPT = ((1.0, False), (5.0, True), (4.0, False))  # (seconds, the cars in view); then it loops
NODE = "plate-box"
EVENTS = f"edgewatch/{NODE}/drive/events"
# one character off what the camera reads (MLB803): a known plate still matches at match_distance 1
KNOWN = {"Alice's car": ["MLB 8O3"]}


@pytest.fixture()
def clip(tmp_path: Path, photos: dict[str, Path], cache_dir: Path) -> Path:
    cars = cv2.imread(str(ensure_plate_photos(cache_dir)["two_cars"]))
    scale = min(SIZE[0] / cars.shape[1], SIZE[1] / cars.shape[0])
    cars = cv2.resize(cars, (round(cars.shape[1] * scale), round(cars.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    empty = cv2.resize(cv2.imread(str(photos["coffee"])), SIZE)
    full = empty.copy()
    x = (SIZE[0] - cars.shape[1]) // 2
    full[:cars.shape[0], x:x + cars.shape[1]] = cars
    path = tmp_path / "drive.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, SIZE)
    for seconds, in_view in SCRIPT:
        for _ in range(round(seconds * FPS)):
            writer.write(full if in_view else empty)
    writer.release()
    return path


def _cars_left(history) -> bool:
    events = [json.loads(m.payload) for m in history if m.topic == EVENTS]
    return sum(e["type"] == "end" and e["label"] == "car" for e in events) >= 2


def test_vehicles_carry_their_plate_and_home_assistant_gets_the_last_one(
        broker, client, tmp_path: Path, cache_dir: Path, clip: Path) -> None:
    data_dir = tmp_path / "data"
    store = ModelStore(data_dir / "models")
    for name in ("nanodet", "plate-detector", "ppocr-rec"):
        installer.install(name, store, cache_dir)
    client.subscribe(f"edgewatch/{NODE}/#")
    client.subscribe(f"homeassistant/+/{NODE}/+/config")
    config = load_settings(data_dir=data_dir, cache_dir=cache_dir, node_id=NODE,
                           mqtt={"host": "127.0.0.1", "port": broker.port}, alpr={"known_plates": KNOWN})
    camera = CameraSettings(name="drive", url=str(clip), fps=FPS, plates=CameraPlatesConfig(enabled=True))

    async def scenario() -> CameraPlates:
        detection, alpr = DetectionModule(config, store, {}), AlprModule(config, store, {})
        await asyncio.to_thread(detection.start)
        await asyncio.to_thread(alpr.start)
        queue = InferenceQueue(1, 8)
        link = MqttLink(config, {m.module_id: m for m in (detection, alpr)}, queue, asyncio.get_running_loop())
        link.add_camera("drive", ["car"], reads_plates=True)
        link.start()
        await asyncio.to_thread(client.wait_seen, lambda m: m.topic == f"edgewatch/{NODE}/availability"
                                and m.payload == b"online")
        reader = CameraReader(camera).start()
        stage = CameraPlates("drive", camera.plates, alpr, queue)
        worker = CameraWorker("drive", reader, DetectConfig(filters=FilterConfig(labels=["car"]), end_after_s=1.5),
                              detection, queue, link, plates=stage)
        task = asyncio.create_task(worker.run())
        try:
            await asyncio.to_thread(client.wait_history, _cars_left, 60)
        finally:
            worker.stop()
            await task
            await asyncio.to_thread(reader.stop)
            await asyncio.to_thread(link.stop)
        queue.close()
        detection.close()
        alpr.close()
        return stage

    stage = asyncio.run(scenario())
    messages = list(client.history)
    events = [json.loads(m.payload) for m in messages if m.topic == EVENTS]
    plates = {e["id"]: e["recognized_license_plate"] for e in events if e["recognized_license_plate"]}
    # the two cars of the first pass, each with its own plate; the known one under its name
    first_pass = sorted({(plates[e["id"]], e["sub_label"]) for e in events
                         if e["type"] == "end" and e["id"] in plates})
    assert first_pass[:2] == [("MLB803", "Alice's car"), ("NO23456", None)], events
    update = next(e for e in events if e["type"] == "update" and e["recognized_license_plate"] == "NO23456")
    assert update["after"]["recognized_license_plate"][0] == "NO23456"
    assert update["recognized_license_plate_score"] >= 0.7 and update["before"]["recognized_license_plate"] is None
    assert stage.read >= 2 and stage.error is None

    # Home Assistant: the camera's "last plate" sensor, and its state: a plate read, with its name when known
    config_topic = f"homeassistant/sensor/{NODE}/drive_last_plate/config"
    (sensor,) = [json.loads(m.payload) for m in messages if m.topic == config_topic and m.payload]
    last = [json.loads(m.payload) for m in messages if m.topic == sensor["state_topic"]]
    assert {p["plate"] for p in last} == {"MLB803", "NO23456"}, last
    assert all((p["name"] == "Alice's car") == (p["plate"] == "MLB803") and p["label"] == "car" for p in last)
    assert sensor["value_template"] == "{{ value_json.plate }}"


def test_known_plates_match_within_the_allowed_distance(tmp_path: Path, cache_dir: Path) -> None:
    config = load_settings(data_dir=tmp_path, cache_dir=cache_dir,
                           alpr={"known_plates": {"Alice": ["AB12 CDE"], "Bob": ["XY9"]}, "match_distance": 1})
    module = AlprModule(config, ModelStore(tmp_path / "models"), {})
    assert module.known_plate("AB12CDE") == ("Alice", "AB12CDE")
    assert module.known_plate("AB12CD8") == ("Alice", "AB12CDE")   # one misread character
    assert module.known_plate("A812CD8") is None                    # two
    assert module.known_plate("XY9") == ("Bob", "XY9")
    assert module.known_plate("XY8") is None                        # short plates match exactly only
    module.settings = module.settings.model_copy(update={"match_distance": 0})
    assert module.known_plate("AB12CD8") is None
