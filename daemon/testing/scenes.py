"""Camera scenes with known truth, for the tracker's tests and bench/tracking.py.

People walk along scripted paths (foot point over time) through a 1280x720 frame at 5 fps. Each
frame has the truth (who is in view, and where) and what a detector reports: every person in view
whose box is not mostly hidden behind someone nearer the camera (larger foot y), with a few pixels
of jitter, except on scripted drop-outs; plus scripted false detections.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from edgewatch.daemon.modules.envelope import Prediction
from edgewatch.daemon.pipeline.filters import Located

WIDTH, HEIGHT, FPS = 1280, 720, 5.0
IN_VIEW = 0.5    # share of a box inside the frame for its person to count as in view
HIDDEN = 0.6     # share of a box covered by nearer people for the detector to miss it
JITTER = 0.02    # detector noise: standard deviation of each box edge, as a share of the box size

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Walker:
    """A person: foot point (x, y) at times t (seconds), straight lines in between; absent before the
    first and after the last point. ``size`` is the box (width, height) in pixels."""

    name: str
    path: tuple[tuple[float, float, float], ...]
    size: tuple[float, float] = (80, 220)
    label: str = "person"

    def box(self, t: float) -> Box | None:
        times = [p[0] for p in self.path]
        if t < times[0] or t > times[-1]:
            return None
        x = float(np.interp(t, times, [p[1] for p in self.path]))
        y = float(np.interp(t, times, [p[2] for p in self.path]))
        w, h = self.size
        return x - w / 2, y - h, x + w / 2, y


@dataclass(frozen=True)
class Frame:
    t: float
    truth: dict[str, Box]           # people in view (hidden ones included), by name
    detections: list[Located]
    seen: frozenset[str]            # the people among the detections (also someone mostly out of view)


def area(b: Box) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def overlap(a: Box, b: Box) -> float:
    return area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))


def clip(b: Box) -> Box:
    return max(0.0, b[0]), max(0.0, b[1]), min(float(WIDTH), b[2]), min(float(HEIGHT), b[3])


@dataclass(frozen=True)
class Scene:
    """``dropouts``: (name, frame index) the detector misses; ``false_positives``: (frame index, box)
    reported once, where nobody is."""

    name: str
    seconds: float
    walkers: tuple[Walker, ...]
    dropouts: frozenset[tuple[str, int]] = frozenset()
    false_positives: tuple[tuple[int, Box], ...] = ()
    seed: int = 0
    fps: float = FPS

    @cached_property
    def frames(self) -> list[Frame]:
        rng = np.random.default_rng(self.seed)
        labels = {w.name: w.label for w in self.walkers}
        out = []
        for i in range(int(self.seconds * self.fps)):
            t = i / self.fps
            truth = in_view(self.walkers, t)
            detections, seen = [], set()
            for name, box in truth.items():
                if (name, i) in self.dropouts or hidden(name, truth):
                    continue
                w, h = box[2] - box[0], box[3] - box[1]
                noisy = np.array(box) + rng.normal(0, JITTER, 4) * [w, h, w, h]
                detections.append(_located(labels[name], float(rng.uniform(0.6, 0.95)), clip(tuple(noisy))))
                seen.add(name)
            detections += [_located("person", 0.62, box) for frame, box in self.false_positives if frame == i]
            out.append(Frame(t, truth, detections, frozenset(seen)))
        return out

    def in_view(self, name: str) -> list[int]:
        """Indices of the frames in which ``name`` is in view."""
        return [i for i, f in enumerate(self.frames) if name in f.truth]


@dataclass(frozen=True)
class Recorded:
    """A scene whose detections came from elsewhere (a real detector on photo_scene.py's frames)."""

    name: str
    walkers: tuple[Walker, ...]
    frames: list[Frame]
    fps: float = FPS

    in_view = Scene.in_view


def in_view(walkers: tuple[Walker, ...], t: float) -> dict[str, Box]:
    """The people in view at ``t``: name -> box, clipped to the frame."""
    out = {}
    for w in walkers:
        b = w.box(t)
        if b is not None and overlap(b, (0, 0, WIDTH, HEIGHT)) >= IN_VIEW * area(b):
            out[w.name] = clip(b)
    return out


def hidden(name: str, truth: dict[str, Box]) -> bool:
    """Whether people nearer the camera (lower in the frame) cover most of ``name``'s box."""
    box = truth[name]
    covered = sum(overlap(box, other) for o, other in truth.items() if o != name and other[3] > box[3])
    return covered >= HIDDEN * area(box)


def _located(label: str, score: float, box: Box) -> Located:
    return Located(Prediction(label, score, int(box[0]), int(box[1]), int(box[2]), int(box[3])), ())


# ---- the scenes -----------------------------------------------------------------------------------

def crossing() -> Scene:
    """Ann walks in from the left, Bob from the right, further back; they cross (Ann, nearer the
    camera, hides Bob for a few frames) and walk out; one false detection on a wall."""
    ann = Walker("ann", ((0.0, -60, 640), (16.0, 1340, 640)), (90, 250))
    bob = Walker("bob", ((1.0, 1340, 600), (17.0, -60, 600)), (80, 220))
    return Scene("crossing", 20, (ann, bob), false_positives=((40, (1000, 80, 1060, 240)),))


def standing() -> Scene:
    """Cat walks in and stands still for a minute; Dan walks past in front of her meanwhile; then she
    walks out."""
    cat = Walker("cat", ((0.0, -50, 560), (5.0, 500, 560), (65.0, 500, 560), (71.0, 1330, 560)), (80, 230))
    dan = Walker("dan", ((20.0, 1340, 680), (32.0, -60, 680)), (95, 270))
    return Scene("standing", 75, (cat, dan))


def flicker() -> Scene:
    """Eve walks across; the detector misses her for one frame, four times."""
    eve = Walker("eve", ((0.0, -50, 620), (14.0, 1330, 620)), (85, 240))
    return Scene("flicker", 16, (eve,), dropouts=frozenset({("eve", i) for i in (12, 25, 31, 52)}))


def side_by_side() -> Scene:
    """Fay and Gus walk in together, side by side (their boxes almost touch), and out again."""
    fay = Walker("fay", ((0.0, -60, 620), (14.0, 1340, 620)), (85, 240))
    gus = Walker("gus", ((0.0, -150, 630), (15.0, 1350, 630)), (85, 245))
    return Scene("side_by_side", 16, (fay, gus))


def hall(seconds: float = 80, most: int = 8, seed: int = 13) -> Scene:
    """People walking through a hall for ``seconds``, never more than ``most`` in view at once: random
    (seeded) straight walks from one side to the other, sizes and paces by depth. A walk that
    would leave someone hidden for more than 3 frames on end is drawn again: the tracker bridges
    short occlusions; a long one is a re-identification problem, not this tracker's."""
    rng = np.random.default_rng(seed)
    n = int(seconds * FPS)
    walkers: list[Walker] = []
    views: list[dict[str, Box]] = [{} for _ in range(n)]
    t = 0.0
    while t < seconds - 8:
        t += float(rng.exponential(1.6))
        for _ in range(50):
            w = _random_walk(rng, f"p{len(walkers):02d}", t)
            trial = [v | in_view((w,), i / FPS) for i, v in enumerate(views)]
            involved = {name for v in trial if w.name in v for name in v}
            if max(len(v) for v in trial) <= most and all(_longest_hidden(trial, p) <= 3 for p in involved):
                walkers.append(w)
                views = trial
                break
    return Scene("hall", seconds, tuple(walkers), seed=seed)


def _random_walk(rng: np.random.Generator, name: str, start: float) -> Walker:
    """A walk across, at 0.5-1.5x walking pace (a person walks about 0.8 of their height a second)."""
    y0, y1 = rng.uniform(330, 715, 2)
    x0, x1 = (-80, WIDTH + 80) if rng.random() < 0.5 else (WIDTH + 80, -80)
    h = 300 * (y0 + y1) / 2 / HEIGHT
    duration = float(np.hypot(x1 - x0, y1 - y0) / (0.8 * h * rng.uniform(0.5, 1.5)))
    return Walker(name, ((start, x0, y0), (start + duration, x1, y1)), (0.38 * h, h))


def _longest_hidden(views: list[dict[str, Box]], name: str) -> int:
    longest = run = 0
    for v in views:
        run = run + 1 if name in v and hidden(name, v) else 0
        longest = max(longest, run)
    return longest

