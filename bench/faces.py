"""Faces benchmark: detection, detect + embed per face, and recognize as the face store grows.

    python bench/faces.py [--rounds 30]

Installs centerface and mobilefacenet into a temporary data dir (reusing the conversion cache),
then, in one run, on the registry's labelled face photos: the detector alone, detect + align +
embed per face, and the daemon's recognize use case with 10, 1,000 and 10,000 stored embeddings,
interleaved so that the CPU's drift hits every figure alike. Ratios are against detection alone;
the target is recognize(10,000) <= 1.2 x recognize(10). Then the recognition quality on the same
photos (models.face_eval): the similarities of same-person and different-person pairs, verification
accuracy at faces.recognition_threshold, and the true-accept rate at a false-accept rate of 0 and 1 %.
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

from edgewatch.daemon.config import load_settings
from edgewatch.daemon.inference_queue import InferenceQueue
from edgewatch.daemon.malloc_tuning import keep_large_blocks
from edgewatch.daemon.modules.faces.module import FacesModule
from edgewatch.daemon.modules.faces.store import FaceStore, NewFace
from edgewatch.daemon.modules.faces.usecase import identify, recognize
from edgewatch.daemon.paths import default_cache_dir
from edgewatch.models.face_eval import labelled_crops, verification
from edgewatch.models.installer import install
from edgewatch.models.photos import ensure_face_photos
from edgewatch.models.runtime.faces import align, detect_faces, embed
from edgewatch.models.store import ModelStore

SIZES = (10, 1_000, 10_000)


def p50(xs: list[float]) -> float:
    return statistics.median(xs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()
    keep_large_blocks()
    cache = Path(os.environ.get("EDGEWATCH_CACHE_DIR") or default_cache_dir())
    photos = ensure_face_photos(cache)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in ("centerface", "mobilefacenet"):
            install(name, ModelStore(root / "models"), cache)
        config = load_settings(data_dir=root, cache_dir=cache)
        module = FacesModule(config, ModelStore(config.models_dir), {})
        module.start()
        detector, embedder = module.detector(), module.embedder()
        images = {n: cv2.imread(str(p)) for n, p in photos.items()}
        probe = photos["obama2"].read_bytes()
        rng = np.random.default_rng(0)
        stores = {}
        for size in SIZES:  # a face store per size, filled with random unit vectors of the embedder's width
            store = FaceStore(root / f"faces-{size}.db")
            dim = embed(embedder.backend, embedder.manifest, [np.zeros((112, 112, 3), np.uint8)]).shape[1]
            vectors = rng.normal(size=(size, dim)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            for start in range(0, size, 500):
                batch = vectors[start:start + 500]
                for i, v in enumerate(batch):
                    store.register(f"user{start + i:05d}", [NewFace(b"-", "0" * 64, v)], embedder.key)
            stores[size] = store
        module.faces.close()
        queue = InferenceQueue(1, 4)
        det, per_face, rec, look = [], [], {size: [] for size in SIZES}, []
        # a camera's look at one tracked person: a 1280x720 frame with a person 640 px tall in it
        person = images["obama3"]
        width = round(person.shape[1] * 640 / person.shape[0])
        frame = np.zeros((720, 1280, 3), np.uint8)
        frame[40:680, 300:300 + width] = cv2.resize(person, (width, 640), interpolation=cv2.INTER_AREA)
        person_box = (300, 40, 300 + width, 680)
        faces_seen = []
        for _ in range(args.rounds):
            for image in images.values():
                t0 = time.perf_counter()
                found = detect_faces(detector.backend, detector.manifest, image)
                det.append(time.perf_counter() - t0)
                if len(found.scores):
                    crops = [align(image, lm) for lm in found.landmarks]
                    t1 = time.perf_counter()
                    embed(embedder.backend, embedder.manifest, crops)
                    per_face.append((time.perf_counter() - t1) / len(crops))
                    faces_seen.append(len(crops))
            module.faces = stores[SIZES[0]]
            t0 = time.perf_counter()
            identify(module, frame, [person_box], 32)
            look.append(time.perf_counter() - t0)
            for size in SIZES:
                module.faces = stores[size]
                t0 = time.perf_counter()
                asyncio.run(recognize(module, queue, probe, 0.4, time.perf_counter()))
                rec[size].append(time.perf_counter() - t0)
        queue.close()
        d = p50(det) * 1000
        e = p50(per_face) * 1000
        print(f"face detection p50 (CenterFace, 12 photos)   {d:7.2f} ms")
        print(f"embedding per face p50 (MobileFaceNet)        {e:7.2f} ms   ({e / d:.2f} x detection)")
        base = p50(rec[SIZES[0]]) * 1000
        for size in SIZES:
            r = p50(rec[size]) * 1000
            print(f"recognize, {size:6d} stored embeddings           {r:7.2f} ms   ({r / d:.2f} x detection, "
                  f"{r / base:.3f} x recognize with {SIZES[0]})")
        lk = p50(look) * 1000
        print(f"camera look at one person (640 px tall)        {lk:7.2f} ms   ({lk / d:.2f} x detection)")
        print(f"target: recognize with {SIZES[-1]} <= 1.2 x recognize with {SIZES[0]}: "
              f"{'met' if p50(rec[SIZES[-1]]) <= 1.2 * p50(rec[SIZES[0]]) else 'MISSED'}")
        crops = labelled_crops(detector.backend, detector.manifest, images)
        result = verification(embed(embedder.backend, embedder.manifest, [c for _, _, c in crops]), crops)
        threshold = module.settings.recognition_threshold
        print(f"\nquality: {len(crops)} labelled faces, {detector.manifest.name} {detector.manifest.default_variant} "
              f"+ {embedder.manifest.name} {embedder.manifest.default_variant}")
        print(f"same person       {len(result.same):4d} pairs  similarity min {result.same.min():.3f}  "
              f"median {np.median(result.same):.3f}")
        print(f"different people  {len(result.diff):4d} pairs  similarity max {result.diff.max():.3f}  "
              f"median {np.median(result.diff):.3f}")
        print(f"verification accuracy at {threshold} (faces.recognition_threshold): {result.accuracy(threshold):.1%}")
        for far in (0.0, 0.01):
            tar, at = result.true_accept(far)
            print(f"true-accept rate at false-accept rate {far:.0%}: {tar:.1%} (threshold {at:.3f})")


if __name__ == "__main__":
    main()
