"""Image filter benchmark: /v1/image/removebackground and /v1/image/portraitfilter end to end against
their segmentation model's raw inference time.

    python bench/image_filters.py [--rounds 10]

Installs u2netp and selfie-segmentation into a temporary data dir and times, interleaved, on three
of the project's photos (edgewatch.models.photos): the whole request through the daemon's app
(multipart parsing, decoding, inference, matting or blur, PNG/JPEG and base64 encoding, JSON) and the
raw inference alone (the backend's run on the prepared input). Prints p50s and their ratio.
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
from edgewatch.models.runtime.preprocess import letterbox
from edgewatch.models.store import ModelStore

PHOTOS = ("astronaut", "bus", "zidane")  # 512x512, 810x1080, 1280x720
CASES = (  # (label, route, module, form fields, rounds divisor)
    ("removebackground", "/v1/image/removebackground", "BackgroundRemoverEdgewatch", {}, 1),
    ("removebackground +matting", "/v1/image/removebackground", "BackgroundRemoverEdgewatch",
     {"use_alphamatting": "true"}, 3),
    ("portraitfilter 0.5", "/v1/image/portraitfilter", "PortraitFilterEdgewatch", {"strength": "0.5"}, 1),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    cache = default_cache_dir()
    photos = ensure_photos(cache, list(PHOTOS))
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        for name in ("u2netp", "selfie-segmentation"):
            install(name, ModelStore(data / "models"), cache)
        with TestClient(create_app(load_settings(data_dir=data, cache_dir=cache))) as client:
            modules = client.app.state.services.modules
            modules["BackgroundRemoverEdgewatch"].matting.ready.wait(600)
            for label, route, module_id, fields, divisor in CASES:
                module = modules[module_id]
                manifest, backend = module.slot.get()
                for photo in PHOTOS:
                    data_bytes = photos[photo].read_bytes()
                    image = cv2.imread(str(photos[photo]))
                    tensor, _ = letterbox(image, *backend.input_format())
                    request, raw = [], []
                    for _ in range(max(2, args.rounds // divisor)):
                        start = time.perf_counter()
                        body = client.post(route, files={"image": data_bytes}, data=fields).json()
                        request.append((time.perf_counter() - start) * 1000)
                        start = time.perf_counter()
                        backend.infer(tensor)
                        raw.append((time.perf_counter() - start) * 1000)
                    assert body["success"], body
                    req, inf = statistics.median(request), statistics.median(raw)
                    h, w = image.shape[:2]
                    print(f"{label:26s} {manifest.name:20s} {photo:10s} {w:4d}x{h:<4d} request p50 {req:7.1f} ms  "
                          f"raw inference p50 {inf:6.1f} ms  ratio {req / inf:5.2f}")


if __name__ == "__main__":
    main()
