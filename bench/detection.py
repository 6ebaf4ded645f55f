"""Detection benchmark: raw inference, in-process detection and the daemon end to end, in one run.

    python bench/detection.py [--model nanodet] [--accept-licence AGPL-3.0] [--photo bus] [--requests 60] [--clients 8] [--rounds 6]

Installs the model into a temporary data dir (reusing the conversion cache) and starts the
daemon as a real process. This CPU's speed drifts by tens of percent over seconds, so every
comparison is interleaved: blocks of 10 raw inferences (the backend alone on the letterboxed
tensor), blocks of 10 in-process detections (the daemon's own Detector: JPEG bytes → decode →
letterbox → backend → decode/NMS) and blocks of 10 HTTP requests alternate, for the photo as
taken and as 1920x1080 and 3840x2160 snapshots. Two ratios come out of that: in-process / raw
(host decode and pre/post-processing) and HTTP / in-process (server and envelope); the answers'
inferenceMs and processMs are checked against the raw and in-process times. Then sequential and
concurrent phases alternate over several rounds (throughput with N clients, errors). Requests
come from a lean load generator (LeanClient) so that the client takes little of the CPU it
shares with the daemon. Also printed: CPU per request, the daemon's peak RSS, and seconds from
process start to the first answered ping.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import os
import json
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import httpx
import numpy as np

from edgewatch.backends.lanes import SPLIT_HOLD_S
from edgewatch.backends.registry import load_backend
from edgewatch.daemon.modules.detection import DetectionSettings, Detector
from edgewatch.daemon.imaging import decode_image
from edgewatch.daemon.malloc_tuning import keep_large_blocks
from edgewatch.daemon.paths import default_cache_dir
from edgewatch.daemon.testing.daemon_process import DaemonProcess  # the same real-process harness the tests use
from edgewatch.models.installer import install
from edgewatch.models.photos import ensure_photos
from edgewatch.models.runtime.preprocess import letterbox
from edgewatch.models.store import ModelStore


QUIET_S = 0.05  # pause between measurement blocks, so neither side's idle threads are still spinning


def p50(xs: list[float]) -> float:
    return statistics.median(xs)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all cores, from /proc/stat."""
    vals = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = vals[3] + vals[4]
    return sum(vals) - idle, sum(vals)


class Phase:
    """Accumulates wall time, request count, daemon CPU and machine busy share over several runs."""

    def __init__(self, pid: int) -> None:
        self.pid, self.wall, self.requests, self.cpu, self.busy, self.total = pid, 0.0, 0, 0.0, 0, 0
        self.client_cpu = 0.0

    def run(self, fn) -> list[int]:
        cpu0, (b0, t0), w0 = cpu_seconds(self.pid), machine_jiffies(), time.perf_counter()
        own0 = cpu_seconds(os.getpid())
        codes = fn()
        b1, t1 = machine_jiffies()
        self.wall += time.perf_counter() - w0
        self.cpu += cpu_seconds(self.pid) - cpu0
        self.client_cpu += cpu_seconds(os.getpid()) - own0
        self.busy, self.total = self.busy + b1 - b0, self.total + t1 - t0
        self.requests += len(codes)
        return codes

    def line(self) -> str:
        per = 1000 / self.requests
        return (f"{self.requests / self.wall:7.2f} req/s   core-ms/request: daemon {self.cpu * per:5.1f}, "
                f"client {self.client_cpu * per:4.1f}; machine {self.busy / max(1, self.total):.0%} busy")


class LeanClient:
    """A load generator that takes little of the CPU it shares with the daemon: one keep-alive
    connection, and the multipart body encoded once (by httpx), as an NVR does on its own machine.
    httpx itself costs about 5 core-ms per request here, a fifth of what the daemon spends."""

    def __init__(self, url: str, image: bytes) -> None:
        request = httpx.Request("POST", url, files={"image": ("snapshot.jpg", image, "image/jpeg")})
        self.body = request.read()
        self.headers = {"Content-Type": request.headers["Content-Type"]}
        self.path = request.url.raw_path.decode()
        self.conn = http.client.HTTPConnection(request.url.host, request.url.port, timeout=60)

    def post(self) -> tuple[int, bytes]:
        self.conn.request("POST", self.path, body=self.body, headers=self.headers)
        response = self.conn.getresponse()
        return response.status, response.read()

    def close(self) -> None:
        self.conn.close()


