"""Per-frame detections → objects, with norfair (the tracker Frigate uses): a Kalman filter per
object predicts where its box will be, and detections are matched to the predictions, per label, by a
distance of our own given to norfair (:class:`BoxDistance`): 1 - IoU plus a capped cost of the box's
change of height and foot line, so someone passing in front (nearer the camera: taller, lower in the
frame) does not take the object of the person they hide; pairs with an IoU under ``min_iou`` never
match, except that an object found only once (no velocity yet) may take a detection of its size
close by. An object is reported (its ``new`` event) once it has been found in ``confirm_frames``
detections, or in all but one and hidden behind other detections in that one (one not yet confirmed
is dropped when missed twice in a row, unless other detections hide it), counts as in view while the
latest detections find it (or missed it for at most ``count_grace_s``), and ends (``end``) when
unseen for ``end_after_s``.

Frames the motion gate finds unchanged confirm what the last detection saw (:meth:`Tracker.unchanged`),
so a parked car or a person sitting still stays one object with no inference; a detection re-checks
them every ``recheck_every_s`` (:meth:`Tracker.needs_detection`).

norfair is imported on first use (:func:`load_library`): it brings scipy, which the daemon does not
need until a camera runs.
"""

from __future__ import annotations

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
# matching cost of a change of shape, besides 1 - IoU: HEIGHT_WEIGHT * |log(detected height / predicted
# height)| + FOOT_WEIGHT * |foot line moved| / predicted height, at most SHAPE_CAP. One person's box keeps
# its height and foot line from frame to frame; someone passing in front of another is nearer the
# camera, so taller and lower in the frame, and no longer takes the hidden one's object. Capped, as a
# box can shrink to the part of someone that others leave in view.
HEIGHT_WEIGHT, FOOT_WEIGHT, SHAPE_CAP = 4.0, 2.5, 0.5  # FOOT_WEIGHT 2 to 3 scored alike on hall seeds 0-30
# An object found once has no velocity yet: norfair predicts it where it was, and someone walking fast,
# or coming in at the edge (their box growing), can overlap that by less than min_iou. A detection of
# about its height within REACH heights a second may still match it, after every pair that overlaps
# enough; only while it was missed at most YOUNG_MISSES times, as norfair's filter takes a jump over
# several frames for one frame's velocity, and loses the object on the next frame anyway.
REACH, YOUNG_MISSES = 1.5, 1
STILL_IOU = 0.6  # a box overlapping where the object stopped this much has not moved (Frigate's rule)
_EPS = 1e-6


