"""Static int8 quantisation calibrated on real photos, and how far int8 agrees with fp32."""

from __future__ import annotations

import statistics
import time
import warnings
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from edgewatch.models.manifest import AP50_REQUIRED, InputSpec, Preprocessing
from edgewatch.models.runtime.heads import decode
from edgewatch.models.runtime.preprocess import letterbox

REFERENCE_CONF = 0.4   # what a client sees by default
CANDIDATE_CONF = 0.3   # int8 scores may shift a little; a detection just under 0.4 still agrees
MATCH_IOU = 0.5
# int8 becomes the default only when it is faster and its AP50, scored against the fp32 model's
# own detections on the evaluation views, is at least this. Judged on 100+ detections, the
# figure moves by about a point per borderline detection, so a CPU whose int8 kernels round one
# detection differently cannot flip the decision; a lossy quantisation (CenterNet's int8 misses
# a quarter) stays far below it.
GATE = "ap50-vs-fp32-on-12-views/v1"  # change when the decision rule or its data changes: re-measures


def evaluation_views(photos: dict[str, Path]) -> dict[str, np.ndarray]:
    """Each photo (BGR) twelve ways: as taken and mirrored; cropped to 70 % at each corner, and
    those mirrored (objects bigger, some cut by the edge); shrunk to 55 % in a corner of a grey
    canvas, and mirrored (objects smaller). New scales and crops judge the int8 model beyond its
    calibration set (each photo and its mirror), on about ten times as many detections."""
    views = {}
    for name, path in photos.items():
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"cannot read evaluation photo {path}")
        h, w = img.shape[:2]
        ch, cw = int(h * 0.7), int(w * 0.7)
        small = cv2.resize(img, (int(w * 0.55), int(h * 0.55)), interpolation=cv2.INTER_AREA)
        shrunk = np.full_like(img, 114)
        shrunk[h - small.shape[0]:, :small.shape[1]] = small
        corners = {"top-left": img[:ch, :cw], "top-right": img[:ch, w - cw:],
                   "bottom-left": img[h - ch:, :cw], "bottom-right": img[h - ch:, w - cw:]}
        views[name] = img
        views[f"{name}/mirrored"] = cv2.flip(img, 1)
        for corner, crop in corners.items():
            views[f"{name}/{corner}"] = crop
            views[f"{name}/{corner}-mirrored"] = cv2.flip(crop, 1)
        views[f"{name}/shrunk"] = shrunk
        views[f"{name}/shrunk-mirrored"] = cv2.flip(shrunk, 1)
    return {k: np.ascontiguousarray(v) for k, v in views.items()}


def evaluation_tensors(photos: dict[str, Path], spec: InputSpec, pre: Preprocessing) -> list[np.ndarray]:
    """:func:`evaluation_views` as the network sees them."""
    return [letterbox(img, spec, pre)[0] for img in evaluation_views(photos).values()]


def cpu_features() -> str:
    """The machine and the CPU features int8 kernels depend on (recorded with each measurement)."""
    import platform

    wanted = {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimd", "asimddp", "i8mm", "sve"}
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags |= set(line.split(":", 1)[1].split()) & wanted
    except OSError:
        pass
    return f"{platform.machine()} {' '.join(sorted(flags)) or '(no int8 features listed)'}"


def calibration_tensors(photos: list[Path], spec: InputSpec, pre: Preprocessing) -> list[np.ndarray]:
    """Each photo as the network sees it, plus its mirror image: more activation ranges to calibrate on."""
    tensors = []
    for path in photos:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"cannot read calibration photo {path}")
        for variant in (img, cv2.flip(img, 1)):
            tensors.append(letterbox(variant, spec, pre)[0])
    return tensors


