"""Runs a scene's detections through the tracker and scores what it reported against the truth
(tests and bench/tracking.py). MOT figures come from motmetrics, with its IoU distance; motmetrics
(and the pandas it brings) is imported only when they are computed."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from edgewatch.daemon.pipeline.rules import TrackingConfig
from edgewatch.daemon.pipeline.tracker import Event, Tracker
from edgewatch.daemon.testing.scenes import Scene

if TYPE_CHECKING:
    import motmetrics as mm

MAX_DISTANCE = 0.5  # motmetrics' usual bound: a report and a true box match when their IoU is at least 0.5
WALL0 = 1_800_000_000.0  # the scene's wall-clock start, for event times


@dataclass
class Replay:
    scene: Scene
    config: TrackingConfig
    end_after_s: float
    events: list[tuple[int, Event]] = field(default_factory=list)  # (frame index, event)
    counts: list[int] = field(default_factory=list)                # person count after each frame
    reported: list[dict[str, tuple]] = field(default_factory=list)  # track id -> box, in view after each frame
    seconds: list[float] = field(default_factory=list)            # the tracker's time for each frame

    # -- what happened --------------------------------------------------------------------------------
    def kinds(self, kind: str) -> list[Event]:
        return [e for _, e in self.events if e.kind == kind]

    def owners(self) -> dict[str, str | None]:
        """Each reported track id → the person it followed most (None: nobody, a false object)."""
        acc, names, ids = self._accumulate()
        events = acc.mot_events
        matched = events[events.Type.isin(["MATCH", "SWITCH"])]
        owners: dict[str, str | None] = {e.track.id: None for e in self.kinds("new")}
        for hid, rows in matched.groupby("HId"):
            owners[ids[int(hid)]] = names[int(Counter(rows.OId).most_common(1)[0][0])]
        return owners

    def per_person(self, kind: str) -> dict[str, int]:
        """How many events of ``kind`` each person (who was ever in view) got; None for false objects."""
        owners = self.owners()
        out: dict = {w.name: 0 for w in self.scene.walkers if self.scene.in_view(w.name)}
        for e in self.kinds(kind):
            out[owners[e.track.id]] = out.get(owners[e.track.id], 0) + 1
        return out

    @cached_property
    def first_seen(self) -> dict[str, int]:
        """Each person's first frame in which a detection found them: until then, no detector (and so
        no tracker) can know they are there, hidden behind others since they came into view."""
        return self._nth_seen(1)

    @cached_property
    def confirmable(self) -> dict[str, int]:
        """Each person's frame of their ``confirm_frames``-th detection: from then on a tracker can have
        confirmed them (someone hidden right after they were first found is not seen in a few frames
        until later)."""
        return self._nth_seen(self.config.confirm_frames)

    def _nth_seen(self, n: int) -> dict[str, int]:
        out: dict[str, int] = {}
        times: Counter[str] = Counter()
        for i, f in enumerate(self.scene.frames):
            for name in f.seen:
                times[name] += 1
                if times[name] == n:
                    out[name] = i
        return out

    def visible_truth(self, i: int) -> set[str]:
        """The people in view in frame ``i`` who have been found by a detection by then (the hidden
        ones too, once seen): what a count of "objects in view" can know of."""
        first = self.first_seen
        return {n for n in self.scene.frames[i].truth if first.get(n, i + 1) <= i}

    def truth_counts(self) -> list[int]:
        return [len(self.visible_truth(i)) for i in range(len(self.scene.frames))]

    def settled(self) -> list[int]:
        """Frames whose truth has not changed for the reporting delays: from someone's first detection
        until their ``confirm_frames``-th, and ``count_grace_s`` after someone leaves the view (or the
        last detection that found them partly out of it)."""
        grace = round(min(self.config.count_grace_s, self.end_after_s) * self.scene.fps)
        frames, first, confirmable, out = self.scene.frames, self.first_seen, self.confirmable, []
        for i, f in enumerate(frames):
            came = any(first.get(n, i + 1) <= i < confirmable.get(n, i + 1) for n in f.truth)
            left = any(n not in f.truth for j in range(max(0, i - grace), i)
                       for n in frames[j].truth.keys() | frames[j].seen)
            if not came and not left:
                out.append(i)
        return out

    def recently_in_view(self) -> list[int]:
        """Per frame, how many people were in view in it or within the last ``count_grace_s``: the
        most the count may say."""
        grace = round(min(self.config.count_grace_s, self.end_after_s) * self.scene.fps)
        frames = self.scene.frames
        return [len({n for f in frames[max(0, i - grace):i + 1] for n in f.truth}) for i in range(len(frames))]

    def count_errors(self) -> list[tuple[int, int, int]]:
        """(frame, reported, true) for the settled frames where the count is wrong."""
        truth = self.truth_counts()
        return [(i, self.counts[i], truth[i]) for i in self.settled() if self.counts[i] != truth[i]]

    # -- MOT figures ----------------------------------------------------------------------------------
    def _accumulate(self) -> tuple[mm.MOTAccumulator, list[str], list[str]]:
        """The motmetrics accumulator, and the person names and track ids its numeric ids stand for."""
        import motmetrics as mm

        acc = mm.MOTAccumulator(auto_id=True)
        names = [w.name for w in self.scene.walkers]
        ids: list[str] = sorted({i for reported in self.reported for i in reported})
        index = {i: n for n, i in enumerate(ids)}
        for f, reported in zip(self.scene.frames, self.reported):
            people, tracks = list(f.truth), list(reported)
            truth = np.array([_xywh(f.truth[n]) for n in people], float).reshape(-1, 4)
            hyps = np.array([_xywh(reported[i]) for i in tracks], float).reshape(-1, 4)
            # motmetrics' iou_matrix uses np.asfarray, gone in numpy 2; boxiou is the IoU it computes with
            dist = 1 - mm.distances.boxiou(truth[:, None], hyps[None, :])
            acc.update([names.index(n) for n in people], [index[i] for i in tracks],
                       np.where(dist > MAX_DISTANCE, np.nan, dist))
        return acc, names, ids

    def summary(self) -> dict[str, float]:
        import motmetrics as mm

        metrics = mm.metrics.create().compute(self._accumulate()[0], metrics=[
            "mota", "idf1", "num_switches", "num_objects", "num_false_positives", "num_misses"], name=self.scene.name)
        return {k: float(v) for k, v in metrics.iloc[0].items()}


def _xywh(b: tuple) -> tuple[float, float, float, float]:
    return b[0], b[1], b[2] - b[0], b[3] - b[1]


def replay(scene: Scene, config: TrackingConfig | None = None, end_after_s: float = 5.0) -> Replay:
    """Every frame of ``scene`` through a fresh tracker, then empty frames until all have ended."""
    config = config or TrackingConfig()
    tracker = Tracker("test", end_after_s, config)
    out = Replay(scene, config, end_after_s)
    frames = scene.frames
    tail = int((end_after_s + 1) * scene.fps)
    for i in range(len(frames) + tail):
        detections = frames[i].detections if i < len(frames) else []
        t = i / scene.fps
        start = time.perf_counter()
        events = tracker.update(detections, now=t, wall=WALL0 + t)
        out.seconds.append(time.perf_counter() - start)
        out.events += [(i, e) for e in events]
        if i < len(frames):
            out.counts.append(tracker.counts().get("person", 0))
            out.reported.append({t.id: t.box for t in tracker.visible()})
    assert not tracker.tracks, "every object ends once nothing is seen"
    return out

