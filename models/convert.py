"""`edgewatch models convert`: the store's fp32 ONNX → a variant for an accelerator runtime,
int8-calibrated on real photos, measured against fp32, added to the store crash-safely."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from edgewatch.models.files import sha256_file
from edgewatch.models.manifest import InputSpec, ModelManifest, Variant
from edgewatch.models.photos import PHOTOS, ensure_photos
from edgewatch.models.quantize import CANDIDATE_CONF, MATCH_IOU, REFERENCE_CONF, calibration_tensors, iou
from edgewatch.models.postprocess import decode
from edgewatch.models.store import ModelStore

TARGETS = ("rknn", "edgetpu", "tflite", "tensorrt")
RKNN_PLATFORMS = ("rk3588", "rk3576", "rk3568", "rk3566")
CALIBRATION = "real photos: " + ", ".join(f"{p.package} {p.version} {Path(p.member).name}" for p in PHOTOS.values())

Runner = Callable[[np.ndarray], list[np.ndarray]]


class ConvertError(RuntimeError):
    pass


def agreement_with(reference: Runner, candidate: Runner, ref_tensors: list[np.ndarray],
                   cand_tensors: list[np.ndarray], kind: str, size: tuple[int, int]) -> float:
    """Share of the fp32 detections (conf ≥ 0.4) the candidate reproduces (same class, IoU ≥ 0.5)."""
    total = matched = 0
    for rt, ct in zip(ref_tensors, cand_tensors):
        rb, _, rc = decode(kind, reference(rt), size, REFERENCE_CONF)
        cb, _, cc = decode(kind, candidate(ct), size, CANDIDATE_CONF)
        for box, cls in zip(rb, rc):
            total += 1
            same = cc == cls
            matched += bool(same.any() and iou(box, cb[same]).max() >= MATCH_IOU)
    return round(matched / total, 4) if total else 1.0


def _onnx_runner(path: Path) -> Runner:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})


def convert(name: str, target: str, store: ModelStore, cache: Path, platform: str = "rk3588",
            compiled: Path | None = None, say: Callable[[str], None] = tqdm.write) -> tuple[ModelManifest, str]:
    """Convert ``name`` for ``target``; returns (manifest, a line saying what was done)."""
    manifest = store.get(name)
    if "fp32" not in manifest.variants:
        raise ConvertError(f"{name} has no fp32 ONNX variant to convert from; reinstall it")
    fp32 = store.path(manifest, "fp32")
    if target == "tensorrt":
        return manifest, ("TensorRT engines are built on the Jetson itself, from the fp32 ONNX, the first time the "
                          "daemon loads the model (cached under <cache_dir>/tensorrt); nothing to convert here")
    photos = ensure_photos(cache, progress=say)
    ref_tensors = calibration_tensors(list(photos.values()), manifest.input, manifest.preprocessing)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        work = Path(tmp)
        if target in ("tflite", "edgetpu"):
            return _tflite(manifest, target, fp32, ref_tensors, store, cache, work, compiled, say)
        if target == "rknn":
            return _rknn(manifest, fp32, platform, list(photos.values()), ref_tensors, store, cache, work, say)
    raise ConvertError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")


def _nhwc(tensors: list[np.ndarray]) -> list[np.ndarray]:
    return [np.ascontiguousarray(t.transpose(0, 2, 3, 1)) for t in tensors]


def _tflite(manifest: ModelManifest, target: str, fp32: Path, ref_tensors: list[np.ndarray], store: ModelStore,
            cache: Path, work: Path, compiled: Path | None, say) -> tuple[ModelManifest, str]:
    from edgewatch.backends.tflite import TfliteCpuBackend
    from edgewatch.models.conversion.tflite import convert_onnx_to_tflite

    out = work / f"{manifest.name}_int8.tflite"
    say(f"converting {manifest.name} to full-integer int8 TFLite (calibrated on {len(ref_tensors)} photo tensors)…")
    meta = convert_onnx_to_tflite(fp32, out, ref_tensors, cache, progress=say)
    layout = meta["input_layout"]
    spec = manifest.input if layout == manifest.input.layout else InputSpec(
        shape=(1, manifest.input.size[1], manifest.input.size[0], 3), layout="nhwc", dtype="float32")
    cand_tensors = ref_tensors if layout == manifest.input.layout else _nhwc(ref_tensors)
    variant = Variant(file="", sha256=sha256_file(out), precision="int8", size_bytes=out.stat().st_size,
                      runtime="tflite", source_sha256=manifest.variants["fp32"].sha256, toolkit=meta["toolkit"],
                      calibration=CALIBRATION, input=spec)
    backend = TfliteCpuBackend()
    backend.load(out, manifest.model_copy(update={"variants": {**manifest.variants, "tflite-int8": variant}}),
                 "tflite-int8")
    agree = agreement_with(_onnx_runner(fp32), backend.infer, ref_tensors, cand_tensors,
                           manifest.postprocessing, manifest.input.size)
    backend.close()
    variant = variant.model_copy(update={"agreement": agree})
    result = store.add_variant(manifest.name, "tflite-int8", variant, out)
    line = f"{manifest.name}: tflite-int8 added ({meta['toolkit']}), agreement with fp32 {agree:.1%}"
    if target == "tflite":
        return result, line
    return _edgetpu(result, out, variant, store, compiled, say, line)


def _edgetpu(manifest: ModelManifest, tflite: Path, cpu_variant: Variant, store: ModelStore, compiled: Path | None,
             say, line: str) -> tuple[ModelManifest, str]:
    if compiled is None:
        compiler = shutil.which("edgetpu_compiler")
        if compiler is None:
            kept = store.path(manifest, "tflite-int8")
            return manifest, (f"{line}\nedgetpu_compiler is not on PATH (it is packaged only for x86_64 Debian/Ubuntu "
                              "in Coral's apt repository as edgetpu-compiler). On such a machine run:\n"
                              f"  edgetpu_compiler -s {kept.name}\n"
                              f"then copy the resulting {kept.stem}_edgetpu.tflite here and run:\n"
                              f"  edgewatch models convert {manifest.name} --target edgetpu --compiled FILE")
        say("compiling for the EdgeTPU with edgetpu_compiler…")
        proc = subprocess.run([compiler, "-s", "-o", str(tflite.parent), str(tflite)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise ConvertError(f"edgetpu_compiler failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        compiled = tflite.with_name(tflite.stem + "_edgetpu.tflite")
    variant = cpu_variant.model_copy(update={
        "sha256": sha256_file(compiled), "size_bytes": compiled.stat().st_size, "runtime": "edgetpu",
        "toolkit": f"{cpu_variant.toolkit} + edgetpu_compiler", "agreement": None})
    result = store.add_variant(manifest.name, "edgetpu-int8", variant, compiled)
    return result, f"{line}\n{manifest.name}: edgetpu-int8 added; it runs only on a Coral (check with `edgewatch selftest`)"


def _rknn(manifest: ModelManifest, fp32: Path, platform: str, photos: list[Path], ref_tensors: list[np.ndarray],
          store: ModelStore, cache: Path, work: Path, say) -> tuple[ModelManifest, str]:
    import cv2

    from edgewatch.models.conversion.rknn import TOOLKIT_VERSION, runtime_input_spec, simulate
    from edgewatch.models.preprocess import letterbox

    if platform not in RKNN_PLATFORMS:
        raise ConvertError(f"unknown RKNN platform {platform!r}; expected one of {', '.join(RKNN_PLATFORMS)}")
    out = work / f"{manifest.name}_{platform}.rknn"
    # The NPU normalises (mean/std are in the .rknn): the host sends letterboxed uint8 NHWC BGR.
    spec = runtime_input_spec(manifest.input)
    raw = manifest.preprocessing.model_copy(update={"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)})
    inputs = [letterbox(img, spec, raw)[0] for path in photos for img in (cv2.imread(str(path)),)
              for img in (img, cv2.flip(img, 1))]
    say(f"converting {manifest.name} to int8 RKNN for {platform} with rknn-toolkit2 (own venv, built on first use), "
        "then checking it on the toolkit's PC simulator against fp32 on the same photos…")
    outputs, meta = simulate(fp32, inputs, photos, platform, cache, progress=say, spec=manifest.input,
                             pre=manifest.preprocessing, out_rknn=out)
    sim = iter(outputs)
    agree = agreement_with(_onnx_runner(fp32), lambda _x: next(sim), ref_tensors, inputs,
                           manifest.postprocessing, manifest.input.size)
    variant = Variant(file="", sha256=sha256_file(out), precision="int8", size_bytes=out.stat().st_size,
                      runtime="rknn", platform=platform, source_sha256=manifest.variants["fp32"].sha256,
                      toolkit=f"rknn-toolkit2 {TOOLKIT_VERSION}", calibration=CALIBRATION, agreement=agree,
                      input=spec, device_normalises=True)
    result = store.add_variant(manifest.name, f"rknn-{platform}", variant, out)
    return result, (f"{manifest.name}: rknn-{platform} added ({variant.toolkit}), PC-simulator agreement with "
                    f"fp32 {agree:.1%}")
