"""Cartooniser benchmark: /v1/image/cartoonise end to end against the style model's raw inference time.

    python bench/cartoon.py [--rounds 5] [--max-side 1024]

Installs multistyle26 into a temporary data dir and times, interleaved, on three of the project's
photos (edgewatch.models.photos) and three styles: the whole request through the daemon's app
(multipart parsing, decoding, shrinking to the work size, inference, PNG and base64 encoding, JSON)
and the raw inference alone (the backend's run on the prepared inputs). Prints p50s and their ratio.
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
from edgewatch.models.runtime.stylise import feeds, work_size
from edgewatch.models.store import ModelStore

PHOTOS = ("astronaut", "bus", "zidane")  # 512x512, 810x1080, 1280x720
STYLES = ("celeba_distill", "paprika", "style3")  # style23, style21, style3
MODULE = "CartooniserEdgewatch"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--max-side", type=int, default=1024)
    args = ap.parse_args()
    cache = default_cache_dir()
    photos = ensure_photos(cache, list(PHOTOS))
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        install("multistyle26", ModelStore(data / "models"), cache)
        with TestClient(create_app(load_settings(data_dir=data, cache_dir=cache))) as client:
            assert client.post(f"/v1/settings/{MODULE}", json={"max_side": args.max_side}).status_code == 200
            model = client.app.state.services.modules[MODULE].model()
            for photo in PHOTOS:
                data_bytes = photos[photo].read_bytes()
                image = cv2.imread(str(photos[photo]))
                size = work_size(image.shape[1], image.shape[0], args.max_side)
                small = cv2.resize(image, size, interpolation=cv2.INTER_AREA) if size != image.shape[1::-1] else image
                for style in STYLES:
                    body = client.post("/v1/image/cartoonise", files={"image": data_bytes}, data={"model": style}).json()
                    assert body["success"], body
                    inputs = feeds(model.manifest, small, model.styles.index(body["style"]))
                    request, raw = [], []
                    for _ in range(max(2, args.rounds)):
                        start = time.perf_counter()
                        body = client.post("/v1/image/cartoonise", files={"image": data_bytes},
                                           data={"model": style}).json()
                        request.append((time.perf_counter() - start) * 1000)
                        start = time.perf_counter()
                        model.backend.infer(inputs)
                        raw.append((time.perf_counter() - start) * 1000)
                    assert body["success"], body
                    req, inf = statistics.median(request), statistics.median(raw)
                    h, w = image.shape[:2]
                    print(f"{photo:10s} {w:4d}x{h:<4d} -> {size[0]:4d}x{size[1]:<4d} {style:15s} ({body['style']:7s}) "
                          f"request p50 {req:7.1f} ms  raw inference p50 {inf:7.1f} ms  ratio {req / inf:5.2f}")


if __name__ == "__main__":
    main()
