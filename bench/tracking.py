"""Camera tracking benchmark, on the test scenes whose truth is known (daemon/testing/scenes.py).

    python bench/tracking.py [--hall-seeds 10] [--hall-first-seed 13] [--still-seconds 30] [--no-detector]

1. The scripted scenes (crossing with an occlusion, a minute standing still, flicker, two side by
   side) and the busy hall (80 s, up to 8 people at once; several seeds), as per-frame detections
   from the truth: MOTA and IDF1 (motmetrics, IoU >= 0.5, of what Home Assistant sees: the objects
   counted in view), ID switches per 100 object-frames, `new` and `end` events per true person
   (and new!=1: the people with no `new` or more than one, plus false objects that got one),
   count errors on the frames where no one came or left within the reporting delays (the truth
   being the people in view whom a detection has found by then: someone who walks in hidden
   behind others cannot be counted before they are seen, nor confirmed before their
   `confirm_frames`-th detection), and the tracker's time per frame.
2. The lobby: people cut out of real photos walking over a real photo, through the real default
   detector (nanodet) on every frame; the same figures, and the tracker's time as a share of one
   inference measured in the same run.
3. A still scene: the camera worker on the lobby with one person standing, at 5 fps in real time:
   CPU of the worker path (motion gate, tracker, re-check detections; no video decode) as a share
   of one core, and how many detections ran.
Needs the test extra (motmetrics); 2 and 3 install nanodet into a temporary data dir from the
conversion cache.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from edgewatch.daemon.config import load_settings
from edgewatch.daemon.modules.detection import DetectionModule
from edgewatch.daemon.inference_queue import InferenceQueue
from edgewatch.daemon.paths import default_cache_dir
from edgewatch.daemon.pipeline.camera_worker import CameraWorker
from edgewatch.daemon.pipeline.filters import apply
from edgewatch.daemon.pipeline.rules import DetectConfig, FilterConfig
from edgewatch.daemon.pipeline.tracker import load_library
from edgewatch.daemon.testing import scenes  # the scenes and scoring the tests use
from edgewatch.daemon.testing.photo_scene import detected, lobby
from edgewatch.daemon.testing.replay import Replay, replay
from edgewatch.models.installer import install
from edgewatch.models.photos import ensure_photos
from edgewatch.models.store import ModelStore

FILTERS = FilterConfig(labels=["person"], min_confidence=0.5)
HEADER = (f"{'scene':<24}{'frames':>7}{'people':>7}{'MOTA':>7}{'IDF1':>7}{'IDsw':>6}{'sw/100':>7}{'new/p':>7}"
          f"{'new!=1':>7}{'end/p':>7}{'count err':>11}{'ghosts':>7}{'objs/fr':>8}{'ms/fr':>7}{'p95':>6}")


def figures(r: Replay) -> dict[str, float]:
    people = [w.name for w in r.scene.walkers if r.scene.in_view(w.name)]
    new, end = r.per_person("new"), r.per_person("end")
    summary = r.summary()
    times = [s * 1000 for s in r.seconds]
    return {"frames": len(r.scene.frames), "people": len(people), "mota": summary["mota"], "idf1": summary["idf1"],
            "switches": summary["num_switches"], "objects": summary["num_objects"],
            "new": sum(new.values()), "end": sum(end.values()), "false_new": new.get(None, 0),
            "odd_new": sum(n is None or count != 1 for n, count in new.items()),
            "count_errors": len(r.count_errors()), "settled": len(r.settled()),
            "ghosts": sum(c > most for c, most in zip(r.counts, r.recently_in_view())),
            "detections": sum(len(f.detections) for f in r.scene.frames),
            "ms": statistics.fmean(times), "p95": float(np.percentile(times, 95)), "ms_total": sum(times)}


def line(name: str, f: dict[str, float]) -> str:
    per = f["people"] or 1
    return (f"{name:<24}{f['frames']:>7.0f}{f['people']:>7.0f}{f['mota']:>7.3f}{f['idf1']:>7.3f}{f['switches']:>6.0f}"
            f"{100 * f['switches'] / max(f['objects'], 1):>7.2f}{f['new'] / per:>7.2f}{f['odd_new']:>7.0f}"
            f"{f['end'] / per:>7.2f}"
            f"{f['count_errors']:>5.0f}/{f['settled']:<5.0f}{f['ghosts']:>7.0f}{f['detections'] / f['frames']:>8.1f}"
            f"{f['ms']:>7.3f}{f['p95']:>6.2f}")


def total(rows: list[dict[str, float]]) -> dict[str, float]:
    out = {k: sum(r[k] for r in rows) for k in rows[0]}
    weights = [r["objects"] for r in rows]
    for k in ("mota", "idf1"):
        out[k] = float(np.average([r[k] for r in rows], weights=weights))
    out["ms"] = out["ms_total"] / out["frames"]
    out["p95"] = max(r["p95"] for r in rows)
    return out


class StillCamera:
    """A camera at 5 fps in real time showing one frame, with a little sensor noise (10 noisy copies,
    made up front so that making frames costs nothing here)."""

    def __init__(self, frame: np.ndarray, fps: float = 5) -> None:
        rng = np.random.default_rng(0)
        self.frames = [np.clip(frame.astype(np.int16) + rng.integers(-3, 4, frame.shape), 0, 255).astype(np.uint8)
                       for _ in range(10)]
        self.period, self.start = 1 / fps, time.monotonic()

    def latest(self, after_seq: int):
        seq = int((time.monotonic() - self.start) / self.period) + 1
        return (seq, self.frames[seq % 10], time.time()) if seq > after_seq else None


class NoSink:
    def camera_update(self, camera, events, counts, frame, visible) -> None:
        pass


async def still_scene(module: DetectionModule, frame: np.ndarray, seconds: float) -> tuple[float, int, int, dict]:
    queue = InferenceQueue(1, 4)
    worker = CameraWorker("still", StillCamera(frame), DetectConfig(model="nanodet", filters=FILTERS), module, queue,
                          NoSink())
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(12)  # the person is confirmed, and the motion gate has learnt the scene
    t = os.times()
    c0, w0, d0, f0 = t.user + t.system, time.perf_counter(), worker.detections, worker.frames
    await asyncio.sleep(seconds)
    t = os.times()
    cpu = (t.user + t.system - c0) / (time.perf_counter() - w0)
    counts = worker.tracker.counts()
    worker.stop()
    await task
    queue.close()
    return cpu, worker.detections - d0, worker.frames - f0, counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hall-seeds", type=int, default=10)
    ap.add_argument("--hall-first-seed", type=int, default=13, help="e.g. 0 with --hall-seeds 31: seeds 0 to 30")
    ap.add_argument("--still-seconds", type=float, default=30)
    ap.add_argument("--no-detector", action="store_true", help="skip the parts that need the real detector")
    args = ap.parse_args()
    load_library()  # its import is not the tracker's time
    print(HEADER)
    scripted = []
    for make in (scenes.crossing, scenes.standing, scenes.flicker, scenes.side_by_side):
        scripted.append(figures(replay(make())))
        print(line(make.__name__, scripted[-1]))
    halls = [figures(replay(scenes.hall(seed=args.hall_first_seed + i))) for i in range(args.hall_seeds)]
    print(line(f"hall (seed {args.hall_first_seed})", halls[0]))
    print(line(f"hall x{args.hall_seeds} seeds", total(halls)))
    everything = total(scripted + halls)
    print(line("all synthetic", everything))
    if args.no_detector:
        return
    cache = Path(os.environ.get("EDGEWATCH_CACHE_DIR") or default_cache_dir())
    photos = ensure_photos(cache)
    with tempfile.TemporaryDirectory() as tmp:
        install("nanodet", ModelStore(Path(tmp) / "models"), cache)
        config = load_settings(data_dir=Path(tmp), cache_dir=cache)
        module = DetectionModule(config, ModelStore(config.models_dir), {})
        module.start()
        detector, allowed = module.resolve("nanodet")
        inference_ms: list[float] = []

        def detect(frame: np.ndarray):
            out = detector.detect_frame(frame, FILTERS.min_confidence, module.settings, allowed)
            inference_ms.append(out.inference_ms)
            return apply(out.predictions, FILTERS, frame.shape[1], frame.shape[0])

        scene = lobby(photos)
        real = figures(replay(detected(scene, detect)))
        print(line("lobby (nanodet)", real))
        inf = statistics.median(inference_ms)
        print(f"\ninference p50 (nanodet, this run): {inf:.2f} ms")
        for name, f in (("lobby (nanodet)", real), (f"hall x{args.hall_seeds}, up to 8 in view", total(halls)),
                        ("all synthetic", everything)):
            print(f"tracker per frame, {name}: mean {f['ms']:.3f} ms = {f['ms'] / inf:.1%} of an inference "
                  f"({f['detections'] / f['frames']:.1f} objects a frame; "
                  f"p95 {f['p95']:.2f} ms = {f['p95'] / inf:.1%}); "
                  f"target <= 2%")
        cpu, detections, frames, counts = asyncio.run(still_scene(module, scene.frame(round(30 * scene.fps)),
                                                                  args.still_seconds))
        print(f"still scene, one person standing, {args.still_seconds:.0f} s at 5 fps: worker path CPU {cpu:.2%} of "
              f"one core (no video decode; target <= 5% with it), {detections} detections on {frames} frames, "
              f"counts {counts}")
        module.close()
    print("\ntargets: count errors 0 (settled frames); new/p = end/p = 1.00; sw/100 <= 1")


if __name__ == "__main__":
    main()
