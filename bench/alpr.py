"""Plate reader benchmark: /v1/vision/alpr end to end against the two models' raw inference time,
and what it reads on the rendered plates.

    python bench/alpr.py [--rounds 10] [--rendered 96]

Installs plate-detector and ppocr-rec into a temporary data dir. Times, interleaved, on the real
plate photos (models.photos.PLATE_PHOTOS) at the module's default max_side: the whole request
through the daemon's app (multipart, decoding, both models, straightening, JSON) and the raw
inference alone (the detector's run on the prepared input plus the recogniser's run on the
plates' strips). Prints p50s and their ratio, then the reading scores on plates rendered onto the
real cars (daemon.testing.plate_scene) at max_side 1280 and 640.
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
from edgewatch.daemon.testing.plate_scene import rendered_plates, score
from edgewatch.models.installer import install
from edgewatch.models.photos import ensure_plate_photos
from edgewatch.models.runtime.plates import plate_lines
from edgewatch.models.runtime.preprocess import fit_pad, text_line_batch
from edgewatch.models.store import ModelStore

MODULE = "ALPREdgewatch"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--rendered", type=int, default=96)
    args = ap.parse_args()
    cache = default_cache_dir()
    photos = ensure_plate_photos(cache)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        for name in ("plate-detector", "ppocr-rec"):
            install(name, ModelStore(data / "models"), cache)
        with TestClient(create_app(load_settings(data_dir=data, cache_dir=cache))) as client:
            module = client.app.state.services.modules[MODULE]
            (det_backend, _), reader = module.detector.get(), module.ocr.get()
            settings = module.settings
            for name, path in photos.items():
                body_bytes, image = path.read_bytes(), cv2.imread(str(path))
                spec, pre = det_backend.input_format()
                spec = spec.model_copy(update={"shape": (1, 3, settings.max_side, settings.max_side)})
                tensor, _ = fit_pad(image, spec, pre)
                plates, _ = module.read(image)
                strips = [line for p in plates for line in plate_lines(image, p.corners)]
                rec_spec, rec_pre = reader.backend.input_format()
                lines = text_line_batch(strips, rec_spec, rec_pre)
                request, raw = [], []
                for _ in range(args.rounds):
                    start = time.perf_counter()
                    body = client.post("/v1/vision/alpr", files={"upload": body_bytes}).json()
                    request.append((time.perf_counter() - start) * 1000)
                    start = time.perf_counter()
                    det_backend.infer(tensor)
                    reader.backend.infer(lines)
                    raw.append((time.perf_counter() - start) * 1000)
                assert body["success"], body
                req, inf = statistics.median(request), statistics.median(raw)
                h, w = image.shape[:2]
                print(f"alpr {name:11s} {w:4d}x{h:<4d} {body['count']} plates ({', '.join(p['plate'] for p in body['predictions'])})"
                      f"  request p50 {req:6.1f} ms  raw inference p50 {inf:6.1f} ms  ratio {req / inf:4.2f}")
            # the tests' draw: seeds 7 and 8, half each
            cases = rendered_plates(cache, args.rendered // 2, seed=7) + rendered_plates(cache, args.rendered - args.rendered // 2, seed=8)
            for max_side in (1280, 640):
                module.settings = settings.model_copy(update={"max_side": max_side})
                answers, times = [], []
                for image, _ in cases:
                    start = time.perf_counter()
                    plates, _ = module.read(image)
                    times.append((time.perf_counter() - start) * 1000)
                    answers.append([(p.text, p.box) for p in plates if module.accepted(p, settings.min_confidence)])
                result = score(answers, [truth for _, truth in cases])
                print(f"rendered plates, max_side {max_side}: found {result.found}/{result.plates}, read exactly "
                      f"{result.exact}, characters right {result.char_accuracy:.1%}, read p50 "
                      f"{statistics.median(times):.0f} ms")
            module.settings = settings


if __name__ == "__main__":
    main()
