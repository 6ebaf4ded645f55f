"""Super-resolution benchmark: /v1/image/superresolution end to end against the model's raw inference.

    python bench/superresolution.py [--rounds 5] [--models realesr-animevideov3 realesrgan-x4plus]

Installs the models into a temporary data dir and upscales a real photo (ultralytics' zidane.jpg,
16:9) shrunk to 160x90, 320x180 and 640x360, timing, interleaved: the whole request through the
daemon's app (multipart, PNG decoding, tiles on the inference queue, blending, PNG encoding, base64,
JSON) and the raw inference alone (the backend run once on the whole image, untiled). Prints p50s,
the tiles used, and request / raw. realesrgan-x4plus is timed on the smallest size only (--all-sizes
for all: minutes).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
from edgewatch.daemon.app import create_app
from edgewatch.daemon.config import load_settings
from edgewatch.daemon.modules.superresolution.tiling import plan
from edgewatch.daemon.paths import default_cache_dir
from edgewatch.models.installer import install
from edgewatch.models.photos import ensure_photos
from edgewatch.models.store import ModelStore
from litestar.testing import TestClient

MODULE = "SuperResolutionEdgewatch"
SIZES = ((160, 90), (320, 180), (640, 360))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--models", nargs="+", default=["realesr-animevideov3", "realesrgan-x4plus"])
    ap.add_argument("--all-sizes", action="store_true", help="time realesrgan-x4plus on every size too")
    args = ap.parse_args()
    cache = default_cache_dir()
    photo = cv2.imread(str(ensure_photos(cache, ["zidane"])["zidane"]))
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        for name in args.models:
            install(name, ModelStore(data / "models"), cache)
        with TestClient(create_app(load_settings(data_dir=data, cache_dir=cache))) as client:
            module = client.app.state.services.modules[MODULE]
            print(f"{'model':22} {'input':>8} {'output':>9} {'tiles':>5} {'request p50':>12} {'inferenceMs':>11} "
                  f"{'raw p50':>9} {'request/raw':>11}")
            for name in args.models:
                client.post(f"/v1/settings/{MODULE}", json={"model": name, "max_seconds": 3600})
                model = module.model()
                sizes = SIZES if name == "realesr-animevideov3" or args.all_sizes else SIZES[:1]
                for width, height in sizes:
                    small = cv2.resize(photo, (width, height), interpolation=cv2.INTER_AREA)
                    upload = cv2.imencode(".png", small)[1].tobytes()
                    rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
                    tiles = len(plan(height, width, module.settings.tile_size or model.auto_tile()))
                    model.upscale(rgb)  # warm-up: ncnn plans each new input size once
                    request, raw, inference = [], [], []
                    for _ in range(args.rounds):
                        start = time.perf_counter()
                        body = client.post("/v1/image/superresolution",
                                           files={"image": ("p.png", upload, "image/png")}).json()
                        request.append((time.perf_counter() - start) * 1000)
                        inference.append(body["inferenceMs"])
                        start = time.perf_counter()
                        model.upscale(rgb)
                        raw.append((time.perf_counter() - start) * 1000)
                    req, inf = statistics.median(request), statistics.median(raw)
                    print(f"{name:22} {width:>4}x{height:<3} {body['width']:>4}x{body['height']:<4} {tiles:>5} "
                          f"{req:>9.0f} ms {statistics.median(inference):>8.0f} ms {inf:>6.0f} ms {req / inf:>11.2f}")


if __name__ == "__main__":
    main()