def load_library() -> Any:
    """Import norfair (about half a second here: run it off the event loop)."""
    import norfair

    return norfair


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
    sub_label: tuple[str, float] | None = None  # who it is (a recognised face, a known plate) and how sure
    plate: tuple[str, float] | None = None      # its licence plate as read, and how sure (Frigate's
                                                # recognized_license_plate)


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
    hidden: int = 0  # detections that missed it while others hid it, before it was confirmed
    unexplained: int = 0  # of those, the ones where no other detections covered it (it may have gone)
    last_reported: float = 0.0
    reported: ObjectState | None = None  # as its last event showed it: the next event's ``before``
    sub_label: tuple[str, float] | None = None  # set by a later stage (face recognition): name, score
    plate: tuple[str, float] | None = None  # set by the plate stage: text, score

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
                           self.sub_label, self.plate)


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
        found, missed = self._match(detections, now, wall)
        events: list[Event] = []
        for track, zones_changed in found:
            changed = track.settle(now, self.config.stationary_after_s) or zones_changed
            if not track.confirmed and self._confirms(track):
                track.confirmed = True
                events.append(self._event("new", track, now))
            elif track.confirmed and (changed or now - track.last_reported >= self.config.update_every_s - _EPS):
                events.append(self._event("update", track, now))
        for track in self._excuse_hidden(missed, detections, now):
            if self._confirms(track):
                track.confirmed = True
                events.append(self._event("new", track, now))
        dropped = [obj for obj, t in self._tracks.items() if not t.confirmed and t.unexplained > TENTATIVE_MISSES]
        self._forget(dropped)
        return events + self.expire(now)

    def _match(self, detections: list[Located], now: float,
               wall: float) -> tuple[list[tuple[Track, bool]], list[tuple[Track, Any]]]:
        """Run norfair on the detections; returns the tracks found (with whether their zones changed,
        and started or moved as need be) and the unconfirmed ones missed (with their norfair objects)."""
        norfair = load_library()
        impl = self._impl or self._start(norfair)
        impl.distance_function.now = now
        points = np.array([(p.x_min, p.y_min, p.x_max, p.y_max) for p in (d.prediction for d in detections)],
                          float).reshape(-1, 2, 2)
        impl.update([norfair.Detection(box, label=d.prediction.label, data=(self._frame, d))
                     for box, d in zip(points, detections)])
        found: list[tuple[Track, bool]] = []
        missed: list[tuple[Track, Any]] = []
        for obj in impl.tracked_objects:
            obj.hit_counter = NEVER_DIES  # norfair predicts and matches; when an object ends is decided here
            frame, d = obj.last_detection.data
            track = self._tracks.get(obj)
            if track is None:
                track = self._tracks[obj] = Track.start(d, now, wall)
            if frame == self._frame:
                found.append((track, track.seen(d, now, wall)))
                if _iou(track.box, track.anchor) < STILL_IOU:
                    track.moved(now)
            else:
                track.missed += 1
                if not track.confirmed:
                    missed.append((track, obj))
        return found, missed

    def _start(self, norfair: Any) -> Any:
        """Make the norfair Tracker. Every object is "initialized" for norfair, so all are matched in one
        round, nearest first (norfair matches its initialized objects before the new ones: an object
        hidden behind a newcomer would take the newcomer's detection); confirmation is counted here."""
        self._impl = norfair.Tracker(distance_function="iou", distance_threshold=box_distance_threshold(self.config),
                                     hit_counter_max=NEVER_DIES, initialization_delay=0, past_detections_length=0,
                                     filter_factory=norfair.filter.OptimizedKalmanFilterFactory(
                                         vel_variance=VELOCITY_VARIANCE))
        # norfair's constructor takes a distance's name or a per-pair function; ours, a whole matrix per
        # frame, goes in its place
        self._impl.distance_function = BoxDistance(self.config.min_iou, self._tracks)
        return self._impl

    def _confirms(self, track: Track) -> bool:
        """Whether an object not yet confirmed is: found in ``confirm_frames`` detections, or in all but
        one and hidden behind others in that one (someone who comes into view partly behind others).
        Never on one detection; nor once hidden more than once, as by then its own detections may
        have gone to another object."""
        need = self.config.confirm_frames
        return track.hits >= need or (track.hidden == 1 and track.hits >= max(2, need - 1))

    def _excuse_hidden(self, missed: list[tuple[Track, Any]], detections: list[Located], now: float) -> list[Track]:
        """Objects not yet confirmed that the detections missed: a miss counts against one unless the
        other detections cover at least ``HIDDEN_COVER`` of its predicted box (norfair's estimate), for
        up to ``count_grace_s`` since it was last seen: someone passing in front hides it, it has not gone.
        Returns the hidden ones."""
        if not missed:
            return []
        grace = min(self.config.count_grace_s, self.end_after_s)
        cover = np.zeros(len(missed))
        if detections:
            predicted = np.array([obj.estimate for _, obj in missed]).reshape(-1, 4)
            boxes = np.array([_box(d) for d in detections], float)
            cover = _intersections(predicted, boxes).sum(axis=1) / np.maximum(_area(predicted), 1)  # summed
        hidden = []
        for (track, _), share in zip(missed, cover):
            if share < HIDDEN_COVER or now - track.last_seen > grace + _EPS:
                track.unexplained += 1
            else:
                track.hidden += 1
                hidden.append(track)
        return hidden

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

    def read_plate(self, track: Track, text: str, score: float, now: float, name: str | None = None) -> Event | None:
        """Give ``track`` its licence plate as read (and, for a known plate, its ``name`` as sub label);
        the ``update`` event that reports it, or None while the object is not confirmed (its ``new``
        event will carry it)."""
        track.plate = (text, score)
        if name is not None:
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
    """norfair's distance (its ``Distance`` interface: a matrix, detections by objects) between detections
    and objects' predicted boxes, for pairs of one label: ``1 - IoU`` plus the shape cost (at most
    ``SHAPE_CAP``) where the IoU is over ``min_iou``; for an object found once, :meth:`reach` besides.
    Other pairs never match (their distance is past :func:`box_distance_threshold`). ``tracks``: the
    tracker's objects, for how often and when each was found."""

    def __init__(self, min_iou: float, tracks: dict[Any, Track]) -> None:
        self.min_iou, self.tracks = min_iou, tracks
        self.now = 0.0  # the frame's time: the tracker sets it before each match

    def get_distances(self, objects: list[Any], candidates: list[Any] | None) -> np.ndarray:
        if not objects or not candidates:
            return np.full((len(candidates or ()), len(objects)), np.inf)
        boxes = np.array([c.points for c in candidates]).reshape(-1, 4)
        predicted = np.array([o.estimate for o in objects]).reshape(-1, 4)
        distance = self.cost(boxes, predicted)
        young = [(i, self.now - t.last_seen) for i, o in enumerate(objects)
                 if (t := self.tracks.get(o)) is not None and t.hits == 1 and t.missed <= YOUNG_MISSES]
        if young:
            columns, elapsed = (list(c) for c in zip(*young))
            distance[:, columns] = np.minimum(distance[:, columns],
                                              self.reach(boxes, predicted[columns], np.array(elapsed)))
        if len({c.label for c in candidates} | {o.label for o in objects}) > 1:
            distance[np.array([c.label for c in candidates], object)[:, None]
                     != np.array([o.label for o in objects], object)[None, :]] = np.inf
        return distance

    def cost(self, boxes: np.ndarray, predicted: np.ndarray) -> np.ndarray:
        """``1 - IoU`` plus the shape cost, between ``boxes`` and ``predicted`` boxes (rows ``[x_min,
        y_min, x_max, y_max]``)."""
        b0, b1, b2, b3 = boxes.T[:, :, None]  # columns, against the rows of predicted
        p0, p1, p2, p3 = predicted.T
        bh, ph = b3 - b1, p3 - p1
        inter = (np.maximum(np.minimum(b2, p2) - np.maximum(b0, p0), 0)
                 * np.maximum(np.minimum(b3, p3) - np.maximum(b1, p1), 0))
        iou = inter / np.maximum((b2 - b0) * bh + (p2 - p0) * ph - inter, _EPS)  # 0 for an inverted predicted box
        height = np.maximum(ph, 1)
        shape = HEIGHT_WEIGHT * np.abs(np.log(np.maximum(bh, 1) / height)) + FOOT_WEIGHT * np.abs(b3 - p3) / height
        return np.where(iou > self.min_iou, 1 - iou + np.minimum(shape, SHAPE_CAP), np.inf)

    def reach(self, boxes: np.ndarray, seen: np.ndarray, elapsed: np.ndarray) -> np.ndarray:
        """Distances to objects found once, ``elapsed`` seconds ago, at ``seen``: detections whose height
        is within the shape cost's cap of theirs and whose centre is within ``REACH`` heights a second
        match after any pair over ``min_iou`` (``1 - min_iou`` plus up to ``SHAPE_CAP``, the
        further or the more resized the more)."""
        height = np.maximum(seen[:, 3] - seen[:, 1], 1)
        moved = (boxes[:, None, :2] + boxes[:, None, 2:] - seen[:, :2] - seen[:, 2:]) / 2  # centre to centre
        far = np.hypot(moved[..., 0], moved[..., 1]) / (REACH * height * np.maximum(elapsed, _EPS))
        resized = HEIGHT_WEIGHT / SHAPE_CAP * np.abs(np.log(np.maximum(boxes[:, 3] - boxes[:, 1], 1)[:, None] / height))
        worst = np.maximum(far, resized)
        return np.where(worst < 1, 1 - self.min_iou + SHAPE_CAP * worst, np.inf)