def quantize_int8(fp32: Path, out: Path, tensors: list[np.ndarray]) -> None:
    """Write a QDQ int8 model (Conv only, per-channel weights, MinMax-calibrated activations) to ``out``."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    input_name = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"]).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(tensors)

        def get_next(self) -> dict[str, np.ndarray] | None:
            t = next(self._it, None)
            return None if t is None else {input_name: t}

    prepped = out.with_name(out.stem + ".prep.onnx")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # ORT's scale maths on all-zero tensors; harmless
            quant_pre_process(str(fp32), str(prepped), skip_symbolic_shape=True)
            # Only Conv: quantising the sigmoid/concat heads too collapsed NanoDet's class scores
            # (0 % agreement); Conv-only keeps 100 % and still gets the int8 speed-up.
            quantize_static(str(prepped), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            op_types_to_quantize=["Conv"])
    finally:
        prepped.unlink(missing_ok=True)


def _session(path: Path, threads: int = 0):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def latency_p50_ms(models: dict[str, Path], tensor: np.ndarray, runs: int = 30,
                   warm_up_s: float = 1.0) -> dict[str, float]:
    """Median latency of each model on ``tensor``, after a warm-up, timed in alternation so
    CPU frequency drift affects all alike."""
    sessions = {key: _session(path) for key, path in models.items()}
    feeds = {key: {s.get_inputs()[0].name: tensor} for key, s in sessions.items()}
    for key, sess in sessions.items():
        until = time.perf_counter() + warm_up_s
        while time.perf_counter() < until:
            sess.run(None, feeds[key])
    times: dict[str, list[float]] = {key: [] for key in sessions}
    for _ in range(runs):
        for key, sess in sessions.items():
            t0 = time.perf_counter()
            sess.run(None, feeds[key])
            times[key].append((time.perf_counter() - t0) * 1000)
    return {key: statistics.median(v) for key, v in times.items()}


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of one box ``a`` against N boxes ``b`` (x1, y1, x2, y2)."""
    x1, y1 = np.maximum(a[0], b[:, 0]), np.maximum(a[1], b[:, 1])
    x2, y2 = np.minimum(a[2], b[:, 2]), np.minimum(a[3], b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda r: (r[..., 2] - r[..., 0]) * (r[..., 3] - r[..., 1])  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-9)


Runner = Callable[[np.ndarray], list[np.ndarray]]


def match_detections(reference: Runner, candidate: Runner, ref_tensors: list[np.ndarray],
                     cand_tensors: list[np.ndarray], kind: str, size: tuple[int, int]) -> dict[str, float | int]:
    """How the candidate reproduces the reference's detections (conf ≥ 0.4) on the same photos.

    ``agreement``: the share found one to one (same class, IoU ≥ 0.5, candidate conf ≥ 0.3).
    ``ap50``: the candidate's AP at IoU 0.5 with the reference's detections as ground truth; a
    candidate detection of an object the reference scored 0.3–0.4 is neither right nor wrong.
    ``extra_candidate_detections``: candidate detections ≥ 0.4 that match nothing.
    ``cand_tensors`` are the same photos in the candidate's own input format."""
    total = matched = extra = 0
    ranked: list[tuple[float, int]] = []  # (candidate score, 1 true positive / 0 false positive)
    for rt, ct in zip(ref_tensors, cand_tensors):
        rb, rs, rc = decode(kind, reference(rt), size, CANDIDATE_CONF)
        truth = rs >= REFERENCE_CONF
        cb, cs, cc = decode(kind, candidate(ct), size, CANDIDATE_CONF)
        used = np.zeros(len(cb), bool)
        for box, cls in zip(rb[truth], rc[truth]):  # one to one, as before: the agreement share
            ok = (cc == cls) & ~used
            if ok.any():
                ious = np.where(ok, iou(box, cb), 0)
                best = int(np.argmax(ious))
                if ious[best] >= MATCH_IOU:
                    used[best] = True
                    matched += 1
        total += int(truth.sum())
        extra += int(((cs >= REFERENCE_CONF) & ~used).sum())
        taken = np.zeros(len(rb), bool)
        for i in np.argsort(-cs, kind="stable"):  # AP: candidates in score order claim ground truth
            same = rc == cc[i]
            ious = np.where(same, iou(cb[i], rb), 0) if len(rb) else np.zeros(0)
            hit = np.where(truth & ~taken & (ious >= MATCH_IOU), ious, 0)
            if hit.size and hit.max() > 0:
                taken[int(np.argmax(hit))] = True
                ranked.append((float(cs[i]), 1))
            elif not (ious.size and (ious[~truth] >= MATCH_IOU).any()):
                ranked.append((float(cs[i]), 0))
    return {"reference_detections": total, "matched": matched,
            "agreement": round(matched / total, 4) if total else 1.0, "extra_candidate_detections": extra,
            "ap50": round(average_precision(ranked, total), 4)}


