"""Face recognition on a camera (issue 15, point 5): a looped video file made from real photos, read
by the camera reader, through the real detector, tracker and face models, to a real mosquitto. A
registered person's events carry their name as ``sub_label``, Home Assistant gets their presence and
last-seen entities, and an unknown person's face is saved (opt-in) where it can be registered from."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgewatch.daemon.cameras import CameraReader
from edgewatch.daemon.config import CameraFacesConfig, CameraSettings, load_settings
from edgewatch.daemon.inference_queue import InferenceQueue
from edgewatch.daemon.modules.detection import DetectionModule
from edgewatch.daemon.modules.faces import usecase
from edgewatch.daemon.modules.faces.camera import CameraFaces
from edgewatch.daemon.modules.faces.module import FacesModule
from edgewatch.daemon.modules.faces.unknown import save_unknown, unknown_dir
from edgewatch.daemon.mqtt.discovery import subject_slug
from edgewatch.daemon.mqtt.link import MqttLink
from edgewatch.daemon.pipeline.camera_worker import CameraWorker
from edgewatch.daemon.pipeline.rules import DetectConfig, FilterConfig
from edgewatch.models import installer
from edgewatch.models.photos import ensure_face_photos
from edgewatch.models.runtime.faces import detect_faces
from edgewatch.models.store import ModelStore

pytestmark = pytest.mark.slow

SIZE = (1280, 720)
FPS = 5
# (seconds, photo pasted over the empty scene or None): Barack (registered from another photo) comes
# and goes, then Joe (never registered); the clip loops after that
SCRIPT = ((1.0, None), (4.0, "obama2"), (4.0, None), (4.0, "biden"), (5.0, None))
NODE = "face-box"
EVENTS = f"edgewatch/{NODE}/door/events"


def _frame(empty: np.ndarray, photo: np.ndarray | None) -> np.ndarray:
    out = empty.copy()
    if photo is not None:
        h = 640
        w = round(photo.shape[1] * h / photo.shape[0])
        x = (SIZE[0] - w) // 2
        out[40:40 + h, x:x + w] = cv2.resize(photo, (w, h), interpolation=cv2.INTER_AREA)
    return out


@pytest.fixture()
def clip(tmp_path: Path, photos: dict[str, Path], cache_dir: Path) -> Path:
    faces = ensure_face_photos(cache_dir)
    empty = cv2.resize(cv2.imread(str(photos["coffee"])), SIZE)
    path = tmp_path / "door.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, SIZE)
    for seconds, name in SCRIPT:
        frame = _frame(empty, None if name is None else cv2.imread(str(faces[name])))
        for _ in range(round(seconds * FPS)):
            writer.write(frame)
    writer.release()
    return path


@pytest.fixture()
def face_data_dir(tmp_path: Path, cache_dir: Path) -> Path:
    """What a fresh box has after `edgewatch models install centerface mobilefacenet`."""
    data_dir = tmp_path / "data"
    store = ModelStore(data_dir / "models")
    for name in ("nanodet", "centerface", "mobilefacenet"):
        installer.install(name, store, cache_dir)
    return data_dir


def _both_left(history) -> bool:
    """Joe has come and gone: a person object that started 6 s or more after the first one has ended."""
    events = [json.loads(m.payload) for m in history if m.topic == EVENTS]
    starts = [e["start_time"] for e in events if e["label"] == "person"]
    return any(e["type"] == "end" and e["start_time"] >= min(starts) + 6 for e in events if e["label"] == "person")


def test_a_registered_person_is_named_on_camera_and_home_assistant_sees_them(
        broker, client, face_data_dir: Path, cache_dir: Path, clip: Path) -> None:
    faces_photos = ensure_face_photos(cache_dir)
    client.subscribe(f"edgewatch/{NODE}/#")
    client.subscribe(f"homeassistant/+/{NODE}/+/config")
    config = load_settings(data_dir=face_data_dir, cache_dir=cache_dir, node_id=NODE,
                           mqtt={"host": "127.0.0.1", "port": broker.port})
    camera = CameraSettings(name="door", url=str(clip), fps=FPS,
                            faces=CameraFacesConfig(enabled=True, save_unknown=True))

    async def scenario() -> CameraFaces:
        store = ModelStore(config.models_dir)
        detection, faces = DetectionModule(config, store, {}), FacesModule(config, store, {})
        await asyncio.to_thread(detection.start)
        await asyncio.to_thread(faces.start)
        queue = InferenceQueue(1, 8)
        registered = await usecase.register(faces, queue, "Barack", [faces_photos["obama"].read_bytes()],
                                            time.perf_counter())
        assert registered.success
        link = MqttLink(config, {m.module_id: m for m in (detection, faces)}, queue, asyncio.get_running_loop())
        link.add_camera("door", ["person"], names_people=True)
        link.start()
        await asyncio.to_thread(client.wait_seen, lambda m: m.topic == f"edgewatch/{NODE}/availability"
                                and m.payload == b"online")
        reader = CameraReader(camera).start()
        stage = CameraFaces("door", camera.faces, faces, queue)
        worker = CameraWorker("door", reader, DetectConfig(filters=FilterConfig(labels=["person"]), end_after_s=1.5),
                              detection, queue, link, faces=stage)
        task = asyncio.create_task(worker.run())
        try:
            await asyncio.to_thread(client.wait_history, _both_left, 60)
        finally:
            worker.stop()
            await task
            await asyncio.to_thread(reader.stop)
            await asyncio.sleep(0.5)  # the unknown face is written off the event loop
            await asyncio.to_thread(link.stop)
        queue.close()
        detection.close()
        faces.close()
        return stage

    stage = asyncio.run(scenario())
    client.wait_seen(lambda m: m.topic == f"edgewatch/{NODE}/availability" and m.payload == b"offline")
    messages = list(client.history)
    events = [json.loads(m.payload) for m in messages if m.topic == EVENTS]
    starts = {e["id"]: e["start_time"] for e in events if e["label"] == "person"}
    first = min(starts.values())
    # the clip: Barack in view from 1 s to 5 s, Joe from 9 s to 13 s (then it loops)
    barack = {i for i, t in starts.items() if t < first + 6}
    joe = {i for i, t in starts.items() if first + 6 <= t < first + 14}
    assert barack and joe, events
    named = {e["id"]: e["after"]["sub_label"] for e in events if e["after"]["sub_label"]}
    # Barack: recognised from a photo he was not registered with; his events say so, as Frigate's do
    assert {named[i][0] for i in barack} == {"Barack"} and min(named[i][1] for i in barack) >= 0.55, events
    assert any(e["id"] in barack and e["type"] == "end" and e["sub_label"] == "Barack" for e in events)
    # Joe was never registered: no name, ever
    assert not joe & set(named), named
    assert stage.recognised == len(barack)

    # Home Assistant: a presence binary_sensor and a last-seen sensor for the registered person
    slug = subject_slug("Barack")
    presence_config = f"homeassistant/binary_sensor/{NODE}/person_{slug}_presence/config"
    last_config = f"homeassistant/sensor/{NODE}/person_{slug}_last_seen/config"
    configs = {m.topic: json.loads(m.payload) for m in messages if m.topic in (presence_config, last_config)}
    assert configs[presence_config]["device_class"] == "presence"
    presence_topic = configs[presence_config]["state_topic"]
    states = [m.payload.decode() for m in messages if m.topic == presence_topic]
    assert states[0] == "OFF" and "ON" in states and states[-1] == "OFF"  # away, seen, gone again
    seen = [json.loads(m.payload) for m in messages if m.topic == configs[last_config]["state_topic"]]
    assert seen and seen[-1]["camera"] == "door" and seen[-1]["object_id"] in barack

    # Joe's best face was saved, and it can be registered from: it holds a face the detector finds
    saved = sorted(unknown_dir(face_data_dir).glob("*.jpg"))
    assert len(saved) == len(joe) and all("_door_" in p.name for p in saved), saved
    image = cv2.imread(str(saved[0]))
    store = ModelStore(config.models_dir)
    module = FacesModule(config, store, {})
    detector = module.detector()
    assert len(detect_faces(detector.backend, detector.manifest, image, 0.4).scores) >= 1
    module.close()


def test_the_unknown_faces_folder_keeps_the_newest(tmp_path: Path) -> None:
    face = np.full((64, 64, 3), 128, np.uint8)
    folder = tmp_path / "unknown"
    for i in range(5):
        save_unknown(folder, "door/yard", f"id-{i}", face, max_files=3, wall=1_700_000_000 + 60 * i)
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) == 3 and all("_door-yard_" in n for n in names)
    assert [n.rsplit("_", 1)[1] for n in names] == ["id-2.jpg", "id-3.jpg", "id-4.jpg"]


def test_without_face_models_the_camera_says_why_and_detection_goes_on(data_dir: Path, cache_dir: Path,
                                                                       clip: Path) -> None:
    """Face recognition on, face models not installed: the camera's state says what to install, and
    its people are still detected and counted."""
    from edgewatch.daemon.pipeline.camera_service import CameraService

    config = load_settings(data_dir=data_dir, cache_dir=cache_dir)
    camera = CameraSettings(name="door", url=str(clip), fps=FPS, faces=CameraFacesConfig(enabled=True))

    async def scenario() -> dict:
        store = ModelStore(config.models_dir)
        detection, faces = DetectionModule(config, store, {}), FacesModule(config, store, {})
        await asyncio.to_thread(detection.start)
        queue = InferenceQueue(1, 8)
        service = CameraService([camera], data_dir, detection, queue, None, faces=faces)
        await service.start()
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                state = service.states()["door"]
                if state.get("faces", {}).get("error") and state["detections"] > 10:
                    return state
                await asyncio.sleep(0.2)
            return service.states()["door"]
        finally:
            await service.stop()
            queue.close()
            detection.close()
            faces.close()

    state = asyncio.run(scenario())
    assert "edgewatch models install centerface" in (state["faces"]["error"] or ""), state
    assert state["faces"]["recognised"] == 0 and state["detect_error"] is None and state["detections"] > 10


def test_people_get_entities_only_while_a_camera_recognises_faces(broker, client, data_dir: Path,
                                                                  cache_dir: Path) -> None:
    """Registered people of a box whose cameras do not recognise faces get no presence entities
    (they would stay OFF forever); a camera that does brings them, and removing it takes them away."""
    from edgewatch.daemon.modules.faces.store import NewFace

    config = load_settings(data_dir=data_dir, cache_dir=cache_dir, node_id="rest-box",
                           mqtt={"host": "127.0.0.1", "port": broker.port})
    client.subscribe("homeassistant/+/rest-box/+/config")
    presence = f"homeassistant/binary_sensor/rest-box/person_{subject_slug('Ann')}_presence/config"

    async def scenario() -> None:
        faces = FacesModule(config, ModelStore(config.models_dir), {})
        faces.faces.register("Ann", [NewFace(b"-", "0" * 64, np.ones(4, np.float32) / 2)], "test@0")
        queue = InferenceQueue(1, 4)
        link = MqttLink(config, {faces.module_id: faces}, queue, asyncio.get_running_loop())
        link.add_camera("yard", ["person"])
        link.start()
        yard_state = "homeassistant/sensor/rest-box/yard_state/config"
        await asyncio.to_thread(client.wait_seen, lambda m: m.topic == yard_state)
        link.add_camera("door", ["person"], names_people=True)
        await asyncio.to_thread(client.wait_seen, lambda m: m.topic == presence and m.payload)
        link.remove_camera("door")
        await asyncio.to_thread(client.wait_seen, lambda m: m.topic == presence and not m.payload)
        await asyncio.to_thread(link.stop)
        queue.close()
        faces.close()

    asyncio.run(scenario())
    configs = [m for m in client.history if m.topic == presence]
    # none before the door camera, one while it ran, emptied when it went
    assert [bool(m.payload) for m in configs] == [True, False]
    assert json.loads(configs[0].payload)["name"] == "Ann presence"
