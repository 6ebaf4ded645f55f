"""A small IoU tracker: per-frame detections → object events, so one person walking past is
one event (new, a few updates, end), not one message per frame."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Literal


from edgewatch.daemon.pipeline.filters import Located

EventKind = Literal["new", "update", "end"]


@dataclass
class Track:
    id: str
    label: str
    box: tuple[int, int, int, int]
    score: float
    top_score: float
    zones: tuple[str, ...]
    first_seen: float
    last_seen: float
    last_reported: float = 0.0
    first_seen_wall: float = 0.0  # Unix time, for event payloads
    last_seen_wall: float = 0.0


@dataclass(frozen=True)
class Event:
    kind: EventKind
    track: Track


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0, x2 - x1) * max(0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Tracker:
    """``end_after_s``: an object unseen that long has left; ``update_every_s``: at most one update
    event per object per this many seconds (more when its zones change)."""

    camera: str
    match_iou: float = 0.3
    end_after_s: float = 5.0
    update_every_s: float = 5.0
    tracks: dict[str, Track] = field(default_factory=dict)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def update(self, detections: list[Located], now: float) -> list[Event]:
        events: list[Event] = []
        unmatched = list(range(len(detections)))
        # greedy matching, best IoU first, same label only
        pairs = sorted(((_iou(t.box, self._box(detections[i])), tid, i) for tid, t in self.tracks.items()
                        for i in unmatched if detections[i].prediction.label == t.label), reverse=True)
        used_tracks: set[str] = set()
        for score, tid, i in pairs:
            if score < self.match_iou or tid in used_tracks or i not in unmatched:
                continue
            used_tracks.add(tid)
            unmatched.remove(i)
            t, d = self.tracks[tid], detections[i]
            zones_changed = d.zones != t.zones
            t.box, t.score, t.zones, t.last_seen = self._box(d), d.prediction.confidence, d.zones, now
            t.last_seen_wall = time.time()
            t.top_score = max(t.top_score, t.score)
            if zones_changed or now - t.last_reported >= self.update_every_s:
                t.last_reported = now
                events.append(Event("update", t))
        for i in unmatched:
            d = detections[i]
            t = Track(id=f"{self.camera}-{int(now)}-{next(self._ids)}", label=d.prediction.label, box=self._box(d),
                      score=d.prediction.confidence, top_score=d.prediction.confidence, zones=d.zones,
                      first_seen=now, last_seen=now, last_reported=now, first_seen_wall=time.time(),
                      last_seen_wall=time.time())
            self.tracks[t.id] = t
            events.append(Event("new", t))
        for tid in [tid for tid, t in self.tracks.items() if now - t.last_seen >= self.end_after_s]:
            events.append(Event("end", self.tracks.pop(tid)))
        return events

    def counts(self) -> dict[str, int]:
        """Objects present now, per label."""
        out: dict[str, int] = {}
        for t in self.tracks.values():
            out[t.label] = out.get(t.label, 0) + 1
        return out

    @staticmethod
    def _box(d: Located) -> tuple[int, int, int, int]:
        p = d.prediction
        return int(p.x_min), int(p.y_min), int(p.x_max), int(p.y_max)



