"""Soak: the daemon under mixed load for a long while; does anything grow, break or get lost?

    python bench/soak.py [--minutes 30] [--clients 8] [--model nanodet] [--job-every 1.0]

Starts a real mosquitto and the daemon as a real process (a temporary data dir, the model installed
from the conversion cache), with one camera on a looping video file (from the config file) and
MQTT on. Then, for the whole run:
- ``--clients`` threads post real photos to /v1/vision/detection over kept-alive connections
  (a new connection every few requests), mixed with bad requests: garbage bytes as the image, a
  truncated multipart body, wrong content types, unknown routes, and non-HTTP bytes on a socket;
- one MQTT v5 client publishes a detection job every ``--job-every`` s (some with garbage payloads)
  and counts the replies on its response topic;
- every 10 s the daemon's RSS, open file descriptors and threads are read from /proc/<pid>.
After the warm-up (the first 2 minutes, or 20 % of a shorter run) the growth from there is printed
with each sample; at the end a summary against the targets: RSS growth after warm-up ≤ 5 MB,
descriptors and threads flat, no 5xx answer, no MQTT job left without a reply. Exit status 1 when
a target is missed.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import cv2
import httpx
import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edgewatch.daemon.paths import default_cache_dir
from edgewatch.daemon.testing.daemon_process import DaemonProcess  # the same real-process harness the tests use
from edgewatch.models.installer import install
from edgewatch.models.photos import ensure_photos
from edgewatch.models.store import ModelStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "mqtt"))
from mqtt_harness import Broker  # noqa: E402  (mosquitto on a free port, as the MQTT tests start it)

SAMPLE_S = 10.0
RSS_TARGET_MB = 5.0
PHOTOS = ("bus", "zidane", "chelsea", "coffee", "motorcycle")
NODE = "soak"


# -- the daemon's figures ------------------------------------------------------------------------

def sample(pid: int) -> dict[str, float]:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {"rss_mb": int(status["VmRSS"].split()[0]) / 1024, "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "threads": int(status["Threads"])}


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per hour."""
    if len(points) < 3:
        return 0.0
    t = np.array([p[0] for p in points])
    v = np.array([p[1] for p in points])
    return float(np.polyfit(t, v, 1)[0] * 3600)


# -- HTTP clients --------------------------------------------------------------------------------

class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.codes: Counter[int] = Counter()
        self.kinds: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()  # transport errors, by kind of request
        self.five_xx: list[str] = []

    def add(self, kind: str, code: int) -> None:
        with self.lock:
            self.codes[code] += 1
            self.kinds[kind] += 1
            if code >= 500 and len(self.five_xx) < 20:
                self.five_xx.append(f"{kind}: {code}")

    def error(self, kind: str, exc: BaseException) -> None:
        with self.lock:
            self.errors[f"{kind}: {type(exc).__name__}"] += 1


