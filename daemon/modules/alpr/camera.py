"""Licence plate reading on one camera's tracked vehicles, as Frigate 0.16+ does it: each confirmed
vehicle in view (car, motorcycle, bus, truck by default) gets up to ``attempts`` readings (at most one
every ``attempt_every_s``); the best reading becomes the object's ``recognized_license_plate`` (an
``update`` event), and a reading that matches a known plate gives it that plate's name as
``sub_label``. The camera's last plate is kept for Home Assistant's "last plate" sensor.

This stage sits after the tracker in a camera's chain and only reads the frame and the tracks; the
reading runs through the shared inference queue like every other inference.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from edgewatch.daemon.config import CameraPlatesConfig
from edgewatch.daemon.inference_queue import InferenceQueue
from edgewatch.daemon.modules.alpr.module import AlprModule
from edgewatch.daemon.modules.camera_stage import CameraStage
from edgewatch.daemon.pipeline.tracker import Event, Tracker
from edgewatch.models.runtime.plates import PlateRead

MARGIN = 0.08  # the vehicle's box grown by this share on each side: a plate sits at its very edge


@dataclass(frozen=True)
class Reading:
    text: str              # as read (a known plate it matched may differ by match_distance characters)
    score: float           # the reading's confidence
    name: str | None       # the known plate's name it matched
    box: tuple[float, float, float, float]  # the plate in the frame's pixels


@dataclass(frozen=True)
class LastPlate:
    """The camera's latest plate reading, for Home Assistant."""

    plate: str
    score: float
    name: str | None
    object_id: str
    label: str
    timestamp: float  # wall clock, of the frame it was read in


@dataclass
class _Vehicle:
    attempts: int = 0
    last_attempt: float = float("-inf")
    best: Reading | None = None


def read_vehicles(module: AlprModule, frame: np.ndarray, boxes: list[tuple[float, float, float, float]]
                  ) -> list[Reading | None]:
    """For each vehicle box, the most confident plate read inside it (grown by :data:`MARGIN`) that the
    module would answer, in frame pixels; None where no plate reads. Runs on the inference queue."""
    h, w = frame.shape[:2]
    out: list[Reading | None] = []
    for x1, y1, x2, y2 in boxes:
        mx, my = (x2 - x1) * MARGIN, (y2 - y1) * MARGIN
        cx1, cy1 = max(0, int(x1 - mx)), max(0, int(y1 - my))
        cx2, cy2 = min(w, int(np.ceil(x2 + mx))), min(h, int(np.ceil(y2 + my)))
        if cx2 - cx1 < 8 or cy2 - cy1 < 8:
            out.append(None)
            continue
        plates, _ = module.read(frame[cy1:cy2, cx1:cx2])
        good: list[PlateRead] = [p for p in plates if module.accepted(p, module.settings.min_confidence)]
        if not good:
            out.append(None)
            continue
        best = max(good, key=lambda p: p.ocr_confidence)
        known = module.known_plate(best.text)
        px1, py1, px2, py2 = best.box
        out.append(Reading(best.text, best.ocr_confidence, known[0] if known else None,
                           (px1 + cx1, py1 + cy1, px2 + cx1, py2 + cy1)))
    return out


class CameraPlates(CameraStage):
    """One camera's plate stage; :meth:`look` after each detection, :meth:`ended` with its events."""

    what = "plate reading"

    def __init__(self, camera: str, config: CameraPlatesConfig, module: AlprModule, queue: InferenceQueue) -> None:
        super().__init__(camera, queue)
        self.config, self.module = config, module
        self.read = 0  # vehicles whose plate was read
        self.last: LastPlate | None = None
        self._vehicles: dict[str, _Vehicle] = {}  # track id → what was tried

    async def look(self, frame: np.ndarray, tracker: Tracker, now: float) -> list[Event]:
        """Read the plates of the vehicles in this frame that are due a reading; returns the ``update``
        events of those whose plate was read, or read better than before."""
        if self.resting(now):
            return []
        due = []
        for track in tracker.visible():
            if track.label not in self.config.labels or track.missed:
                continue
            if track.box[2] - track.box[0] < self.config.min_vehicle_px:
                continue
            vehicle = self._vehicles.setdefault(track.id, _Vehicle())
            if vehicle.best is not None and vehicle.best.name is not None:
                continue  # a known plate: nothing better to read
            if vehicle.attempts < self.config.attempts and now - vehicle.last_attempt >= self.config.attempt_every_s:
                due.append((track, vehicle))
        if not due:
            return []
        readings = await self.run(now, read_vehicles, self.module, frame, [t.box for t, _ in due])
        if readings is None:
            return []
        events = []
        for (track, vehicle), reading in zip(due, readings):
            vehicle.attempts += 1
            vehicle.last_attempt = now
            if reading is None or not _better(reading, vehicle.best):
                continue
            if vehicle.best is None:
                self.read += 1
            vehicle.best = reading
            self.last = LastPlate(reading.text, reading.score, reading.name, track.id, track.label,
                                  track.frame_time or time.time())
            event = tracker.read_plate(track, reading.text, reading.score, now, name=reading.name)
            if event is not None:
                events.append(event)
        return events

    def ended(self, events: list[Event]) -> None:
        """Forget the vehicles that left."""
        for event in events:
            if event.kind == "end":
                self._vehicles.pop(event.track.id, None)


def _better(new: Reading, old: Reading | None) -> bool:
    """A known plate beats any reading; otherwise the more confident reading wins."""
    if old is None:
        return True
    if (new.name is not None) != (old.name is not None):
        return new.name is not None
    return new.text != old.text and new.score > old.score