MAX_PIXELS = 40_000_000


def snapshots(photo: Path) -> dict[str, bytes]:
    """The photo as sent, and as 1920x1080 and 3840x2160 JPEG snapshots (a camera's sizes)."""
    img = cv2.imread(str(photo))
    h, w = img.shape[:2]
    out = {f"{w}x{h}": photo.read_bytes()}
    for tw, th in ((1920, 1080), (3840, 2160)):
        scale = min(tw / w, th / h)
        canvas = np.full((th, tw, 3), 90, np.uint8)
        fitted = cv2.resize(img, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_CUBIC)
        y, x = (th - fitted.shape[0]) // 2, (tw - fitted.shape[1]) // 2
        canvas[y:y + fitted.shape[0], x:x + fitted.shape[1]] = fitted
        out[f"{tw}x{th}"] = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    return out


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="nanodet")
    ap.add_argument("--photo", default="bus")
    ap.add_argument("--requests", type=int, default=60, help="paired raw/HTTP samples")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=6, help="sequential/concurrent phase pairs")
    ap.add_argument("--accept-licence", action="append", default=[], metavar="LICENCE",
                    help="accept a model's non-permissive licence, e.g. AGPL-3.0 for yolov5s")
    args = ap.parse_args()
    keep_large_blocks()  # the heap settings the daemon runs with, so raw and in-process compare like for like

    cache = Path(os.environ.get("EDGEWATCH_CACHE_DIR") or default_cache_dir())
    photo = ensure_photos(cache, [args.photo])[args.photo]
    image = photo.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        store = ModelStore(data / "models")
        install(args.model, store, cache, accept_licences=args.accept_licence)
        manifest = store.get(args.model)
        backend = load_backend("auto", store, manifest).backend  # what the daemon runs it on
        print(f"{args.model}: variant {backend.variant_key} on {backend.type_key}")
        tensor, _ = letterbox(cv2.imread(str(photo)), *backend.input_format())

        daemon = DaemonProcess(data, cache, env={"EDGEWATCH_DETECTION_MODEL": args.model})
        start_s = daemon.start()
        url = daemon.url + "/v1/vision/detection"
        try:
            detector = Detector(manifest, backend)
            settings = DetectionSettings()
            snaps = snapshots(photo)
            clients = {name: LeanClient(url, data) for name, data in snaps.items()}
            warm_until = time.perf_counter() + 3  # this CPU needs seconds of work to reach steady speed
            while time.perf_counter() < warm_until:
                backend.infer(tensor)
                for name, data in snaps.items():
                    detector.detect(data, 0.4, settings, MAX_PIXELS)
                    clients[name].post()
            raw: list[float] = []
            stats = {name: {"decode": [], "inproc": [], "e2e": [], "inf": [], "proc": []} for name in snaps}
            block = 10
            for _ in range(max(1, args.requests // block)):
                # Short blocks of raw inferences, in-process detections and requests, not strict
                # alternation: ONNX Runtime's pool threads spin for a while after a run, and a
                # request sent right after a raw inference would compete with them for the cores.
                time.sleep(QUIET_S)
                for _ in range(block):
                    t0 = time.perf_counter()
                    backend.infer(tensor)
                    raw.append((time.perf_counter() - t0) * 1000)
                for name, data in snaps.items():
                    st = stats[name]
                    for _ in range(block):
                        t0 = time.perf_counter()
                        decode_image(data, MAX_PIXELS, target=manifest.input.size)
                        st["decode"].append((time.perf_counter() - t0) * 1000)
                    time.sleep(QUIET_S)
                    for _ in range(block):
                        t0 = time.perf_counter()
                        detector.detect(data, 0.4, settings, MAX_PIXELS)
                        st["inproc"].append((time.perf_counter() - t0) * 1000)
                    time.sleep(QUIET_S)
                    for _ in range(block):
                        t0 = time.perf_counter()
                        status, reply = clients[name].post()
                        st["e2e"].append((time.perf_counter() - t0) * 1000)
                        body = json.loads(reply)
                        assert status == 200 and body["success"], body
                        st["inf"].append(body["inferenceMs"])
                        st["proc"].append(body["processMs"])
            for c in clients.values():
                c.close()
            backend.close()

            def posts(n: int) -> list[int]:
                c = LeanClient(url, image)
                try:
                    return [c.post()[0] for _ in range(n)]
                finally:
                    c.close()

            def sequential() -> list[int]:
                return posts(args.requests // 2)

            def concurrent_clients() -> list[int]:
                worker = posts
                n = max(2, args.requests // args.clients)
                with concurrent.futures.ThreadPoolExecutor(args.clients) as pool:
                    return [code for chunk in pool.map(worker, [n] * args.clients) for code in chunk]

            seq, con = Phase(daemon.proc.pid), Phase(daemon.proc.pid)
            codes: list[int] = []
            for _ in range(args.rounds):
                # Each phase starts from quiet: after overlapping requests the ONNX Runtime backend
                # keeps to one-thread sessions for SPLIT_HOLD_S, which would slow a sequential phase
                # that followed at once.
                time.sleep(2 * SPLIT_HOLD_S)
                codes += seq.run(sequential)
                time.sleep(2 * SPLIT_HOLD_S)
                codes += con.run(concurrent_clients)
            errors = sum(c != 200 for c in codes)
            rss = peak_rss_mb(daemon.proc.pid)
        finally:
            daemon.stop()

    h, w = cv2.imread(str(photo)).shape[:2]
    print(f"model {args.model} ({manifest.default_variant}), photo {args.photo} {w}x{h}, {os.cpu_count()} cores, "
          f"{args.requests} paired samples, {args.rounds} rounds")
    print(f"raw inference p50            {p50(raw):8.2f} ms   (the backend alone, on the letterboxed tensor)")
    print(f"{'snapshot':<11}{'JPEG decode':>12}{'in-process':>11}{'HTTP':>9}{'in-proc/raw':>12}"
          f"{'(no decode)':>12}{'HTTP/in-proc':>13}{'inferenceMs/raw':>16}{'processMs/in-proc':>18}")
    for name, st in stats.items():
        print(f"{name:<11}{p50(st['decode']):10.2f}ms{p50(st['inproc']):9.2f}ms{p50(st['e2e']):7.2f}ms"
              f"{p50(st['inproc']) / p50(raw):11.2f}x{(p50(st['inproc']) - p50(st['decode'])) / p50(raw):11.2f}x"
              f"{p50(st['e2e']) / p50(st['inproc']):12.2f}x"
              f"{p50(st['inf']) / p50(raw):15.2f}x{p50(st['proc']) / p50(st['inproc']):17.2f}x")
    print("targets: in-proc/raw <= 1.25 up to 1920x1080 (host decode, pre- and post-processing); "
          "HTTP/in-proc <= 1.10 (server and envelope); inferenceMs/raw within 0.90-1.10")
    print(f"sequential                   {seq.line()}")
    print(f"{args.clients} clients                    {con.line()}")
    print(f"concurrent / sequential      {(con.requests / con.wall) / (seq.requests / seq.wall):8.2f} x   "
          f"(target >= 1.30); {errors} errors of {len(codes)}")
    print(f"daemon peak RSS              {rss:8.1f} MB   (target <= 300)")
    print(f"start to first ping          {start_s:8.2f} s    (target <= 3)")


if __name__ == "__main__":
    main()