def multipart(image: bytes, boundary: str = "soakboundary7d3a") -> tuple[bytes, str]:
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"snap.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode() + image + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def requests_mix(photos: dict[str, bytes]) -> list[tuple[str, float, str, str, bytes, dict[str, str]]]:
    """(kind, weight, method, path, body, headers): 70 % good detections, the rest bad requests."""
    mix = []
    for name, data in photos.items():
        body, ctype = multipart(data)
        mix.append((f"detect {name}", 70 / len(photos), "POST", "/v1/vision/detection", body, {"Content-Type": ctype}))
    garbage, ctype = multipart(os.urandom(20_000))
    good, _ = multipart(photos["bus"])
    truncated = good[: len(good) // 2]  # the closing boundary never comes (Content-Length says what was sent)
    return mix + [
        ("garbage image", 6, "POST", "/v1/vision/detection", garbage, {"Content-Type": ctype}),
        ("truncated multipart", 6, "POST", "/v1/vision/detection", truncated, {"Content-Type": ctype}),
        ("text/plain body", 4, "POST", "/v1/vision/detection", photos["bus"][:5000], {"Content-Type": "text/plain"}),
        ("json body", 3, "POST", "/v1/vision/detection", b'{"image": 1}', {"Content-Type": "application/json"}),
        ("no body", 3, "POST", "/v1/vision/detection", b"", {}),
        ("unknown route", 4, "GET", "/v1/vision/nothing-here", b"", {}),
        ("unknown POST", 2, "POST", "/api/v2/detect", good[:3000], {"Content-Type": ctype}),
        ("ping", 2, "GET", "/v1/status/ping", b"", {}),
    ]


def raw_garbage(port: int, tally: Tally) -> None:
    """Bytes that are not HTTP at all: uvicorn answers 400 and closes."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(os.urandom(200) + b"\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
        code = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0
        tally.add("non-HTTP bytes", code)
    except OSError as exc:
        tally.error("non-HTTP bytes", exc)


def http_client(port: int, mix, until: float, tally: Tally, seed: int) -> None:
    rng = random.Random(seed)
    weights = [m[1] for m in mix]
    conn: http.client.HTTPConnection | None = None
    sent_on_conn = 0
    while time.monotonic() < until:
        if rng.random() < 0.01:
            raw_garbage(port, tally)
            continue
        kind, _, method, path, body, headers = rng.choices(mix, weights)[0]
        if conn is None or sent_on_conn >= rng.randint(5, 50):  # NVRs reconnect now and then
            if conn is not None:
                conn.close()
            conn, sent_on_conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60), 0
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            sent_on_conn += 1
            tally.add(kind, response.status)
            if response.getheader("connection", "").lower() == "close":
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException) as exc:
            tally.error(kind, exc)
            conn.close()
            conn = None
    if conn is not None:
        conn.close()


# -- MQTT jobs -----------------------------------------------------------------------------------

class Jobs:
    """Publishes detection jobs with a response topic and correlation data; counts the replies."""

    def __init__(self, port: int, photos: dict[str, bytes]) -> None:
        self.photos = list(photos.values())
        self.reply_topic = f"soak-replies/{uuid.uuid4().hex[:8]}"
        self.lock = threading.Lock()
        self.pending: dict[bytes, float] = {}
        self.sent = self.replied = self.failed_replies = 0
        self.latencies: list[float] = []
        self.connected = threading.Event()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"soak-{uuid.uuid4().hex[:6]}",
                             protocol=MQTTProtocolVersion.MQTTv5)
        self.c.on_connect = lambda *a: self.c.subscribe(self.reply_topic, qos=1)
        self.c.on_subscribe = lambda *a: self.connected.set()
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        if not self.connected.wait(10):
            raise RuntimeError("the soak's MQTT client could not subscribe")

    def _on_message(self, client, userdata, msg) -> None:
        corr = getattr(msg.properties, "CorrelationData", None)
        with self.lock:
            sent_at = self.pending.pop(corr, None)
            if sent_at is None:
                return
            self.replied += 1
            self.latencies.append(time.monotonic() - sent_at)
            if b'"success":true' not in msg.payload.replace(b" ", b""):
                self.failed_replies += 1

    def send(self, rng: random.Random) -> None:
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = self.reply_topic
        corr = uuid.uuid4().bytes
        props.CorrelationData = corr
        payload = os.urandom(5000) if rng.random() < 0.2 else rng.choice(self.photos)
        with self.lock:
            self.pending[corr] = time.monotonic()
            self.sent += 1
        self.c.publish("edgewatch/jobs/detection", payload, qos=1, properties=props)

    def run(self, until: float, every: float) -> None:
        rng = random.Random(7)
        while time.monotonic() < until:
            self.send(rng)
            time.sleep(every)

    def wait_outstanding(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.pending:
            time.sleep(0.1)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


# -- the camera's video --------------------------------------------------------------------------

def looping_video(path: Path, photos: dict[str, Path], fps: int = 5) -> Path:
    """An MJPG .avi: an empty grey scene, then each photo, 2 s each, so that the motion gate lets
    detection run at every change."""
    size = (960, 540)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    empty = np.full((size[1], size[0], 3), 110, np.uint8)
    for name in photos:
        for frame in (empty, cv2.resize(cv2.imread(str(photos[name])), size)):
            for _ in range(2 * fps):
                writer.write(frame)
    writer.release()
    return path


# -- the run -------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--model", default="nanodet")
    ap.add_argument("--job-every", type=float, default=1.0, help="seconds between two MQTT jobs")
    args = ap.parse_args()
    duration = args.minutes * 60
    warmup = min(120.0, 0.2 * duration)

    cache = Path(os.environ.get("EDGEWATCH_CACHE_DIR") or default_cache_dir())
    photo_paths = ensure_photos(cache, list(PHOTOS))
    photos = {name: photo_paths[name].read_bytes() for name in PHOTOS}
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        data = tmpdir / "data"
        install(args.model, ModelStore(data / "models"), cache)
        video = looping_video(tmpdir / "loop.avi", photo_paths)
        config = tmpdir / "config.yaml"
        config.write_text(f"cameras:\n  - name: soakcam\n    url: file:{video}\n    fps: 5\n")
        (tmpdir / "broker").mkdir()
        broker = Broker(tmpdir / "broker")
        broker.start()
        daemon = DaemonProcess(data, cache, args=["--config", str(config)], env={
            "EDGEWATCH_DETECTION_MODEL": args.model, "EDGEWATCH_MQTT_HOST": "127.0.0.1",
            "EDGEWATCH_MQTT_PORT": str(broker.port), "EDGEWATCH_NODE_ID": NODE})
        log_path = tmpdir / "daemon.log"
        log_file = log_path.open("wb")
        daemon.stderr = log_file  # its log (stderr) to a file: a pipe nobody reads would fill and block the daemon
        jobs = None
        try:
            daemon.start(timeout=60)
            pid = daemon.proc.pid
            online = threading.Event()
            watch = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
            watch.on_connect = lambda *a: watch.subscribe(f"edgewatch/{NODE}/availability")
            watch.on_message = lambda c, u, m: online.set() if m.payload == b"online" else None
            watch.connect("127.0.0.1", broker.port)
            watch.loop_start()
            if not online.wait(30):
                raise RuntimeError("the daemon did not come online on MQTT")
            watch.disconnect()
            watch.loop_stop()
            jobs = Jobs(broker.port, photos)
            tally = Tally()
            mix = requests_mix(photos)
            start = time.monotonic()
            until = start + duration
            threads = [threading.Thread(target=http_client, args=(daemon.port, mix, until, tally, i), daemon=True)
                       for i in range(args.clients)]
            threads.append(threading.Thread(target=jobs.run, args=(until, args.job_every), daemon=True))
            for t in threads:
                t.start()
            print(f"soak: {args.minutes:g} min, {args.clients} clients, a job every {args.job_every:g} s, camera on "
                  f"a looping video; warm-up {warmup:.0f} s; daemon pid {pid}")
            print(f"{'t (s)':>6} {'RSS MB':>8} {'fds':>5} {'thr':>4} {'requests':>9} {'5xx':>4} {'jobs':>11}  growth")
            samples: list[tuple[float, dict[str, float]]] = []
            base: dict[str, float] | None = None
            next_at = start
            while True:
                now = time.monotonic()
                t = now - start
                s = sample(pid)
                samples.append((t, s))
                if base is None and t >= warmup:
                    base = s
                grow = (f"RSS {s['rss_mb'] - base['rss_mb']:+.1f} MB, fds {s['fds'] - base['fds']:+d}, "
                        f"threads {s['threads'] - base['threads']:+d}") if base else "(warming up)"
                with tally.lock:
                    served = sum(tally.codes.values())
                    five = sum(n for code, n in tally.codes.items() if code >= 500)
                print(f"{t:6.0f} {s['rss_mb']:8.1f} {s['fds']:5d} {s['threads']:4d} {served:9d} {five:4d} "
                      f"{jobs.replied:5d}/{jobs.sent:<5d}  {grow}", flush=True)
                if now >= until:
                    break
                next_at += SAMPLE_S
                time.sleep(max(0.0, min(next_at, until) - time.monotonic()))
            for t in threads:
                t.join(90)
            jobs.wait_outstanding(30)
            time.sleep(2)
            idle = sample(pid)  # once the load has stopped
            cameras = httpx.get(daemon.url + "/v1/cameras", timeout=10).json()["cameras"]
            return summary(samples, base or samples[0][1], idle, tally, jobs, cameras, warmup)
        finally:
            if jobs is not None:
                jobs.close()
            out = daemon.stop()
            log_file.close()
            broker.stop()
            text = log_path.read_text(errors="replace") + out
            problems = [line for line in text.splitlines() if " ERROR " in line or "Traceback" in line]
            print(f"daemon log: {len(text.splitlines())} lines, {len(problems)} ERROR/Traceback lines")
            for line in problems[:10]:
                print("   ", line[:300])


def summary(samples, base, idle, tally: Tally, jobs: Jobs, cameras: list[dict], warmup: float) -> int:
    after = [(t, s) for t, s in samples if t >= warmup]
    end = samples[-1][1]  # the last sample under load, to compare with the first one after the warm-up
    rss_growth = end["rss_mb"] - base["rss_mb"]
    five = sum(n for code, n in tally.codes.items() if code >= 500)
    lost = jobs.sent - jobs.replied
    print("\n== summary (from the end of the warm-up to the last sample under load) ==")
    print(f"RSS:         {base['rss_mb']:.1f} → {end['rss_mb']:.1f} MB, growth {rss_growth:+.1f} MB "
          f"(trend {slope_per_hour([(t, s['rss_mb']) for t, s in after]):+.1f} MB/h; peak "
          f"{max(s['rss_mb'] for _, s in samples):.1f} MB; at start {samples[0][1]['rss_mb']:.1f} MB)")
    print(f"descriptors: {base['fds']} → {end['fds']} (range after warm-up "
          f"{min(s['fds'] for _, s in after)}–{max(s['fds'] for _, s in after)})")
    print(f"threads:     {base['threads']} → {end['threads']} (range after warm-up "
          f"{min(s['threads'] for _, s in after)}–{max(s['threads'] for _, s in after)})")
    print(f"idle after:  RSS {idle['rss_mb']:.1f} MB, {idle['fds']} descriptors, {idle['threads']} threads "
          "(2 s after the load stopped)")
    served = sum(tally.codes.values())
    print(f"requests:    {served} answered: " + ", ".join(f"{code}: {n}" for code, n in sorted(tally.codes.items())))
    print("             by kind: " + ", ".join(f"{k} {n}" for k, n in sorted(tally.kinds.items())))
    if tally.errors:
        print("             transport errors: " + ", ".join(f"{k} {n}" for k, n in tally.errors.items()))
    print(f"5xx:         {five}" + (f" ({'; '.join(tally.five_xx)})" if five else ""))
    p50 = statistics.median(jobs.latencies) * 1000 if jobs.latencies else float("nan")
    print(f"MQTT jobs:   {jobs.sent} sent, {jobs.replied} replied ({jobs.failed_replies} error envelopes, for the "
          f"garbage payloads), {lost} lost; reply p50 {p50:.0f} ms")
    for cam in cameras:
        print(f"camera {cam['name']}: connected {cam.get('connected')}, frames {cam.get('frames_out')}, "
              f"detections {cam.get('detections')}, reconnects {cam.get('reconnects')}, "
              f"last error {cam.get('last_error')}")
    fds_flat = end["fds"] - base["fds"] <= 2
    threads_flat = end["threads"] - base["threads"] <= 2
    results = {f"RSS growth ≤ {RSS_TARGET_MB:g} MB": rss_growth <= RSS_TARGET_MB, "descriptors flat (±2)": fds_flat,
               "threads flat (±2)": threads_flat, "no 5xx": five == 0, "no lost MQTT reply": lost == 0,
               "no transport error": not tally.errors}
    for target, ok in results.items():
        print(f"{'met   ' if ok else 'MISSED'} {target}")
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
