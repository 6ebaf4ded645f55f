"""Scene classifier benchmark: /v1/vision/scene end to end against the classifier's raw inference time.

    python bench/scene.py [--rounds 20]

Installs mobilenet-v2 into a temporary data dir and times, interleaved, on four of the project's
photos (edgewatch.models.photos): the whole request through the daemon's app (multipart parsing,
decoding, resize and centre crop, inference, softmax, the scene mapping, JSON) and the raw inference
alone (the backend's run on the prepared input). Prints p50s and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
from litestar.testing import TestClient

from edgewatch.daemon.app import create_app
from edgewatch.daemon.config import load_settings
from edgewatch.daemon.paths import default_cache_dir
from edgewatch.models.installer import install
from edgewatch.models.photos import ensure_photos
from edgewatch.models.runtime.classification import prepare
from edgewatch.models.store import ModelStore

PHOTOS = ("coffee", "astronaut", "bus", "zidane")  # 400x600 PNG, 512x512 PNG, 810x1080 JPEG, 1280x720 JPEG
MODULE = "SceneClassifierEdgewatch"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    cache = default_cache_dir()
    photos = ensure_photos(cache, list(PHOTOS))
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        install("mobilenet-v2", ModelStore(data / "models"), cache)
        with TestClient(create_app(load_settings(data_dir=data, cache_dir=cache))) as client:
            manifest, _, backend = client.app.state.services.modules[MODULE].slot.get()
            for photo in PHOTOS:
                data_bytes = photos[photo].read_bytes()
                image = cv2.imread(str(photos[photo]))
                tensor = prepare(image, *backend.input_format())
                request, raw, reported = [], [], []
                for _ in range(max(2, args.rounds)):
                    start = time.perf_counter()
                    body = client.post("/v1/vision/scene", files={"image": data_bytes}).json()
                    request.append((time.perf_counter() - start) * 1000)
                    reported.append(body["inferenceMs"])
                    start = time.perf_counter()
                    backend.infer(tensor)
                    raw.append((time.perf_counter() - start) * 1000)
                assert body["success"], body
                req, inf = statistics.median(request), statistics.median(raw)
                h, w = image.shape[:2]
                print(f"scene {manifest.name:13s} {photo:10s} {w:4d}x{h:<4d} request p50 {req:6.1f} ms  "
                      f"raw inference p50 {inf:5.1f} ms  ratio {req / inf:5.2f}  "
                      f"(answer: {body['label']} {body['confidence']:.2f}, ImageNet {body['imagenet_label']})")


if __name__ == "__main__":
    main()
