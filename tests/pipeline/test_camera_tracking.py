"""A camera worker with the real detector on frames made of real photos (photo_scene.py): one
person comes, stands still for a minute and goes, another walks past in front of her; counts and
events against the truth, and the motion gate sparing inferences while the scene is still."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edgewatch.daemon.config import load_settings
from edgewatch.daemon.modules.detection import DetectionModule
from edgewatch.daemon.inference_queue import InferenceQueue
from edgewatch.daemon.pipeline.camera_worker import CameraWorker
from edgewatch.daemon.pipeline.rules import DetectConfig, FilterConfig, TrackingConfig
from edgewatch.daemon.testing.photo_scene import PhotoScene, lobby
from edgewatch.daemon.testing.scenes import HEIGHT, WIDTH, area, overlap
from edgewatch.models.store import ModelStore


class Recording:
    """The scene as a camera whose clock is the scene's: each look brings the next frame; after the
    last one no frame comes and the clock runs on. Notes, for each frame, the worker's counts and
    detections so far once it has handled the frame."""

    def __init__(self, scene: PhotoScene) -> None:
        self.scene, self.worker = scene, None
        self.i, self.now = 0, 0.0
        self.counts: list[dict[str, int]] = []
        self.detections: list[int] = []

    def clock(self) -> float:
        return self.now

    def latest(self, after_seq: int):
        if self.i > len(self.counts):  # the worker is done with frame i - 1
            self.counts.append(self.worker.tracker.counts())
            self.detections.append(self.worker.detections)
        if self.i >= len(self.scene):
            self.now += 1 / self.scene.fps
            return None
        self.now = self.i / self.scene.fps
        self.i += 1
        return self.i, self.scene.frame(self.i - 1), 1_800_000_000 + self.now


class Sink:
    def __init__(self, source: Recording) -> None:
        self.source, self.events = source, []

    def camera_update(self, camera, events, counts, frame, visible) -> None:
        self.events += [(self.source.i - 1, e) for e in events]


def _owner(scene: PhotoScene, frame: int, box) -> str | None:
    truth = scene.truth(min(frame, len(scene) - 1))
    best = max(truth, key=lambda n: overlap(truth[n], box), default=None)
    return best if best is not None and overlap(truth[best], box) > 0.5 * area(box) else None


def _on_edge(scene: PhotoScene, frame: int) -> bool:
    """Whether someone is partly in the frame."""
    boxes = [b for w in scene.walkers if (b := w.box(frame / scene.fps)) is not None]
    return any(0 < overlap(b, (0, 0, WIDTH, HEIGHT)) < area(b) for b in boxes)


@pytest.fixture()
def module(data_dir: Path, cache_dir: Path):
    config = load_settings(data_dir=data_dir, cache_dir=cache_dir)
    detection = DetectionModule(config, ModelStore(config.models_dir), {})
    detection.start()
    yield detection
    detection.close()


def test_real_detector_counts_people_and_spares_a_still_scene(module: DetectionModule, photos) -> None:
    scene = lobby(photos)
    tracking = TrackingConfig(recheck_every_s=5)
    filters = FilterConfig(labels=["person"], min_confidence=0.5)
    config = DetectConfig(model="nanodet", filters=filters, tracking=tracking)

    async def run() -> tuple[Recording, Sink, CameraWorker]:
        queue = InferenceQueue(1, 4)
        source = Recording(scene)
        sink = Sink(source)
        worker = source.worker = CameraWorker("lobby", source, config, module, queue, sink, clock=source.clock)
        task = asyncio.create_task(worker.run())
        for _ in range(6000):  # until the scene is over and every object has ended
            await asyncio.sleep(0.01)
            if source.i >= len(scene) and len(source.counts) == len(scene) and not worker.tracker.tracks:
                break
        worker.stop()
        await asyncio.wait_for(task, 10)
        queue.close()
        return source, sink, worker

    source, sink, worker = asyncio.run(run())
    assert worker.error is None and len(source.counts) == len(scene)
    events = sink.events
    new = [(i, e) for i, e in events if e.kind == "new"]
    ended = [e for _, e in events if e.kind == "end"]
    # one new and one end per person, and no other object
    assert sorted(_owner(scene, i, e.after.box) for i, e in new) == ["ann", "ben"]
    assert sorted(e.after.id for e in ended) == sorted(e.after.id for _, e in new)
    # the count is the truth once the confirmation (3 frames) and grace (0.6 s) delays have passed since
    # anyone was partly out of the frame (whom a detector may or may not find)
    fps, grace = scene.fps, round(tracking.count_grace_s * scene.fps)
    truths = [scene.truth(i) for i in range(len(scene))]
    on_edge = [_on_edge(scene, i) for i in range(len(scene))]
    settled = [i for i in range(len(scene)) if not any(on_edge[max(0, i - max(grace, tracking.confirm_frames)):i + 1])]
    assert len(settled) >= 0.8 * len(scene)
    counted = [source.counts[i].get("person", 0) for i in range(len(scene))]
    assert [(i, counted[i], len(truths[i])) for i in settled if counted[i] != len(truths[i])] == []
    # Ann stood still from 6 s to 66 s: one object throughout (one new), marked stationary
    ann_id = next(e.after.id for i, e in new if _owner(scene, i, e.after.box) == "ann")
    assert any(e.after.stationary for _, e in events if e.after.id == ann_id)
    # once Ben had gone and the motion gate had learnt the scene, only the re-checks ran a detection
    quiet = source.detections[round(64 * fps) - 1] - source.detections[round(34 * fps) - 1]
    assert 30 / tracking.recheck_every_s - 1 <= quiet <= 30 / tracking.recheck_every_s + 1
    assert worker.detections < 0.8 * len(scene)
