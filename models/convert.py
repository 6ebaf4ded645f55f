"""`edgewatch models convert`: the store's fp32 ONNX → a variant for an accelerator runtime,
int8-calibrated on real photos, measured against fp32, added to the store crash-safely.

Conversions are slow (a 25 s onnx2tf run, a toolkit venv of gigabytes), so each result is cached
under ``<cache>/conversions/<target>-<key>``, the key being the sha256 of the source ONNX and of
the recipe (toolchain pins, options). The agreement measured when it was built is cached with it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from tqdm import tqdm

from edgewatch.models.files import atomic_write_json, fsync_dir, sha256_file
from edgewatch.models.manifest import InputSpec, ModelManifest, Variant
from edgewatch.models.photos import PHOTOS, ensure_photos
from edgewatch.models.preprocess import letterbox
from edgewatch.models.quantize import Runner, calibration_tensors, match_detections, onnx_runner
from edgewatch.models.store import ModelStore

TARGETS = ("rknn", "edgetpu", "tflite", "tensorrt")
RKNN_PLATFORMS = ("rk3588", "rk3576", "rk3568", "rk3566")
CALIBRATION = "real photos: " + ", ".join(f"{p.package} {p.version} {Path(p.member).name}" for p in PHOTOS.values())

Say = Callable[[str], None]


class ConvertError(RuntimeError):
    pass


def agreement_with(reference: Runner, candidate: Runner, ref_tensors: list[np.ndarray],
                   cand_tensors: list[np.ndarray], kind: str, size: tuple[int, int]) -> float:
    """The agreement share of :func:`edgewatch.models.quantize.match_detections`."""
    return float(match_detections(reference, candidate, ref_tensors, cand_tensors, kind, size)["agreement"])


def _cached(cache: Path, target: str, source_sha: str, recipe: str,
            build: Callable[[Path], dict]) -> tuple[Path, dict]:
    """Return (file, meta) of a conversion, building it into the cache on a miss.

    ``build(folder)`` writes the converted file into ``folder`` and returns meta with its
    ``file`` name; the folder is renamed into place only when complete.
    """
    key = hashlib.sha256(f"{target}|{source_sha}|{recipe}".encode()).hexdigest()[:32]
    done = cache / "conversions" / f"{target}-{key}"
    if (done / "meta.json").is_file():
        meta = json.loads((done / "meta.json").read_text())
        if (done / meta["file"]).is_file():
            return done / meta["file"], meta
    tmp = done.with_name(f".{done.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        meta = build(tmp)
        atomic_write_json(tmp / "meta.json", meta)
        if done.exists():
            shutil.rmtree(done)
        tmp.replace(done)
        fsync_dir(done.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return done / meta["file"], meta


def convert(name: str, target: str, store: ModelStore, cache: Path, platform: str = "rk3588",
            compiled: Path | None = None, say: Say = tqdm.write) -> tuple[ModelManifest, str]:
    """Convert ``name`` for ``target``; returns (manifest, a line saying what was done)."""
    if target not in TARGETS:
        raise ConvertError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
    manifest = store.get(name)
    if "fp32" not in manifest.variants:
        raise ConvertError(f"{name} has no fp32 ONNX variant to convert from; reinstall it")
    if target == "tensorrt":
        return manifest, ("TensorRT engines are built on the Jetson itself, from the fp32 ONNX, the first time the "
                          "daemon loads the model (cached under <cache_dir>/tensorrt); nothing to convert here")
    fp32 = store.path(manifest, "fp32")
    photos = ensure_photos(cache, progress=say)
    ref_tensors = calibration_tensors(list(photos.values()), manifest.input, manifest.preprocessing)
    if target == "rknn":
        return _rknn(manifest, fp32, platform, list(photos.values()), ref_tensors, store, cache, say)
    return _tflite(manifest, target, fp32, ref_tensors, store, cache, compiled, say)


def _tflite_spec(manifest: ModelManifest, layout: str) -> InputSpec:
    if layout == manifest.input.layout:
        return manifest.input
    w, h = manifest.input.size
    return InputSpec(shape=(1, h, w, 3), layout="nhwc", dtype="float32")


def _tflite(manifest: ModelManifest, target: str, fp32: Path, ref_tensors: list[np.ndarray], store: ModelStore,
            cache: Path, compiled: Path | None, say: Say) -> tuple[ModelManifest, str]:
    from edgewatch.backends.tflite import TfliteCpuBackend
    from edgewatch.models.conversion import tflite as tflite_conversion

    edgetpu = target == "edgetpu"  # EdgeTPU-friendly ops (PRelu, no -inf pads): slower on XNNPACK
    key = "edgetpu-int8" if edgetpu else "tflite-int8"

    def build(folder: Path) -> dict:
        out = folder / f"{manifest.name}_int8{'_for_edgetpu' if edgetpu else ''}.tflite"
        say(f"converting {manifest.name} to full-integer int8 TFLite (onnx2tf, calibrated on {len(ref_tensors)} "
            "photo tensors; first time: builds a converter venv)…")
        meta = tflite_conversion.convert_onnx_to_tflite(fp32, out, ref_tensors, cache, progress=say, edgetpu=edgetpu)
        spec = _tflite_spec(manifest, meta["input_layout"])
        probe = Variant(file="", sha256="", precision="int8", size_bytes=0, runtime="tflite", input=spec)
        backend = TfliteCpuBackend()
        backend.load(out, manifest.model_copy(update={"variants": {**manifest.variants, "probe": probe}}), "probe")
        cand = ref_tensors if spec.layout == manifest.input.layout else [
            np.ascontiguousarray(t.transpose(0, 2, 3, 1)) for t in ref_tensors]
        agree = agreement_with(onnx_runner(fp32), backend.infer, ref_tensors, cand,
                               manifest.postprocessing, manifest.input.size)
        backend.close()
        return {"file": out.name, "toolkit": meta["toolkit"], "input_layout": meta["input_layout"], "agreement": agree}

    recipe = f"{tflite_conversion.env_name()}|edgetpu={edgetpu}|v2"  # v2: one-to-one agreement
    out, meta = _cached(cache, "tflite", manifest.variants["fp32"].sha256, recipe, build)
    variant = Variant(file="", sha256=sha256_file(out), precision="int8", size_bytes=out.stat().st_size,
                      runtime="tflite", source_sha256=manifest.variants["fp32"].sha256, toolkit=meta["toolkit"],
                      calibration=CALIBRATION, input=_tflite_spec(manifest, meta["input_layout"]),
                      agreement=meta["agreement"])
    line = f"{manifest.name}: int8 TFLite agrees with fp32 on {meta['agreement']:.1%} of detections ({meta['toolkit']})"
    if not edgetpu:
        return store.add_variant(manifest.name, key, variant, out), f"{line}; added as {key}"
    return _edgetpu(manifest, out, variant, store, compiled, say, line)


def _edgetpu(manifest: ModelManifest, tflite: Path, cpu_variant: Variant, store: ModelStore, compiled: Path | None,
             say: Say, line: str) -> tuple[ModelManifest, str]:
    if compiled is None:
        compiler = shutil.which("edgetpu_compiler")
        if compiler is None:
            return store.get(manifest.name), (
                f"{line}\nedgetpu_compiler is not on PATH (Coral packages it only for x86_64 Debian/Ubuntu, as "
                "edgetpu-compiler in its apt repository). Copy this file to such a machine:\n"
                f"  {tflite}\nrun there:\n  edgetpu_compiler -s {tflite.name}\n"
                f"and bring {tflite.stem}_edgetpu.tflite back with:\n"
                f"  edgewatch models convert {manifest.name} --target edgetpu --compiled {tflite.stem}_edgetpu.tflite")
        say("compiling for the EdgeTPU with edgetpu_compiler…")
        outdir = tflite.parent / "edgetpu_compiler"
        outdir.mkdir(exist_ok=True)
        proc = subprocess.run([compiler, "-s", "-o", str(outdir), str(tflite)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise ConvertError(f"edgetpu_compiler failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        compiled = outdir / f"{tflite.stem}_edgetpu.tflite"
    if not compiled.name.endswith("_edgetpu.tflite"):
        raise ConvertError(f"{compiled.name} is not an edgetpu_compiler output (*_edgetpu.tflite)")
    variant = cpu_variant.model_copy(update={
        "sha256": sha256_file(compiled), "size_bytes": compiled.stat().st_size, "runtime": "edgetpu",
        "toolkit": f"{cpu_variant.toolkit} + edgetpu_compiler"})
    result = store.add_variant(manifest.name, "edgetpu-int8", variant, compiled)
    return result, (f"{line}\n{manifest.name}: edgetpu-int8 added; it runs only on a Coral "
                    "(check with `edgewatch selftest --backend edgetpu`)")


def _rknn(manifest: ModelManifest, fp32: Path, platform: str, photos: list[Path], ref_tensors: list[np.ndarray],
          store: ModelStore, cache: Path, say: Say) -> tuple[ModelManifest, str]:
    from edgewatch.models.conversion import rknn as rknn_conversion

    if platform not in RKNN_PLATFORMS:
        raise ConvertError(f"unknown RKNN platform {platform!r}; expected one of {', '.join(RKNN_PLATFORMS)}")
    # The NPU normalises (mean/std are in the .rknn): the host sends letterboxed uint8 NHWC BGR.
    spec = rknn_conversion.runtime_input_spec(manifest.input)
    raw = manifest.preprocessing.model_copy(update={"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)})
    toolkit = f"rknn-toolkit2 {rknn_conversion.TOOLKIT_VERSION}"

    def build(folder: Path) -> dict:
        out = folder / f"{manifest.name}_{platform}.rknn"
        inputs = [letterbox(img, spec, raw)[0] for path in photos for img in (cv2.imread(str(path)),)
                  for img in (img, cv2.flip(img, 1))]  # same order as ref_tensors: each photo, then its mirror
        say(f"converting {manifest.name} to int8 RKNN for {platform} with {toolkit} (own venv, built on first use), "
            "then checking it on the toolkit's PC simulator against fp32 on the same photos…")
        outputs, _ = rknn_conversion.simulate(fp32, inputs, photos, platform, cache, progress=say,
                                              spec=manifest.input, pre=manifest.preprocessing, out_rknn=out)
        sim = iter(outputs)
        agree = agreement_with(onnx_runner(fp32), lambda _x: next(sim), ref_tensors, inputs,
                               manifest.postprocessing, manifest.input.size)
        return {"file": out.name, "agreement": agree}

    recipe = f"{rknn_conversion.env_name()}|{platform}|uint8-device-normalised|v2"  # v2: one-to-one agreement
    out, meta = _cached(cache, "rknn", manifest.variants["fp32"].sha256, recipe, build)
    variant = Variant(file="", sha256=sha256_file(out), precision="int8", size_bytes=out.stat().st_size,
                      runtime="rknn", platform=platform, source_sha256=manifest.variants["fp32"].sha256,
                      toolkit=toolkit, calibration=CALIBRATION, agreement=meta["agreement"], input=spec,
                      device_normalises=True)
    result = store.add_variant(manifest.name, f"rknn-{platform}", variant, out)
    return result, (f"{manifest.name}: rknn-{platform} added ({toolkit}), PC-simulator agreement with "
                    f"fp32 {meta['agreement']:.1%}")
