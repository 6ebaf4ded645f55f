"""Detection benchmark: raw inference vs the daemon end to end, measured in one run.

    python bench/detection.py [--model nanodet] [--photo bus] [--requests 60] [--clients 8]

Installs the model into a temporary data dir (reusing the conversion cache), then prints:
raw ONNX Runtime p50 of the variant the daemon uses, end-to-end HTTP p50 of
/v1/vision/detection, their ratio, 8-client vs sequential throughput (and errors), the
daemon's peak RSS, and seconds from process start to the first answered ping.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import DaemonProcess  # noqa: E402  (the same real-process harness the tests use)

from edgewatch.backends.onnxruntime_cpu import OnnxRuntimeCpuBackend  # noqa: E402
from edgewatch.daemon.paths import default_cache_dir  # noqa: E402
from edgewatch.models.installer import install  # noqa: E402
from edgewatch.models.photos import ensure_photos  # noqa: E402
from edgewatch.models.preprocess import letterbox  # noqa: E402
from edgewatch.models.store import ModelStore  # noqa: E402


def p50(xs: list[float]) -> float:
    return statistics.median(xs)


def raw_inference_ms(store: ModelStore, name: str, image_path: Path, runs: int) -> tuple[float, str]:
    manifest = store.get(name)
    backend = OnnxRuntimeCpuBackend()
    backend.load(store.path(manifest), manifest)
    tensor, _ = letterbox(cv2.imread(str(image_path)), manifest.input, manifest.preprocessing)
    warm_until = time.perf_counter() + 3  # this CPU needs seconds of work to reach steady speed
    while time.perf_counter() < warm_until:
        backend.infer(tensor)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        backend.infer(tensor)
        times.append((time.perf_counter() - t0) * 1000)
    backend.close()
    return p50(times), manifest.default_variant


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all cores, from /proc/stat."""
    vals = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = vals[3] + vals[4]
    return sum(vals) - idle, sum(vals)


class Meter:
    """Daemon CPU per request and whole-machine utilisation over a phase."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def __enter__(self) -> "Meter":
        self.cpu0, self.m0 = cpu_seconds(self.pid), machine_busy()
        return self

    def __exit__(self, *exc: object) -> None:
        m1 = machine_busy()
        self.daemon_cpu = cpu_seconds(self.pid) - self.cpu0
        self.busy = (m1[0] - self.m0[0]) / max(1, m1[1] - self.m0[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="nanodet")
    ap.add_argument("--photo", default="bus")
    ap.add_argument("--requests", type=int, default=60)
    ap.add_argument("--clients", type=int, default=8)
    args = ap.parse_args()

    cache = Path(os.environ.get("EDGEWATCH_CACHE_DIR") or default_cache_dir())
    photo = ensure_photos(cache, [args.photo])[args.photo]
    image = photo.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        store = ModelStore(data / "models")
        install(args.model, store, cache)
        raw_ms, variant = raw_inference_ms(store, args.model, photo, args.requests)

        daemon = DaemonProcess(data, cache, env={"EDGEWATCH_DETECTION_MODEL": args.model})
        start_s = daemon.start()
        url = daemon.url + "/v1/vision/detection"
        try:
            with httpx.Client(timeout=60) as client:
                warm_until = time.perf_counter() + 3
                while time.perf_counter() < warm_until:
                    client.post(url, files={"image": image})
                seq, server_ms = [], []
                t_seq = time.perf_counter()
                with Meter(daemon.proc.pid) as seq_meter:
                    for _ in range(args.requests):
                        t0 = time.perf_counter()
                        r = client.post(url, files={"image": image})
                        seq.append((time.perf_counter() - t0) * 1000)
                        server_ms.append(r.json()["inferenceMs"])
                seq_rps = args.requests / (time.perf_counter() - t_seq)

            def worker(n: int) -> list[int]:
                with httpx.Client(timeout=60) as c:
                    return [c.post(url, files={"image": image}).status_code for _ in range(n)]

            per_client = max(1, args.requests // args.clients) * 2
            t_con = time.perf_counter()
            with Meter(daemon.proc.pid) as con_meter, concurrent.futures.ThreadPoolExecutor(args.clients) as pool:
                codes = [c for chunk in pool.map(worker, [per_client] * args.clients) for c in chunk]
            con_rps = len(codes) / (time.perf_counter() - t_con)
            errors = sum(c != 200 for c in codes)
            rss = peak_rss_mb(daemon.proc.pid)
        finally:
            daemon.stop()

    e2e = p50(seq)
    h, w = cv2.imread(str(photo)).shape[:2]
    print(f"model {args.model} ({variant}), photo {args.photo} {w}x{h}, {os.cpu_count()} cores, "
          f"{args.requests} requests")
    print(f"raw inference p50            {raw_ms:8.2f} ms")
    print(f"end-to-end HTTP p50          {e2e:8.2f} ms   (daemon-reported inferenceMs p50 {p50(server_ms):.0f})")
    print(f"end-to-end / raw             {e2e / raw_ms:8.2f} x   (target <= 1.10)")
    print(f"sequential throughput        {seq_rps:8.2f} req/s   daemon CPU {seq_meter.daemon_cpu / args.requests * 1000:.1f} "
          f"core-ms/request, machine {seq_meter.busy:.0%} busy")
    print(f"{args.clients} clients throughput       {con_rps:8.2f} req/s   daemon CPU {con_meter.daemon_cpu / len(codes) * 1000:.1f} "
          f"core-ms/request, machine {con_meter.busy:.0%} busy; {errors} errors of {len(codes)}")
    print(f"concurrent / sequential      {con_rps / seq_rps:8.2f} x   (target >= 1.30)")
    print(f"daemon peak RSS              {rss:8.1f} MB   (target <= 300)")
    print(f"start to first ping          {start_s:8.2f} s    (target <= 3)")


if __name__ == "__main__":
    main()
