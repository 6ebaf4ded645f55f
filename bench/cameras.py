"""Camera pipeline benchmark on a real RTSP stream (GStreamer's RTSP server, loopback).

    python bench/cameras.py [--seconds 20]

1. Static scenes: a 1280x720 5 fps H.264 stream of one photo, empty (a coffee table) and with
   people standing still (bus.jpg: stationary objects the tracker keeps, re-checked by a detection
   every recheck_every_s); prints the CPU the whole camera path uses (reader + FFmpeg decode +
   motion gate + tracker + worker) as % of one core, how many inferences ran (a static scene
   should need almost none), and the people counted.
2. People come and go: 2 s of an empty table scene, then 2 s of a street with people, looping;
   prints the latency from the first frame with people the worker fetched to the `new` event,
   against the target 1.5 × inference p50 + confirm_frames frame intervals (an object is
   reported once that many detections have found it).
Needs the apt packages of tests/cameras (scripts/bootstrap-deps.sh --test).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from edgewatch.daemon.cameras.config import CameraConfig
from edgewatch.daemon.cameras.reader import CameraReader
from edgewatch.daemon.config import load_settings
from edgewatch.daemon.modules.detection import DetectionModule
from edgewatch.daemon.inference_queue import InferenceQueue
from edgewatch.daemon.paths import default_cache_dir
from edgewatch.daemon.pipeline.camera_worker import CameraWorker
from edgewatch.daemon.pipeline.rules import DetectConfig, FilterConfig
from edgewatch.daemon.testing.camera_support import RtspServer, free_port  # the RTSP server harness the tests use
from edgewatch.models.installer import install
from edgewatch.models.photos import ensure_photos
from edgewatch.models.store import ModelStore

FPS = 5


def cpu_s() -> float:
    t = os.times()
    return t.user + t.system


class Watch:
    """Wraps the reader: remembers when the worker fetched each frame and whether it shows the street."""

    def __init__(self, reader: CameraReader, street: np.ndarray) -> None:
        self.reader, self.street = reader, cv2.resize(street, (160, 90)).astype(np.int16)
        self.first_street: float | None = None
        self.in_street = False

    def latest(self, after_seq: int):
        item = self.reader.latest(after_seq)
        if item is not None:
            small = cv2.resize(item[1], (160, 90)).astype(np.int16)
            street = float(np.abs(small - self.street).mean()) < 20
            if street and not self.in_street:
                self.first_street = time.perf_counter()
            self.in_street = street
        return item


class Sink:
    def __init__(self, watch: Watch) -> None:
        self.watch, self.latencies = watch, []

    def camera_update(self, camera, events, counts, frame, visible) -> None:
        if any(e.kind == "new" and e.track.label == "person" for e in events) and self.watch.first_street:
            self.latencies.append((time.perf_counter() - self.watch.first_street) * 1000)
            self.watch.first_street = None


async def run(module, queue, url: str, seconds: float, street: np.ndarray) -> tuple[CameraWorker, Sink, float, float]:
    reader = CameraReader(CameraConfig(name="bench", url=url, fps=FPS)).start()
    watch = Watch(reader, street)
    sink = Sink(watch)
    worker = CameraWorker("bench", watch, DetectConfig(filters=FilterConfig(labels=["person"]), end_after_s=1.0),
                          module, queue, sink)
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(3)  # connect and settle
    c0, w0 = cpu_s(), time.perf_counter()
    d0 = worker.detections
    await asyncio.sleep(seconds)
    cpu = (cpu_s() - c0) / (time.perf_counter() - w0)
    worker.detections -= d0
    worker.stop()
    await task
    await asyncio.to_thread(reader.stop)
    return worker, sink, cpu, reader.state().fps_out


def frames(folder: Path, images: list[np.ndarray]) -> Path:
    folder.mkdir(parents=True)
    for i, img in enumerate(images):
        cv2.imwrite(str(folder / f"img{i:03d}.jpg"), cv2.resize(img, (1280, 720)))
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20)
    args = ap.parse_args()
    cache = Path(os.environ.get("EDGEWATCH_CACHE_DIR") or default_cache_dir())
    photos = ensure_photos(cache)
    empty, street = cv2.imread(str(photos["coffee"])), cv2.imread(str(photos["bus"]))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        install("nanodet", ModelStore(tmp / "data" / "models"), cache)
        config = load_settings(data_dir=tmp / "data", cache_dir=cache)
        module = DetectionModule(config, ModelStore(config.models_dir), {})
        module.start()
        queue = InferenceQueue(config.inference.workers, config.inference.queue_size)
        results = {}
        for name, images in (("static", [empty] * 10), ("still people", [street] * 10),
                             ("people", [empty] * 10 + [street] * 10)):
            server = RtspServer(frames(tmp / name, images), free_port(), tmp / f"{name}.log")
            server.start()
            try:
                results[name] = asyncio.run(run(module, queue, server.url, args.seconds, street))
            finally:
                server.stop()
        # inference p50 of the model the worker used, on a street frame, same process
        det = module.detector(module.default_model_name())
        frame = cv2.resize(street, (1280, 720))
        times = [det.detect_frame(frame, 0.5, module.settings).inference_ms for _ in range(30)]
        queue.close()
        module.close()
    worker, _, cpu, fps_out = results["static"]
    print(f"static 720p {FPS} fps stream for {args.seconds:.0f} s: camera path CPU {cpu:.1%} of one core "
          f"(target <= 5%), {worker.detections} inferences on {worker.frames} frames, reader fps_out {fps_out:.1f}")
    worker, _, cpu, fps_out = results["still people"]
    print(f"still 720p {FPS} fps stream of people standing (bus.jpg) for {args.seconds:.0f} s: camera path CPU "
          f"{cpu:.1%} of one core (target <= 5%), {worker.detections} inferences on {worker.frames} frames, "
          f"counted {worker.tracker.counts()}, reader fps_out {fps_out:.1f}")
    worker, sink, cpu, _ = results["people"]
    inf = statistics.median(times)
    # the `new` event waits for tracking.confirm_frames detections: the first frame plus confirm_frames - 1 more
    confirm = DetectConfig().tracking.confirm_frames
    target = 1.5 * inf + confirm * 1000 / FPS
    if sink.latencies:
        lat = statistics.median(sink.latencies)
        print(f"people entering: {len(sink.latencies)} arrivals, event latency p50 {lat:.0f} ms, max "
              f"{max(sink.latencies):.0f} ms; inference p50 {inf:.1f} ms; target 1.5 x inference + {confirm} frames = "
              f"{target:.0f} ms; ratio {lat / target:.2f}")
    else:
        print("people entering: no person events seen (check the model and stream)")
    print(f"people scene: camera path CPU {cpu:.1%} of one core, {worker.detections} inferences on {worker.frames} frames")


if __name__ == "__main__":
    main()
