"""Per-frame detections → objects, with norfair (the tracker Frigate uses): a Kalman filter per
object predicts where its box will be, and detections are matched to the predictions, per label, by a
distance of our own given to norfair (:class:`BoxDistance`): 1 - IoU plus a capped cost of the box's
height change, so someone passing in front (nearer the camera: taller) does not take the object of
the person they hide; pairs with an IoU under ``min_iou`` never match. An object is reported (its
``new`` event) once it has been found in ``confirm_frames`` detections (one not yet confirmed is
dropped when missed twice in a row, unless other detections hide it), counts as in view while the
latest detections find it (or missed it for at most ``count_grace_s``), and ends (``end``) when
unseen for ``end_after_s``.

Frames the motion gate finds unchanged confirm what the last detection saw (:meth:`Tracker.unchanged`),
so a parked car or a person sitting still stays one object with no inference; a detection re-checks
them every ``recheck_every_s`` (:meth:`Tracker.needs_detection`).

norfair is imported on first use (:func:`load_library`): it brings scipy, which the daemon does not
need until a camera runs.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from edgewatch.daemon.pipeline.filters import Located
from edgewatch.daemon.pipeline.rules import TrackingConfig

EventKind = Literal["new", "update", "end"]
Box = tuple[int, int, int, int]

# norfair's default initial velocity variance (1 px²/frame²) leaves a new object's velocity near 0 for
# many frames, so a person walking at 5 fps drifts out of its predicted box; any value from 25 to 1600
# tracked the test scenes equally well (bench/tracking.py), so this one holds from 640x360 to 4K
VELOCITY_VARIANCE = 400.0
NEVER_DIES = 1 << 30  # norfair's hit counter, kept there: objects end here, in seconds, not in norfair, in frames
TENTATIVE_MISSES = 1  # detections in a row that may miss an object not yet confirmed (hidden ones aside)
HIDDEN_COVER = 0.3  # other detections covering this much of a missed object's predicted box may hide it
# matching cost of a height change, besides 1 - IoU: HEIGHT_WEIGHT * |log(detected height / predicted
# height)|, at most HEIGHT_CAP. One person's box keeps its height from frame to frame; someone passing
# in front of another is nearer the camera, so taller, and no longer takes the hidden one's object.
# Capped, as a box can shrink to the part of someone that others leave in view.
HEIGHT_WEIGHT, HEIGHT_CAP = 4.0, 0.5  # 2 to 6 scored alike on the hall (bench/tracking.py)
STILL_IOU = 0.6  # a box overlapping where the object stopped this much has not moved (Frigate's rule)
_EPS = 1e-6


def load_library() -> Any:
    """Import norfair (about half a second here: run it off the event loop)."""
    import norfair

    logger = logging.getLogger("norfair.distances")
    if _inverted_boxes not in logger.filters:
        logger.addFilter(_inverted_boxes)
    return norfair


def _inverted_boxes(record: logging.LogRecord) -> bool:
    """Drop norfair's warning about inverted boxes: the box predicted for an object leaving the frame
    (its detections clipped at the edge) can invert, its IoU is 0 as it should be, and the warning
    would come on every frame."""
    return not record.getMessage().startswith("Incorrect bounding boxes")


@dataclass(frozen=True)
class ObjectState:
    """An object as an event shows it (Frigate's ``before``/``after``)."""

    id: str
    label: str
    score: float
    top_score: float
    box: Box
    current_zones: tuple[str, ...]
    entered_zones: tuple[str, ...]
    stationary: bool
    start_time: float
    end_time: float | None
    frame_time: float
    sub_label: tuple[str, float] | None = None  # who it is (a recognised face) and how sure


@dataclass
class Track:
    """One object: ``last_seen`` and ``still_since`` in monotonic seconds, ``start_time`` and
    ``frame_time`` wall-clock; ``confirmed`` once reported, ``anchor`` where it last stopped."""

    id: str
    label: str
    box: Box
    score: float
    top_score: float
    current_zones: tuple[str, ...]
    entered_zones: list[str]
    last_seen: float
    start_time: float
    frame_time: float
    still_since: float
    anchor: Box
    confirmed: bool = False
    stationary: bool = False
    hits: int = 0  # detections that found it
    missed: int = 0  # detections in a row that did not find it
    unexplained: int = 0  # of those, the ones where no other detections covered it (it may have gone)
    last_reported: float = 0.0
    reported: ObjectState | None = None  # as its last event showed it: the next event's ``before``
    sub_label: tuple[str, float] | None = None  # set by a later stage (face recognition): name, score

    @classmethod
    def start(cls, d: Located, now: float, wall: float) -> Track:
        box = _box(d)
        return cls(id=f"{wall:.6f}-{secrets.token_hex(3)}", label=d.prediction.label, box=box,
                   score=d.prediction.confidence, top_score=d.prediction.confidence, current_zones=d.zones,
                   entered_zones=list(d.zones), last_seen=now, start_time=wall, frame_time=wall,
                   still_since=now, anchor=box)

    def seen(self, d: Located, now: float, wall: float) -> bool:
        """Take a detection of this object; True if its zones changed."""
        zones_changed = d.zones != self.current_zones
        self.box, self.score, self.current_zones = _box(d), d.prediction.confidence, d.zones
        self.top_score = max(self.top_score, self.score)
        self.entered_zones += [z for z in d.zones if z not in self.entered_zones]
        self.last_seen, self.frame_time, self.missed, self.unexplained = now, wall, 0, 0
        self.hits += 1
        return zones_changed

    def moved(self, now: float) -> None:
        """Its box no longer overlaps where it stood: it is moving."""
        self.anchor, self.still_since = self.box, now

    def settle(self, now: float, stationary_after_s: float) -> bool:
        """Update ``stationary``; True if it changed."""
        was, self.stationary = self.stationary, now - self.still_since >= stationary_after_s - _EPS
        return was != self.stationary

    def state(self, end_time: float | None = None) -> ObjectState:
        return ObjectState(self.id, self.label, self.score, self.top_score, self.box, self.current_zones,
                           tuple(self.entered_zones), self.stationary, self.start_time, end_time, self.frame_time,
                           self.sub_label)


@dataclass(frozen=True)
class Event:
    kind: EventKind
    track: Track
    before: ObjectState
    after: ObjectState


@dataclass
class Tracker:
    """One camera's objects. Times are monotonic seconds (``now``) and, for events, wall-clock
    seconds (``wall``, default: the clock now)."""

    camera: str
    end_after_s: float = 5.0
    config: TrackingConfig = field(default_factory=TrackingConfig)
    _impl: Any = field(default=None, init=False, repr=False)  # the norfair Tracker, made on first use
    _tracks: dict[Any, Track] = field(default_factory=dict, init=False, repr=False)  # norfair object → its track
    _frame: int = field(default=0, init=False)  # detections so far
    _latest: float = field(default=float("-inf"), init=False)  # the latest frame's time: detected or unchanged
    _last_detection: float = field(default=float("-inf"), init=False)

    @property
    def tracks(self) -> dict[str, Track]:
        """The confirmed objects not yet ended, by id."""
        return {t.id: t for t in self._tracks.values() if t.confirmed}

    def update(self, detections: list[Located], now: float, wall: float | None = None) -> list[Event]:
        """Take the detections of a frame (after filters); returns the events they cause. ``wall``: the
        frame's capture time, for the events."""
        wall = time.time() if wall is None else wall
        self._frame += 1
        self._latest = self._last_detection = now
        norfair = load_library()
        if self._impl is None:
            # every object is "initialized" for norfair, so all are matched in one round, nearest first
            # (norfair matches its initialized objects before the new ones: an object hidden behind a
            # newcomer would take the newcomer's detection); confirmation is counted here instead
            self._impl = norfair.Tracker(distance_function="iou", distance_threshold=box_distance_threshold(self.config),
                                         hit_counter_max=NEVER_DIES, initialization_delay=0,
                                         past_detections_length=0,
                                         filter_factory=norfair.filter.OptimizedKalmanFilterFactory(
                                             vel_variance=VELOCITY_VARIANCE))
            # norfair's constructor takes a distance's name or a per-pair function; a vectorised
            # distance of our own goes in its place (one call per label and frame, as "iou" does)
            self._impl.distance_function = norfair.distances.VectorizedDistance(BoxDistance(self.config.min_iou))
        self._impl.update([norfair.Detection(np.array([[d.prediction.x_min, d.prediction.y_min],
                                                       [d.prediction.x_max, d.prediction.y_max]], float),
                                             label=d.prediction.label, data=(self._frame, d)) for d in detections])
        events: list[Event] = []
        found: list[tuple[Track, bool]] = []  # (track, its zones changed)
        missed: list[tuple[Track, Any]] = []  # (track not confirmed, its norfair object)
        for obj in self._impl.tracked_objects:
            obj.hit_counter = NEVER_DIES  # norfair predicts and matches; when an object ends is decided here
            frame, d = obj.last_detection.data
            track = self._tracks.get(obj)
            if track is None:
                track = self._tracks[obj] = Track.start(d, now, wall)
            if frame == self._frame:
                found.append((track, track.seen(d, now, wall)))
            else:
                track.missed += 1
                if not track.confirmed:
                    missed.append((track, obj))
        if found:  # one call for all: each call of norfair's iou costs about as much as a Kalman update
            overlap = 1 - np.diag(norfair.distances.iou(np.array([t.box for t, _ in found], float),
                                                        np.array([t.anchor for t, _ in found], float)))
            for (track, _), still in zip(found, overlap >= STILL_IOU):
                if not still:
                    track.moved(now)
        for track, zones_changed in found:
            changed = track.settle(now, self.config.stationary_after_s) or zones_changed
            if not track.confirmed and track.hits >= self.config.confirm_frames:
                track.confirmed = True
                events.append(self._event("new", track, now))
            elif track.confirmed and (changed or now - track.last_reported >= self.config.update_every_s - _EPS):
                events.append(self._event("update", track, now))
        self._excuse_hidden(missed, detections, now)
        dropped = [obj for obj, t in self._tracks.items() if not t.confirmed and t.unexplained > TENTATIVE_MISSES]
        self._forget(dropped)
        return events + self.expire(now)

    def _excuse_hidden(self, missed: list[tuple[Track, Any]], detections: list[Located], now: float) -> None:
        """Objects not yet confirmed that the detections missed: a miss counts against one unless the
        other detections cover at least ``HIDDEN_COVER`` of its predicted box (norfair's estimate), for
        up to ``count_grace_s`` since it was last seen: someone passing in front hides it, it has not gone."""
        if not missed:
            return
        grace = min(self.config.count_grace_s, self.end_after_s)
        cover = np.zeros(len(missed))
        if detections:
            predicted = np.array([obj.estimate.ravel() for _, obj in missed], float)
            boxes = np.array([_box(d) for d in detections], float)
            corner = np.maximum(predicted[:, None, :2], boxes[None, :, :2])
            far = np.minimum(predicted[:, None, 2:], boxes[None, :, 2:])
            inter = np.prod(np.clip(far - corner, 0, None), axis=2).sum(axis=1)  # overlaps of detections summed
            cover = inter / np.maximum(np.prod(np.clip(predicted[:, 2:] - predicted[:, :2], 0, None), axis=1), 1)
        for (track, _), share in zip(missed, cover):
            if share < HIDDEN_COVER or now - track.last_seen > grace + _EPS:
                track.unexplained += 1

    def unchanged(self, now: float, wall: float | None = None) -> list[Event]:
        """A frame the motion gate found unchanged: whatever the last detection found is still there."""
        wall = time.time() if wall is None else wall
        self._latest = now
        events = []
        for track in self._tracks.values():
            if track.missed == 0:
                track.last_seen, track.frame_time = now, wall
                if track.settle(now, self.config.stationary_after_s) and track.confirmed:
                    events.append(self._event("update", track, now))
        return events

    def expire(self, now: float) -> list[Event]:
        """End the objects unseen for ``end_after_s`` (also when no frames come)."""
        gone = [obj for obj, t in self._tracks.items() if t.confirmed and now - t.last_seen >= self.end_after_s - _EPS]
        if not gone:
            return []
        events = []
        for obj in gone:
            track = self._tracks[obj]
            after = track.state(end_time=track.frame_time)
            events.append(Event("end", track, track.reported or after, after))
        self._forget(gone)
        return events

    def _forget(self, objects: list[Any]) -> None:
        for obj in objects:
            del self._tracks[obj]
        if objects:
            self._impl.tracked_objects = [o for o in self._impl.tracked_objects if o not in objects]

    def needs_detection(self, now: float) -> bool:
        """Whether the next frame needs a detection even if the motion gate finds it unchanged: an
        object is waiting for confirmation or was missed, or the still objects are due a re-check."""
        if not self._tracks:
            return False
        if any(not t.confirmed or t.missed for t in self._tracks.values()):
            return True
        return now - self._last_detection >= self.config.recheck_every_s - _EPS

    def identify(self, track: Track, name: str, score: float, now: float) -> Event | None:
        """Give ``track`` a sub label (who it is); the ``update`` event that reports it, or None while the
        object is not confirmed (its ``new`` event will carry it)."""
        track.sub_label = (name, score)
        return self._event("update", track, now) if track.confirmed else None

    def visible(self) -> list[Track]:
        """The confirmed objects in view now: found by the latest detections, or missed for at most
        ``count_grace_s``."""
        grace = min(self.config.count_grace_s, self.end_after_s)
        return [t for t in self._tracks.values() if t.confirmed and self._latest - t.last_seen <= grace + _EPS]

    def counts(self) -> dict[str, int]:
        """Objects in view now, per label."""
        out: dict[str, int] = {}
        for t in self.visible():
            out[t.label] = out.get(t.label, 0) + 1
        return out

    def _event(self, kind: EventKind, track: Track, now: float) -> Event:
        after = track.state()
        event = Event(kind, track, track.reported or after, after)
        track.reported, track.last_reported = after, now
        return event


class BoxDistance:
    """norfair's distance between detections and objects' predicted boxes (``[x_min, y_min, x_max,
    y_max]`` rows): ``1 - IoU`` plus the height change's cost (``HEIGHT_WEIGHT * |log(h_det /
    h_pred)|``, at most ``HEIGHT_CAP``), for pairs whose IoU is over ``min_iou``; others never match
    (their distance is past :func:`box_distance_threshold`)."""

    def __init__(self, min_iou: float) -> None:
        self.min_iou = min_iou

    def __call__(self, candidates: np.ndarray, objects: np.ndarray) -> np.ndarray:
        import norfair

        distance = norfair.distances.iou(candidates, objects)  # 1 - IoU, (candidates, objects)
        heights = np.log(np.maximum(candidates[:, 3] - candidates[:, 1], 1))[:, None] - np.log(
            np.maximum(objects[:, 3] - objects[:, 1], 1))[None, :]  # an inverted predicted box: height 1
        return np.where(distance < 1 - self.min_iou,
                        distance + np.minimum(HEIGHT_WEIGHT * np.abs(heights), HEIGHT_CAP), np.inf)


def box_distance_threshold(config: TrackingConfig) -> float:
    """norfair's ``distance_threshold`` for :class:`BoxDistance`: any pair with an IoU over
    ``min_iou`` may match, whatever its height change."""
    return 1 - config.min_iou + HEIGHT_CAP


def _box(d: Located) -> Box:
    p = d.prediction
    return int(p.x_min), int(p.y_min), int(p.x_max), int(p.y_max)

