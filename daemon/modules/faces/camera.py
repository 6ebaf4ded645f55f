"""Face recognition on one camera's tracked people, as Frigate 0.16+ does it: each confirmed person
in view gets up to ``attempts`` looks (at most one every ``attempt_every_s``) until their face is
recognised; the name becomes the object's ``sub_label`` (an ``update`` event). A person never
recognised, whose face was seen, can leave their best face in the unknown-faces folder (opt-in).

This stage sits after the tracker in a camera's chain and only reads the frame and the tracks;
the face work runs through the shared inference queue like every other inference.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import numpy as np

from edgewatch.daemon.config import CameraFacesConfig
from edgewatch.daemon.inference_queue import InferenceQueue
from edgewatch.daemon.modules.camera_stage import CameraStage
from edgewatch.daemon.modules.faces.module import FacesModule
from edgewatch.daemon.modules.faces.unknown import save_unknown, unknown_dir
from edgewatch.daemon.modules.faces.usecase import Sighting, identify
from edgewatch.daemon.pipeline.tracker import Event, Tracker

log = logging.getLogger(__name__)

PERSON = "person"


@dataclass
class _Person:
    attempts: int = 0
    last_attempt: float = float("-inf")
    best_unknown: Sighting | None = None


class CameraFaces(CameraStage):
    """One camera's face stage; :meth:`look` after each detection, :meth:`ended` with its events."""

    what = "face recognition"

    def __init__(self, camera: str, config: CameraFacesConfig, module: FacesModule, queue: InferenceQueue) -> None:
        super().__init__(camera, queue)
        self.config, self.module = config, module
        self.recognised = self.saved = 0  # people recognised, unknown faces saved
        self._people: dict[str, _Person] = {}  # track id → what was tried

    async def look(self, frame: np.ndarray, tracker: Tracker, now: float) -> list[Event]:
        """Look for the faces of the people found in this frame who are due an attempt; returns the
        ``update`` events of those recognised."""
        if self.resting(now):
            return []
        due = []
        for track in tracker.visible():
            if track.label != PERSON or track.missed or track.sub_label is not None:
                continue
            person = self._people.setdefault(track.id, _Person())
            if person.attempts < self.config.attempts and now - person.last_attempt >= self.config.attempt_every_s:
                due.append((track, person))
        if not due:
            return []
        boxes = [track.box for track, _ in due]
        sightings = await self.run(now, identify, self.module, frame, boxes, self.config.min_face_px)
        if sightings is None:
            return []
        events = []
        for (track, person), seen in zip(due, sightings):
            person.attempts += 1
            person.last_attempt = now
            if seen.userid is not None:
                self.recognised += 1
                person.best_unknown = None
                event = tracker.identify(track, seen.userid, round(seen.similarity, 3), now)
                if event is not None:
                    events.append(event)
            elif seen.face is not None and (person.best_unknown is None or
                                            seen.quality > person.best_unknown.quality):
                person.best_unknown = seen
        return events

    def ended(self, events: list[Event]) -> None:
        """Forget the people who left; save the best face of those never recognised (when asked to),
        off the event loop (a write is fsynced)."""
        for event in events:
            if event.kind != "end":
                continue
            person = self._people.pop(event.track.id, None)
            if person is None or person.best_unknown is None or not self.config.save_unknown:
                continue
            asyncio.get_running_loop().run_in_executor(None, self._save, event.track.id, person.best_unknown,
                                                       event.after.frame_time)

    def _save(self, track_id: str, seen: Sighting, wall: float) -> None:
        try:
            path = save_unknown(unknown_dir(self.module.config.data_dir), self.camera, track_id, seen.face,
                                self.module.settings.unknown_max_files, wall)
            self.saved += 1
            log.info("camera %s: saved an unknown face to %s; register it with POST /v1/vision/face/register",
                     self.camera, path, extra={"camera": self.camera})
        except (OSError, ValueError) as exc:
            log.warning("camera %s: cannot save an unknown face (%s); check that the data dir is writable and "
                        "has room", self.camera, exc, extra={"camera": self.camera})
