"""A camera's frames through motion gate, real detector, tracker and MQTT (real mosquitto):
Home Assistant sees per-camera entities, counts rise to what is in view and fall, one event per
object, in Frigate's shape too."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import cv2
import numpy as np

from edgewatch.daemon.config import load_settings
from edgewatch.daemon.modules.detection import DetectionModule
from edgewatch.daemon.inference_queue import InferenceQueue
from edgewatch.daemon.mqtt.link import MqttLink
from edgewatch.daemon.pipeline.camera_worker import CameraWorker
from edgewatch.daemon.pipeline.filters import apply
from edgewatch.daemon.pipeline.rules import DetectConfig, FilterConfig
from edgewatch.models.store import ModelStore

from mqtt_harness import Client

COUNT = "edgewatch/cam-box/driveway/person/count"
FRIGATE_FIELDS = ("id", "camera", "label", "score", "top_score", "box", "current_zones", "entered_zones", "stationary",
                  "start_time", "end_time")
EVENTS = "edgewatch/cam-box/driveway/events"


def _walked_in_and_out(history) -> bool:
    """People were counted, every person who came got an end event, and the count is back to 0."""
    counts = [int(m.payload) for m in history if m.topic == COUNT]
    events = [json.loads(m.payload) for m in history if m.topic == EVENTS]
    came = {e["id"] for e in events if e["label"] == "person" and e["type"] == "new"}
    left = {e["id"] for e in events if e["type"] == "end"}
    return bool(counts) and max(counts) >= 1 and counts[-1] == 0 and bool(came) and came <= left


class PhotoScene:
    """Frames at 5 fps following a script of (seconds, photo): the scene a camera would see. Its
    clock is deliberate time passing, as a real camera's is (the tracker's end_after_s counts in it)."""

    def __init__(self, script: list[tuple[float, np.ndarray]]) -> None:
        self.script, self.start, self.seq = script, time.monotonic(), 0

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def latest(self, after_seq: int):
        elapsed = self.elapsed()
        seq = int(elapsed * 5) + 1
        if seq <= after_seq:
            return None
        t = 0.0
        for duration, frame in self.script:
            t += duration
            if elapsed < t:
                return seq, frame, time.time()
        return seq, self.script[-1][1], time.time()


def test_person_walks_in_and_out_as_home_assistant_sees_it(broker, client, data_dir: Path, cache_dir: Path,
                                                           photos) -> None:
    empty = cv2.resize(cv2.imread(str(photos["coffee"])), (1280, 720))
    street = cv2.resize(cv2.imread(str(photos["bus"])), (1280, 720))
    client.subscribe("edgewatch/cam-box/#")
    client.subscribe("homeassistant/+/cam-box/+/config")
    config = load_settings(data_dir=data_dir, cache_dir=cache_dir, node_id="cam-box",
                           mqtt={"host": "127.0.0.1", "port": broker.port})

    filters = FilterConfig(labels=["person", "car", "bus"])

    async def scenario() -> tuple[CameraWorker, int]:
        module = DetectionModule(config, ModelStore(config.models_dir), {})
        await asyncio.to_thread(module.start)
        detector, allowed = module.resolve(None)  # what one detection finds in the street, for the count
        found = detector.detect_frame(street, min(module.settings.min_confidence, filters.min_confidence),
                                      module.settings, allowed).predictions
        in_street = sum(item.prediction.label == "person" for item in apply(found, filters, 1280, 720))
        queue = InferenceQueue(1, 4)
        link = MqttLink(config, {module.module_id: module}, queue, asyncio.get_running_loop())
        link.add_camera("driveway", ["person", "car"])
        link.start()
        # the scene starts once the link is online, so no frame's events go out before it can publish
        await asyncio.to_thread(client.wait_seen, lambda m: m.topic == "edgewatch/cam-box/availability"
                                and m.payload == b"online")
        scene = PhotoScene([(1.0, empty), (3.0, street), (30.0, empty)])
        worker = CameraWorker("driveway", scene, DetectConfig(filters=filters, end_after_s=1.5), module, queue, link)
        task = asyncio.create_task(worker.run())
        try:
            # deliberate time passing: the script shows the street until 4 s, whatever MQTT says before
            await asyncio.sleep(max(0.0, 4.0 - scene.elapsed()))
            # then the signal: Home Assistant has seen the people come and go (end_after_s after the street)
            await asyncio.to_thread(client.wait_history, _walked_in_and_out, 60)
        finally:
            worker.stop()
            await task
            await asyncio.to_thread(link.stop)
        queue.close()
        module.close()
        return worker, in_street

    worker, in_street = asyncio.run(scenario())
    # the link's last word is offline: everything it published before has arrived once that has
    client.wait_seen(lambda m: m.topic == "edgewatch/cam-box/availability" and m.payload == b"offline")
    messages = list(client.history)
    topics = {m.topic for m in messages}
    assert "homeassistant/binary_sensor/cam-box/driveway_person_occupancy/config" in topics
    occupancy = json.loads(next(m.payload for m in messages
                                if m.topic == "homeassistant/binary_sensor/cam-box/driveway_person_occupancy/config"))
    assert occupancy["device"]["via_device"] == "edgewatch_cam-box" and occupancy["device_class"] == "occupancy"
    assert occupancy["state_topic"] == "edgewatch/cam-box/driveway/person/count"
    counts = [int(m.payload) for m in messages if m.topic == COUNT]
    assert counts[0] == 0 and counts[-1] == 0  # nobody, people, nobody again
    assert in_street >= 1 and max(counts) == in_street  # as many as one detection of the street finds, no more
    events = [json.loads(m.payload) for m in messages if m.topic == EVENTS]
    people = {e["id"] for e in events if e["label"] == "person"}
    assert people and all(sum(e["id"] == i and e["type"] == "new" for e in events) == 1 for i in people)
    assert all(any(e["id"] == i and e["type"] == "end" for e in events) for i in people)
    assert len([e for e in events if e["type"] == "new"]) <= 8  # a handful of objects, not one per frame
    for e in events:  # Frigate's event shape, next to edgewatch's own fields
        assert set(FRIGATE_FIELDS) <= set(e["before"]) and set(FRIGATE_FIELDS) <= set(e["after"])
        assert e["after"]["id"] == e["id"] and e["after"]["label"] == e["label"] and e["after"]["box"] == e["box"]
        assert e["before"]["id"] == e["id"] and (e["type"] != "new" or e["before"] == e["after"])
        assert (e["after"]["end_time"] is not None) == (e["type"] == "end") == (e["end_time"] is not None)
    snapshot = next(m.payload for m in messages if m.topic == "edgewatch/cam-box/driveway/person/snapshot")
    assert snapshot[:2] == b"\xff\xd8"  # a JPEG
    assert worker.detections < worker.frames  # the static scene was gated out


def test_removing_a_camera_removes_its_entities(broker, client, data_dir: Path, cache_dir: Path) -> None:
    config = load_settings(data_dir=data_dir, cache_dir=cache_dir, node_id="rm-box",
                           mqtt={"host": "127.0.0.1", "port": broker.port})

    def porch(history) -> dict[str, list[bytes]]:
        out: dict[str, list[bytes]] = {}
        for m in history:
            if m.topic.startswith("homeassistant/") and "/porch_" in m.topic:
                out.setdefault(m.topic, []).append(m.payload)
        return out

    async def scenario() -> None:
        module = DetectionModule(config, ModelStore(config.models_dir), {})
        queue = InferenceQueue(1, 4)
        link = MqttLink(config, {module.module_id: module}, queue, asyncio.get_running_loop())
        link.add_camera("porch", ["person"])
        link.start()
        try:
            await asyncio.to_thread(client.wait_history, lambda h: len(porch(h)) == 4 and all(
                p[0] for p in porch(h).values()))  # occupancy, count, snapshot image, camera state
            link.remove_camera("porch")
            await asyncio.to_thread(client.wait_history, lambda h: all(p[-1] == b"" for p in porch(h).values()))
        finally:
            await asyncio.to_thread(link.stop)
            queue.close()

    client.subscribe("homeassistant/+/rm-box/+/config")
    asyncio.run(scenario())
    payloads = porch(client.history)
    assert len(payloads) == 4  # occupancy, count, snapshot image, camera state
    assert all(p[0] and p[-1] == b"" for p in payloads.values())  # created, then emptied: Home Assistant deletes them

    fresh = Client(broker.port, "fresh")
    try:
        fresh.subscribe("homeassistant/+/rm-box/+/config")
        fresh.sync()  # every retained config the broker holds for that filter has arrived
        retained = [m.topic for m in fresh.history]
        assert not any("/porch_" in t for t in retained) and any("inference_ms" in t for t in retained)
    finally:
        fresh.close()
