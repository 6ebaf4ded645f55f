"""Host post-processing per detector layout: dequantise + decode + NMS, per frame, at 640×640 with 80 classes.

    python bench/postprocess.py [--runs 200] [--conf 0.25] [--photo bus]

The outputs are realistic ones: NanoDet's raw maps of a real photo (its real weights), resampled
from its 416×416 grids to 640×640's, encoded in each layout by the heads the tests wrap NanoDet
with (tests/layout_exports.py). Each layout is timed on float outputs (decode + NMS, as ONNX
Runtime or rknnlite hand them back) and on the same outputs quantised per tensor to uint8, as an
NPU's int8 outputs come (dequantise + decode + NMS). :func:`postprocess_table` returns the rows
for other benches (bench/backends.py).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from edgewatch.daemon.paths import default_cache_dir
from edgewatch.models.installer import install
from edgewatch.models.photos import ensure_photos
from edgewatch.models.runtime.heads import NANODET_STRIDES, decode
from edgewatch.models.runtime.layouts import dequantise_all
from edgewatch.models.runtime.preprocess import letterbox
from edgewatch.models.store import ModelStore
from edgewatch.models.tensor_info import TensorInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the wrapping heads live with the tests
from layout_exports import KINDS, layout_head  # noqa: E402

SIZE = (640, 640)
TARGET_MS = 2.0


def _resampled(raw: dict[str, np.ndarray], from_size: tuple[int, int], size: tuple[int, int]) -> dict[str, np.ndarray]:
    """NanoDet's per-stride maps ([1, cells, K]) bilinearly resampled to the grids of ``size``."""
    out = {}
    for name, arr in raw.items():
        stride = next(s for s in NANODET_STRIDES if -(-from_size[0] // s) * -(-from_size[1] // s) == arr.shape[1])
        gw, gh = -(-from_size[0] // stride), -(-from_size[1] // stride)
        tw, th = -(-size[0] // stride), -(-size[1] // stride)
        maps = arr[0].reshape(gh, gw, -1)
        planes = [cv2.resize(np.ascontiguousarray(maps[..., i:i + 256]), (tw, th), interpolation=cv2.INTER_LINEAR)
                  for i in range(0, maps.shape[-1], 256)]  # OpenCV resizes at most 512 channels at a time
        out[name] = np.concatenate([p.reshape(th, tw, -1) for p in planes], axis=-1).reshape(1, tw * th, -1)
    return out


def layout_outputs(store: ModelStore, photo: Path, size: tuple[int, int] = SIZE) -> dict[str, list[np.ndarray]]:
    """Each layout's float outputs for ``photo`` at ``size``, from NanoDet's real maps of it."""
    import onnxruntime as ort

    manifest = store.get("nanodet")
    fp32 = store.path(manifest, "fp32")
    session = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
    tensor, _ = letterbox(cv2.imread(str(photo), cv2.IMREAD_COLOR), manifest.input, manifest.preprocessing)
    raw = dict(zip((o.name for o in session.get_outputs()),
                   session.run(None, {session.get_inputs()[0].name: tensor})))
    feeds = _resampled(raw, manifest.input.size, size)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in KINDS:
            head = ort.InferenceSession(str(layout_head(fp32, manifest, kind, Path(tmp) / f"{kind}.onnx", size)),
                                        providers=["CPUExecutionProvider"])
            extra = {"orig_target_sizes": np.array([size], np.int64)} if kind == "dfine" else {}
            out[kind] = head.run(None, {**feeds, **extra})
    out["yolo_dfl_split"] = _dfl_split(out["rknn_yolov8"])
    out["tflite_ssd"] = _ssd(out["rknn_yolov8"], size)
    return out


def _dfl_split(zoo_v8: list[np.ndarray]) -> list[np.ndarray]:
    """The zoo YOLOv8 maps as the EdgeTPU's split head gives them: DFL boxes [1,N,64] and class
    logits [1,N,C], strides 8, 16, 32, each grid row by row."""
    boxes = sorted((o for o in zoo_v8 if o.shape[1] == 64), key=lambda o: -o.shape[2])
    scores = sorted((o for o in zoo_v8 if o.shape[1] not in (1, 64)), key=lambda o: -o.shape[2])
    dfl = np.concatenate([b.reshape(1, 64, -1) for b in boxes], axis=2).transpose(0, 2, 1)
    p = np.clip(np.concatenate([c.reshape(1, c.shape[1], -1) for c in scores], axis=2).transpose(0, 2, 1), 1e-6,
                1 - 1e-6)
    return [np.ascontiguousarray(dfl), np.log(p / (1 - p)).astype(np.float32)]


def _ssd(zoo_v8: list[np.ndarray], size: tuple[int, int], rows: int = 100) -> list[np.ndarray]:
    """What TFLite_Detection_PostProcess hands back for the same detections (NMS done in the model):
    boxes [1,100,4] ymin, xmin, ymax, xmax as fractions, classes and scores [1,100], count [1]."""
    found, scores, classes = decode("rknn_yolov8", zoo_v8, size, 0.05, max_det=rows)
    w, h = size
    boxes = np.zeros((1, rows, 4), np.float32)
    boxes[0, :len(found)] = found[:, [1, 0, 3, 2]] / np.array([h, w, h, w], np.float32)
    cls, sc = np.zeros((1, rows), np.float32), np.zeros((1, rows), np.float32)
    cls[0, :len(found)], sc[0, :len(found)] = classes, scores
    return [boxes, cls, sc, np.array([len(found)], np.float32)]


def quantised(outputs: list[np.ndarray]) -> tuple[list[np.ndarray], list[TensorInfo]]:
    """Float outputs as uint8 with per-tensor scale and zero point over each one's range (integer
    outputs, D-FINE's labels, stay as they are)."""
    arrays, infos = [], []
    for i, out in enumerate(outputs):
        if out.dtype.kind != "f":
            arrays.append(out)
            infos.append(TensorInfo(f"out{i}", out.shape, out.dtype.name))
            continue
        lo, hi = min(float(out.min()), 0.0), max(float(out.max()), 0.0)
        scale = (hi - lo) / 255 or 1.0
        zero = int(round(-lo / scale))
        arrays.append(np.clip(np.round(out / scale + zero), 0, 255).astype(np.uint8))
        infos.append(TensorInfo(f"out{i}", out.shape, "uint8", scale, zero))
    return arrays, infos


def _p50_ms(fn, runs: int) -> float:
    for _ in range(min(20, runs)):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def postprocess_table(store: ModelStore, photo: Path, runs: int = 200, conf: float = 0.25,
                      size: tuple[int, int] = SIZE) -> list[dict]:
    """Per layout: outputs, detections after NMS, p50 ms of decode + NMS on floats and of
    dequantise + decode + NMS on uint8."""
    rows = []
    for kind, outs in layout_outputs(store, photo, size).items():
        # the SSD op runs on the CPU after the TPU and hands back floats on every runtime
        q, infos = quantised(outs) if kind != "tflite_ssd" else (outs, [TensorInfo(f"out{i}", o.shape, "float32")
                                                                       for i, o in enumerate(outs)])
        found = decode(kind, outs, size, conf)[1].size
        found_q = decode(kind, dequantise_all(q, infos), size, conf)[1].size
        rows.append({
            "layout": kind, "outputs": " ".join("x".join(map(str, o.shape)) for o in outs), "detections": found,
            "detections_uint8": found_q,
            "float_ms": _p50_ms(lambda: decode(kind, outs, size, conf), runs),
            "uint8_ms": _p50_ms(lambda: decode(kind, dequantise_all(q, infos), size, conf), runs),
        })
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--conf", type=float, default=0.25)
    ap.add_argument("--photo", default="bus")
    args = ap.parse_args()
    cache = Path(os.environ.get("EDGEWATCH_CACHE_DIR") or default_cache_dir())
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(os.environ["EDGEWATCH_DATA_DIR"]) if os.environ.get("EDGEWATCH_DATA_DIR") else Path(tmp)
        store = ModelStore(data / "models")
        if not store.has("nanodet"):
            install("nanodet", store, cache)
        rows = postprocess_table(store, ensure_photos(cache, [args.photo])[args.photo], args.runs, args.conf)
    print(f"{SIZE[0]}x{SIZE[1]}, 80 classes, photo {args.photo}, min_conf {args.conf}, {os.cpu_count()} cores, "
          f"p50 of {args.runs} runs; target {TARGET_MS:g} ms")
    print(f"{'layout':12} {'dets':>4} {'float ms':>9} {'uint8 ms':>9}  outputs")
    for r in rows:
        dets = f"{r['detections']}" + ("" if r["detections_uint8"] == r["detections"] else f"/{r['detections_uint8']}")
        print(f"{r['layout']:12} {dets:>4} {r['float_ms']:9.3f} {r['uint8_ms']:9.3f}  {r['outputs']}")
    print("dets: after NMS, on float outputs (/on uint8 where it differs: one scale for pixel boxes and 0-1 scores "
          "leaves the scores no resolution, why NPU exports split outputs or normalise boxes)")


if __name__ == "__main__":
    main()