def average_precision(ranked: list[tuple[float, int]], positives: int) -> float:
    """All-point interpolated AP of detections (score, 1 if true positive) against ``positives``."""
    if positives == 0:
        return 1.0
    if not ranked:
        return 0.0
    hits = np.asarray([tp for _, tp in sorted(ranked, key=lambda r: -r[0])], np.float64)
    tp = np.cumsum(hits)
    precision = tp / np.arange(1, len(hits) + 1)
    recall = tp / positives
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # the envelope: best precision at ≥ this recall
    steps = np.diff(np.concatenate([[0.0], recall]))
    return float((steps * precision).sum())


def onnx_runner(path: Path) -> Runner:
    sess = _session(path)
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})


def agreement(reference: Path, candidate: Path, tensors: list[np.ndarray], kind: str,
              size: tuple[int, int]) -> dict[str, float | int]:
    """:func:`match_detections` for two ONNX files fed the same tensors."""
    return match_detections(onnx_runner(reference), onnx_runner(candidate), tensors, tensors, kind, size)


def measure_variants(fp32: Path, int8: Path, tensors: list[np.ndarray], kind: str, size: tuple[int, int],
                     min_reference: int = 0, eval_tensors: list[np.ndarray] | None = None) -> dict:
    """Time fp32 and int8 on this machine and compare their detections on ``eval_tensors``
    (default: ``tensors``, the calibration images).

    int8 becomes the default only when it is faster, its AP50 against fp32's detections is at
    least AP50_REQUIRED, and fp32 found at least ``min_reference`` detections to judge by.
    Returns the report the store keeps: input name, both variants, the default and why, and the
    CPU it was measured on.
    """
    import onnxruntime as ort

    from edgewatch.models.files import sha256_file

    p50 = latency_p50_ms({"fp32": fp32, "int8": int8}, tensors[0])
    agree = agreement(fp32, int8, eval_tensors or tensors, kind, size)
    faster = p50["int8"] < p50["fp32"]
    if agree["reference_detections"] < min_reference:
        default, reason = "fp32", (f"fp32 found only {agree['reference_detections']} objects on the calibration "
                                   f"photos, too few to judge int8 (needs {min_reference}): add photos from "
                                   "your cameras with --calibration DIR")
    elif not faster:
        default, reason = "fp32", f"int8 is not faster here ({p50['int8']:.1f} ms vs {p50['fp32']:.1f} ms)"
    elif agree["ap50"] < AP50_REQUIRED:
        default, reason = "fp32", (f"int8 AP50 {agree['ap50']:.3f} against fp32 is below {AP50_REQUIRED:.2f} "
                                   f"(agreement {agree['agreement']:.1%} of {agree['reference_detections']})")
    else:
        default, reason = "int8", (f"int8 {p50['int8']:.1f} ms vs fp32 {p50['fp32']:.1f} ms, AP50 {agree['ap50']:.3f} "
                                   f"against fp32, agreement {agree['agreement']:.1%} of "
                                   f"{agree['reference_detections']} detections")
    input_name = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"]).get_inputs()[0].name
    variants = {
        key: {"file": f"{key}.onnx", "sha256": sha256_file(path), "precision": key,
              "size_bytes": path.stat().st_size, "inference_ms_p50": round(p50[key], 2)}
        for key, path in (("fp32", fp32), ("int8", int8))
    }
    variants["int8"]["ap50_vs_fp32"] = agree["ap50"]
    return {
        "input_name": input_name,
        "variants": variants,
        "default_variant": default,
        "quantization": {**agree, "fp32_ms_p50": round(p50["fp32"], 2), "int8_ms_p50": round(p50["int8"], 2),
                         "calibration_images": len(tensors), "evaluation_images": len(eval_tensors or tensors),
                         "reason": reason, "gate": GATE, "cpu": cpu_features(), "onnxruntime": ort.__version__},
    }
