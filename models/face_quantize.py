"""The int8 gate of the face models: quantise them as the detectors are (Conv only, per-channel
weights, calibrated on real photos: the labelled face photos of models.photos), then keep int8
as the default only where it is faster here and faithful to fp32 in what the face path uses.

- A face detector is faithful when int8 finds at least FACES_REQUIRED of the faces fp32 finds on
  the face photos, as taken and mirrored, and its five landmarks (what alignment uses) stay
  within LANDMARK_DRIFT of the face's width, median over the faces.
- A face embedder is faithful when its int8 vectors point where fp32's do: cosine between the
  two at least COSINE_REQUIRED for the median face and COSINE_LOW for the worst 5 %. A small
  drift there moves every similarity and so every recognition decision.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edgewatch.models.manifest import InputSpec, Preprocessing
from edgewatch.models.photos import FACE_PHOTOS
from edgewatch.models.quantize import Runner, cpu_features, iou, latency_p50_ms, onnx_runner, quantize_int8
from edgewatch.models.runtime.heads import HEADS, decode_faces
from edgewatch.models.runtime.preprocess import face_batch, fit_pad

# Change when the rule, its data or what it records changes: installed models are judged again.
# v2: the int8 variant records its verdict (Variant.faithful_to_fp32), which other runtimes' variants are compared with.
FACE_GATE = "face-int8-vs-fp32-on-face-photos/v2"
FACES_REQUIRED = 0.95
LANDMARK_DRIFT = 0.03
COSINE_REQUIRED, COSINE_LOW = 0.98, 0.95
REFERENCE_CONF, CANDIDATE_CONF, MATCH_IOU = 0.4, 0.3, 0.5
QUANT_OPSET = 13  # per-channel DequantizeLinear (its axis) needs opset 13


def _images(photos: dict[str, Path]) -> list[np.ndarray]:
    """Each face photo (BGR) as taken and mirrored."""
    out = []
    for name in FACE_PHOTOS:
        img = cv2.imread(str(photos[name]), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"cannot read face photo {photos[name]}")
        out += [img, cv2.flip(img, 1)]
    return out


def face_crops(photos: dict[str, Path], size: int = 112) -> list[np.ndarray]:
    """Every labelled face, a square around its box scaled to ``size`` (unaligned: enough to
    calibrate ranges and compare fp32 with int8), as taken and mirrored."""
    crops = []
    for name, labelled in FACE_PHOTOS.items():
        img = cv2.imread(str(photos[name]), cv2.IMREAD_COLOR)
        h, w = img.shape[:2]
        for face in labelled.faces:
            x1, y1, x2, y2 = face.box
            side = max(x2 - x1, y2 - y1) * 1.1
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            a, b = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
            crop = cv2.resize(img[b:int(min(h, cy + side / 2)), a:int(min(w, cx + side / 2))], (size, size),
                              interpolation=cv2.INTER_AREA)
            crops += [crop, cv2.flip(crop, 1)]
    return crops


def _opset13(fp32: Path, out: Path) -> Path:
    """``fp32`` itself if its opset allows per-channel quantisation, else a copy converted to it."""
    import onnx
    from onnx import version_converter

    model = onnx.load(str(fp32))
    if next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= QUANT_OPSET:
        return fp32
    onnx.save(version_converter.convert_version(model, QUANT_OPSET), str(out))
    return out


def face_tensors(task: str, spec: InputSpec, pre: Preprocessing, photos: dict[str, Path]) -> list[np.ndarray]:
    """What the model is calibrated and judged on: the face photos (a detector) or their faces (an embedder)."""
    if task == "face_detection":
        return [fit_pad(img, spec, pre)[0] for img in _images(photos)]
    return [face_batch([crop], spec, pre) for crop in face_crops(photos, spec.size[0])]


def build_int8(task: str, fp32: Path, int8: Path, spec: InputSpec, pre: Preprocessing,
               photos: dict[str, Path]) -> None:
    """Write the int8 model, calibrated on :func:`face_tensors`."""
    tensors = face_tensors(task, spec, pre, photos)
    source = _opset13(fp32, int8.with_name("opset13.onnx"))
    try:
        quantize_int8(source, int8, tensors)
    finally:
        if source != fp32:
            source.unlink(missing_ok=True)


def detector_fidelity(reference: Runner, candidate: Runner, ref_tensors: list[np.ndarray],
                      cand_tensors: list[np.ndarray], head: str) -> tuple[bool, dict]:
    """Whether ``candidate`` finds the faces ``reference`` finds, with the same landmarks, on the
    same photos (``cand_tensors``: those photos in the candidate's own input format, at the same
    scale), and the figures."""
    found = matched = 0
    drifts = []
    for rt, ct in zip(ref_tensors, cand_tensors):
        rb, _, rl = decode_faces(head, reference(rt), _fed(rt), REFERENCE_CONF)
        cb, _, cl = decode_faces(head, candidate(ct), _fed(ct), CANDIDATE_CONF)
        found += len(rb)
        for box, marks in zip(rb, rl):
            if not len(cb):
                continue
            overlap = iou(box, cb)
            j = int(np.argmax(overlap))
            if overlap[j] >= MATCH_IOU:
                matched += 1
                drifts.append(float(np.linalg.norm(marks - cl[j], axis=1).mean() / max(box[2] - box[0], 1.0)))
    share = matched / found if found else 0.0
    drift = float(np.median(drifts)) if drifts else 1.0
    ok = found >= 20 and share >= FACES_REQUIRED and drift <= LANDMARK_DRIFT
    why = (f"finds {matched} of fp32's {found} faces ({share:.1%}), landmarks drift {drift:.1%} of the face "
           f"width (median)")
    return ok, {"reference_faces": found, "matched": matched, "agreement": round(share, 4),
                "landmark_drift": round(drift, 4), "fidelity": why}


def _fed(tensor: np.ndarray) -> tuple[int, int]:
    """(width, height) of a 1×3×H×W or 1×H×W×3 image tensor."""
    return (tensor.shape[3], tensor.shape[2]) if tensor.shape[1] == 3 else (tensor.shape[2], tensor.shape[1])


def embedder_fidelity(reference: Runner, candidate: Runner, ref_tensors: list[np.ndarray],
                      cand_tensors: list[np.ndarray], head: str) -> tuple[bool, dict]:
    """Whether ``candidate``'s vectors point where ``reference``'s do for the same faces, and the figures."""
    decoder = HEADS[head].decoder
    cosines = np.array([float(decoder(reference(rt))[0] @ decoder(candidate(ct))[0])
                        for rt, ct in zip(ref_tensors, cand_tensors)])
    median, low = float(np.median(cosines)), float(np.percentile(cosines, 5))
    ok = median >= COSINE_REQUIRED and low >= COSINE_LOW
    why = f"cosine to fp32's vectors {median:.3f} median, {low:.3f} at the worst 5 % of {len(cosines)} faces"
    return ok, {"faces": len(cosines), "cosine_median": round(median, 4), "cosine_p5": round(low, 4),
                "fidelity": why}


FIDELITY = {"face_detection": detector_fidelity, "face_embedding": embedder_fidelity}


def judge(task: str, head: str, fp32: Path, int8: Path, tensors: list[np.ndarray]) -> dict:
    """Time both and check int8's fidelity; the report's variants, default and why."""
    import onnxruntime as ort

    from edgewatch.models.files import sha256_file

    largest = max(tensors, key=lambda t: t.size)
    p50 = latency_p50_ms({"fp32": fp32, "int8": int8}, largest, runs=20, warm_up_s=0.5)
    faithful, figures = FIDELITY[task](onnx_runner(fp32), onnx_runner(int8), tensors, tensors, head)
    speed = f"int8 {p50['int8']:.1f} ms vs fp32 {p50['fp32']:.1f} ms"
    if p50["int8"] >= p50["fp32"]:
        default, reason = "fp32", f"int8 is not faster here ({speed})"
    elif not faithful:
        default, reason = "fp32", f"int8 is not faithful enough: {figures['fidelity']}"
    else:
        default, reason = "int8", f"{speed}; {figures['fidelity']}"
    input_name = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"]).get_inputs()[0].name
    variants = {key: {"file": f"{key}.onnx", "sha256": sha256_file(path), "precision": key,
                      "size_bytes": path.stat().st_size, "inference_ms_p50": round(p50[key], 2)}
                for key, path in (("fp32", fp32), ("int8", int8))}
    variants["int8"]["calibration"] = f"{len(tensors)} face photo views (models.photos.FACE_PHOTOS)"
    if "agreement" in figures:
        variants["int8"]["agreement"] = figures["agreement"]
    variants["int8"].update(faithful_to_fp32=faithful, fidelity=figures["fidelity"])
    return {"input_name": input_name, "variants": variants, "default_variant": default,
            "quantization": {**figures, "fp32_ms_p50": round(p50["fp32"], 2), "int8_ms_p50": round(p50["int8"], 2),
                             "reason": reason, "gate": FACE_GATE, "cpu": cpu_features(),
                             "onnxruntime": ort.__version__}}