def _intersections(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Areas of overlap of every box in ``a`` with every box in ``b``."""
    w = np.minimum(a[:, None, 2], b[:, 2]) - np.maximum(a[:, None, 0], b[:, 0])
    h = np.minimum(a[:, None, 3], b[:, 3]) - np.maximum(a[:, None, 1], b[:, 1])
    return np.maximum(w, 0) * np.maximum(h, 0)


def _iou(a: Box, b: Box) -> float:
    """IoU of two boxes (plain Python: for one pair, numpy costs more than it saves)."""
    inter = max(min(a[2], b[2]) - max(a[0], b[0]), 0) * max(min(a[3], b[3]) - max(a[1], b[1]), 0)
    return inter / max((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter, _EPS)


def _area(boxes: np.ndarray) -> np.ndarray:
    return np.maximum(boxes[..., 2] - boxes[..., 0], 0) * np.maximum(boxes[..., 3] - boxes[..., 1], 0)


def box_distance_threshold(config: TrackingConfig) -> float:
    """norfair's ``distance_threshold`` for :class:`BoxDistance`: any pair with an IoU over
    ``min_iou`` may match, whatever its change of shape."""
    return 1 - config.min_iou + SHAPE_CAP


def _box(d: Located) -> Box:
    p = d.prediction
    return int(p.x_min), int(p.y_min), int(p.x_max), int(p.y_max)

