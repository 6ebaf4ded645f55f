"""One camera's loop: newest frame → motion gate → detection through the shared inference queue
→ filters/zones → tracker → sink (MQTT). A still scene costs no inference: with nothing tracked,
none at all; with objects standing still, one every ``tracking.recheck_every_s``. A failure is
logged, shown in the camera's state and retried with backoff."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import numpy as np
from edgewatch.daemon.cameras.reader import Backoff
from edgewatch.daemon.modules.detection.detector import NoModelInstalled, Outcome
from edgewatch.daemon.modules.detection.module import DetectionModule
from edgewatch.daemon.imaging import ImageError
from edgewatch.daemon.inference_queue import InferenceQueue, QueueFull
from edgewatch.daemon.metrics import observe_inference
from edgewatch.daemon.pipeline.filters import apply
from edgewatch.daemon.pipeline.rules import DetectConfig
from edgewatch.daemon.pipeline.motion import MotionGate
from edgewatch.daemon.pipeline.tracker import Event, Track, Tracker, load_library
from edgewatch.daemon.redaction import printable
from edgewatch.models.store import ModelNotFound

if TYPE_CHECKING:
    from edgewatch.daemon.modules.alpr.camera import CameraPlates
    from edgewatch.daemon.modules.faces.camera import CameraFaces

log = logging.getLogger(__name__)

RETRY_INITIAL_S, RETRY_MAX_S = 1.0, 30.0  # backoff after a failed detection
LOG_EVERY_S = 60.0  # the same failure is logged again at most this often


class FrameFeed(Protocol):
    """The newest frame of one camera (a CameraReader, or a recorded scene in tests)."""

    def latest(self, after_seq: int) -> tuple[int, np.ndarray, float] | None:
        """The newest frame if it is newer than ``after_seq``: (seq, BGR frame, capture time)."""


class CameraSink(Protocol):
    def camera_update(self, camera: str, events: list[Event], counts: dict[str, int], frame: np.ndarray | None,
                      visible: list[Track]) -> None:
        """``counts`` and ``visible``: the confirmed objects in view now; ``frame`` is None when no
        frame came (objects ended for lack of frames)."""


class CameraWorker:
    """Runs until :meth:`stop`. Any failure (a missing model, a bad frame, a sink error) is logged
    (once per distinct message, then at most every minute), kept in :attr:`error` for the camera's
    state, and retried with backoff; the loop itself never ends on an error."""

    def __init__(self, name: str, source: FrameFeed, config: DetectConfig, module: DetectionModule,
                 queue: InferenceQueue, sink: CameraSink, clock: Callable[[], float] = time.monotonic,
                 faces: CameraFaces | None = None, plates: CameraPlates | None = None) -> None:
        """``clock``: monotonic seconds, for the tracker (a recorded scene can bring its own);
        ``faces`` and ``plates``: the face recognition and plate reading stages, when the camera has them on."""
        self.name, self.source, self.config, self.clock, self.faces = name, source, config, clock, faces
        self.plates = plates
        self.module, self.queue, self.sink = module, queue, sink
        self.gate = MotionGate(min_changed=config.motion_threshold)
        self.tracker = Tracker(name, end_after_s=config.end_after_s, config=config.tracking)
        self.frames = self.detections = self.skipped_busy = 0
        self.motion_skipped = 0  # frames the motion gate found still (no detection ran)
        self.objects: Counter[str] = Counter()  # objects found per label (after the filters), for the metrics
        self.error: str | None = None  # why detection fails now; None once it works
        self._backoff = Backoff(RETRY_INITIAL_S, RETRY_MAX_S)
        self._logged: tuple[str, float] | None = None  # the last error logged, and when
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        seq, loaded = 0, False
        while not self._stop.is_set():
            try:
                if not loaded:  # the tracking library's import takes a while: off the event loop
                    await asyncio.to_thread(load_library)
                    loaded = True
                seq = await self._step(seq)
            except Exception as exc:  # noqa: BLE001 - log, say why in the state, back off, go on
                await self._failed(exc)

    async def _step(self, seq: int) -> int:
        """Handle the newest frame, if there is one; returns the seq of the last frame taken."""
        item = self.source.latest(seq)
        if item is None:
            await self._idle()
            return seq
        seq, frame, captured = item
        self.frames += 1
        now = self.clock()
        if not self.gate.moved(frame) and not self.tracker.needs_detection(now):
            # a still scene: what the last detection found is still there (nothing, often)
            self.motion_skipped += 1
            events = self.tracker.unchanged(now, captured)
            if events:
                self._publish(events, frame)
            return seq
        try:
            outcome = await self._detect(frame)
        except QueueFull:
            self.skipped_busy += 1  # the box is saturated: drop this frame, the next one is newer
            return seq
        self.detections += 1
        observe_inference(self.queue, self.module.module_id, self.config.model or "default", outcome.inference_ms,
                          process_ms=outcome.process_ms, backend=outcome.backend)
        h, w = frame.shape[:2]
        located = apply(outcome.predictions, self.config.filters, w, h)
        self.objects.update(found.prediction.label for found in located)
        events = self.tracker.update(located, self.clock(), captured)
        if self.faces is not None:
            events += await self.faces.look(frame, self.tracker, self.clock())
        if self.plates is not None:
            events += await self.plates.look(frame, self.tracker, self.clock())
        self._publish(events, frame)
        if self.error is not None:
            log.info("camera %s: detection works again", self.name, extra={"camera": self.name})
            self.error, self._logged = None, None
        self._backoff.reset()
        return seq

    async def _failed(self, exc: Exception) -> None:
        expected = isinstance(exc, (NoModelInstalled, ModelNotFound, ImageError))
        self.error = printable(str(exc) if expected else f"detection failed: {type(exc).__name__}: {exc}", 300)
        delay = self._backoff.next()
        now = time.monotonic()
        if self._logged is None or self._logged[0] != self.error or now - self._logged[1] >= LOG_EVERY_S:
            self._logged = (self.error, now)
            log.warning("camera %s: %s; trying again in %.0f s", self.name, self.error, delay,
                        exc_info=None if expected else exc, extra={"camera": self.name})
        try:
            await asyncio.wait_for(self._stop.wait(), delay)
        except asyncio.TimeoutError:
            pass

    async def _idle(self) -> None:
        await asyncio.sleep(0.02)
        ended = self.tracker.expire(self.clock())  # no frame is coming: objects unseen too long end on time
        if ended:
            self._publish(ended, None)

    def _publish(self, events: list[Event], frame: np.ndarray | None) -> None:
        if self.faces is not None:
            self.faces.ended(events)
        if self.plates is not None:
            self.plates.ended(events)
        self.sink.camera_update(self.name, events, self.tracker.counts(), frame, self.tracker.visible())

    async def _detect(self, frame: np.ndarray) -> Outcome:
        settings = self.module.settings
        min_conf = min(settings.min_confidence, self.config.filters.min_confidence)

        def job() -> Outcome:
            detector, allowed = self.module.resolve(self.config.model)
            return detector.detect_frame(frame, min_conf, settings, allowed)

        return await self.queue.run(job)
