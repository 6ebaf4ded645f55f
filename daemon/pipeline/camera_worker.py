"""One camera's loop: newest frame → motion gate → detection through the shared inference queue
→ filters/zones → tracker → sink (MQTT). A static scene with nothing tracked costs no inference."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

import numpy as np
from edgewatch.daemon.detection import DetectionModule, NoModelInstalled, Outcome
from edgewatch.daemon.imaging import ImageError
from edgewatch.daemon.inference_queue import InferenceQueue, QueueFull
from edgewatch.daemon.pipeline.filters import Located, apply
from edgewatch.daemon.pipeline.rules import DetectConfig
from edgewatch.daemon.pipeline.motion import MotionGate
from edgewatch.daemon.pipeline.tracker import Event, Tracker

log = logging.getLogger(__name__)


class FrameSource(Protocol):
    def latest(self, after_seq: int) -> tuple[int, np.ndarray, float] | None:
        """The newest frame if it is newer than ``after_seq``: (seq, BGR frame, capture time)."""


class CameraSink(Protocol):
    def camera_update(self, camera: str, events: list[Event], counts: dict[str, int], frame: np.ndarray,
                      located: list[Located]) -> None: ...


class CameraWorker:
    def __init__(self, name: str, source: FrameSource, config: DetectConfig, module: DetectionModule,
                 queue: InferenceQueue, sink: CameraSink) -> None:
        self.name, self.source, self.config = name, source, config
        self.module, self.queue, self.sink = module, queue, sink
        self.gate = MotionGate(min_changed=config.motion_threshold)
        self.tracker = Tracker(name, end_after_s=config.end_after_s)
        self.frames = self.detections = self.skipped_busy = 0
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        seq = 0
        while not self._stop.is_set():
            item = self.source.latest(seq)
            if item is None:
                await self._idle()
                continue
            seq, frame, _ = item
            self.frames += 1
            if not self.gate.moved(frame) and not self.tracker.tracks:
                continue  # a static, empty scene: no inference at all
            try:
                outcome = await self._detect(frame)
            except QueueFull:
                self.skipped_busy += 1  # the box is saturated: drop this frame, the next one is newer
                continue
            except (NoModelInstalled, ImageError) as exc:
                log.warning("camera %s: %s", self.name, exc, extra={"camera": self.name})
                await asyncio.sleep(5)
                continue
            self.detections += 1
            h, w = frame.shape[:2]
            located = apply(outcome.predictions, self.config.filters, w, h)
            events = self.tracker.update(located, time.monotonic())
            self.sink.camera_update(self.name, events, self.tracker.counts(), frame, located)

    async def _idle(self) -> None:
        await asyncio.sleep(0.02)
        if self.tracker.tracks:  # objects left while no new frame came: end them on time
            ended = self.tracker.update([], time.monotonic())
            ended = [e for e in ended if e.kind == "end"]
            if ended:
                self.sink.camera_update(self.name, ended, self.tracker.counts(), None, [])  # type: ignore[arg-type]

    async def _detect(self, frame: np.ndarray) -> Outcome:
        settings = self.module.settings
        min_conf = min(settings.min_confidence, self.config.filters.min_confidence)

        def job() -> Outcome:
            detector, allowed = self.module.resolve(self.config.model)
            return detector.detect_frame(frame, min_conf, settings, allowed)

        return await self.queue.run(job)
