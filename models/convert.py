"""`edgewatch models convert`: the store's fp32 ONNX → a variant for an accelerator runtime,
int8-calibrated on real photos, measured against fp32, added to the store crash-safely.

Conversions are slow (a 25 s onnx2tf run, a toolkit venv of gigabytes), so each result is cached
under ``<cache>/conversions/<target>-<key>``, the key being the sha256 of the source ONNX and of
the recipe (toolchain pins, options). The agreement measured when it was built is cached with it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from tqdm import tqdm

from edgewatch.models.conversion.tool_env import ConversionError, ModelNotConvertible
from edgewatch.models.files import atomic_dir, atomic_write_json, sha256_file
from edgewatch.models.manifest import AP50_REQUIRED, CPU_RUNTIMES, InputSpec, ModelManifest, Variant
from edgewatch.models.photos import PHOTOS, ensure_photos
from edgewatch.models.runtime.preprocess import letterbox
from edgewatch.models.quantize import (Runner, calibration_tensors, evaluation_tensors, match_detections,
                                      onnx_runner)
from edgewatch.models.store import ModelStore

TARGETS = ("rknn", "edgetpu", "tflite", "tensorrt")
RKNN_PLATFORMS = ("rk3588", "rk3576", "rk3568", "rk3566")
# The face models' conversions (models.face_convert); TensorRT builds its engine from the ONNX on the Jetson
# (with an optimisation profile for their dynamic sizes).
FACE_TARGETS = {"face_detection": ("rknn", "edgetpu"), "face_embedding": ("rknn", "edgetpu")}
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
    failed = done.with_name(done.name + ".failed")  # the converter already failed on exactly these inputs
    if failed.is_file():
        raise ModelNotConvertible(f"{failed.read_text().strip()}\n(failed before with the same model and converter; "
                                  f"delete {failed} to try again)")
    with atomic_dir(done, replace=True) as tmp:  # replaces a damaged entry (meta.json or its file gone)
        try:
            meta = build(tmp)
        except ModelNotConvertible as exc:
            failed.parent.mkdir(parents=True, exist_ok=True)
            failed.write_text(str(exc)[-4000:] + "\n")
            raise
        atomic_write_json(tmp / "meta.json", meta)
    return done / meta["file"], meta


def convert(name: str, target: str, store: ModelStore, cache: Path, platform: str = "rk3588",
            compiled: Path | None = None, say: Say = tqdm.write) -> tuple[ModelManifest, str]:
    """Convert ``name`` for ``target``; returns (manifest, a line saying what was done)."""
    if target not in TARGETS:
        raise ConvertError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
    manifest = store.get(name)
    if "fp32" not in manifest.variants:
        raise ConvertError(f"{name} has no fp32 ONNX variant to convert from; reinstall it")
    if manifest.task != "detection" and manifest.task not in FACE_TARGETS:
        raise ConvertError(f"{name} is a {manifest.task} model: converting it for {target} is not done yet; "
                           "it runs on ONNX Runtime (CPU) as installed")
    if target == "tensorrt":
        return manifest, ("TensorRT engines are built on the Jetson itself, from the fp32 ONNX, the first time the "
                          "daemon loads the model (cached under <cache_dir>/tensorrt); nothing to convert here")
    if manifest.task in FACE_TARGETS:
        if target not in FACE_TARGETS[manifest.task]:
            raise ConvertError(f"{name} is a {manifest.task} model: converting it for {target} is not done yet "
                               f"(it can be converted for {', '.join(FACE_TARGETS[manifest.task])}); it runs on "
                               "ONNX Runtime on the CPU, which takes any image size")
        from edgewatch.models.face_convert import convert_face

        return convert_face(manifest, target, store.path(manifest, "fp32"), store, cache, platform, compiled, say)
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
    from edgewatch.models.conversion import tflite as tflite_conversion

    edgetpu = target == "edgetpu"  # EdgeTPU-friendly ops (PRelu, no -inf pads): slower on XNNPACK
    key = "edgetpu-int8" if edgetpu else "tflite-int8"

    def build(folder: Path, tfjs: Path | None) -> dict:
        out = folder / f"{manifest.name}_int8{'_for_edgetpu' if edgetpu else ''}.tflite"
        how = "its TF.js graph with TensorFlow" if tfjs else "onnx2tf"  # Edge TPU rewrites: onnx2tf route only
        say(f"converting {manifest.name} to full-integer int8 TFLite ({how}, calibrated on {len(ref_tensors)} "
            "photo tensors; first time: builds a converter venv)…")
        meta = tflite_conversion.convert_onnx_to_tflite(fp32, out, ref_tensors, cache, progress=say, edgetpu=edgetpu,
                                                        tfjs_model=tfjs)
        return {"file": out.name, "toolkit": meta["toolkit"], "input_layout": meta["input_layout"]}

    # A model converted from a TF.js graph that is NHWC already is best converted from that graph:
    # onnx2tf's NCHW→NHWC rewrite misreads such graphs (YOLOv5s). An NCHW graph (NanoDet) gains
    # from that rewrite (no transposes left), so onnx2tf goes first there; each falls back to the other.
    from edgewatch.models.installer import tfjs_source

    tfjs = tfjs_source(manifest, cache, say)
    routes: list[Path | None] = [None] if tfjs is None else (
        [tfjs, None] if manifest.input.layout == "nhwc" else [None, tfjs])
    failures = []
    for route in routes:
        recipe = f"{tflite_conversion.env_name()}|edgetpu={edgetpu}|v2" + ("|tfjs-graph-v1" if route else "")
        try:
            out, meta = _cached(cache, "tflite", manifest.variants["fp32"].sha256, recipe,
                                lambda folder, route=route: build(folder, route))
            break
        except ConversionError as exc:
            failures.append(str(exc))
            if route is not routes[-1]:
                say(f"{manifest.name}: that conversion failed; trying the other converter")
    else:
        raise ConversionError("\n".join(failures))
    spec = _tflite_spec(manifest, meta["input_layout"])
    variant = Variant(file="", sha256=sha256_file(out), precision="int8", size_bytes=out.stat().st_size,
                      runtime="tflite", source_sha256=manifest.variants["fp32"].sha256, toolkit=meta["toolkit"],
                      calibration=CALIBRATION, input=spec)
    say(f"judging {manifest.name}'s int8 TFLite against fp32 on the evaluation views…")
    variant = _judge_tflite(manifest, fp32, out, variant, cache)
    line = (f"{manifest.name}: int8 TFLite AP50 {variant.ap50_vs_fp32:.3f} against fp32's detections "
            f"(agreement {variant.agreement:.1%}; {meta['toolkit']})")
    if not edgetpu:
        timings, default, why = decide_cpu_default(
            manifest.model_copy(update={"variants": {**manifest.variants, key: variant}}), store, {key: out})
        result = store.add_variant(manifest.name, key, variant, out,
                                   change=lambda m: m.retimed(timings, default, why))
        return result, f"{line}; added as {key}; default variant {default}: {why}"
    return _edgetpu(manifest, out, variant, store, compiled, say, line)


def _judge_tflite(manifest: ModelManifest, fp32: Path, tflite: Path, variant: Variant, cache: Path) -> Variant:
    """The int8 gate of models.quantize for a TFLite file: AP50 against fp32's detections on the
    evaluation views."""
    from edgewatch.backends.tflite import TfliteCpuBackend

    probe = TfliteCpuBackend.probe()
    if not probe.available:
        raise ConvertError(f"cannot judge the TFLite model here: {probe.reason}")
    views = evaluation_tensors(ensure_photos(cache), manifest.input, manifest.preprocessing)
    spec = variant.input or manifest.input
    cand = views if spec.layout == manifest.input.layout else [
        np.ascontiguousarray(t.transpose(0, 2, 3, 1)) for t in views]
    backend = TfliteCpuBackend()
    backend.load(tflite, manifest.model_copy(update={"variants": {**manifest.variants, "probe": variant}}), "probe")
    try:
        found = match_detections(onnx_runner(fp32), backend.infer, views, cand, manifest.postprocessing,
                                 manifest.input.size)
    finally:
        backend.close()
    return variant.model_copy(update={"agreement": float(found["agreement"]), "ap50_vs_fp32": float(found["ap50"])})


def decide_cpu_default(manifest: ModelManifest, store: ModelStore,
                       files: dict[str, Path]) -> tuple[dict[str, float], str, str]:
    """(p50 of each CPU variant timed here together, the default they decide, why): the
    arguments of :meth:`ModelManifest.retimed`. ``files``: variants not in the store yet."""
    timings = time_cpu_variants(manifest, store, files)
    default, why = cpu_default(manifest.retimed(timings, manifest.default_variant, ""))
    return timings, default, why


def time_cpu_variants(manifest: ModelManifest, store: ModelStore, files: dict[str, Path]) -> dict[str, float]:
    """Every CPU variant timed afresh on its own backend, together and in alternation (so the
    ONNX figures measured at install under other conditions are not compared with a new one)."""
    from edgewatch.backends.onnxruntime_cpu import OnnxRuntimeCpuBackend
    from edgewatch.backends.tflite import TfliteCpuBackend
    from edgewatch.backends.timing import measure_p50s

    loaded = {}
    try:
        for key, v in manifest.variants.items():
            if v.runtime not in CPU_RUNTIMES:
                continue
            backend = TfliteCpuBackend() if v.runtime == "tflite" else OnnxRuntimeCpuBackend()
            backend.load(files.get(key) or store.path(manifest, key), manifest, key)
            loaded[key] = backend
        return measure_p50s(loaded)
    finally:
        for backend in loaded.values():
            backend.close()


# Another runtime replaces ONNX Runtime's variant only when at least this much faster: two
# variants within timing noise of each other (NanoDet here: 6.3-6.9 ms against 7.7-7.9) must
# not swap the default from one install to the next.
SWITCH_MARGIN = 0.9


def cpu_default(manifest: ModelManifest) -> tuple[str, str]:
    """The fastest faithful CPU variant measured here (ONNX fp32/int8, TFLite int8), and why; a
    TFLite variant must beat the fastest faithful ONNX one by SWITCH_MARGIN."""
    timed = {k: v for k, v in manifest.variants.items()
             if v.runtime in CPU_RUNTIMES and v.inference_ms_p50 is not None}
    faithful = {k: v.inference_ms_p50 for k, v in timed.items() if manifest.faithful(k)}
    if not faithful:
        return manifest.default_variant, "no other CPU variant is measured and faithful"
    best = min(faithful, key=faithful.get)
    onnx = [k for k in faithful if timed[k].runtime == "onnx"]
    if onnx and timed[best].runtime != "onnx":
        fastest_onnx = min(onnx, key=faithful.get)
        if faithful[best] > SWITCH_MARGIN * faithful[fastest_onnx]:
            best = fastest_onnx
    others = ", ".join(f"{k} {v.inference_ms_p50} ms{'' if k in faithful else ' (unfaithful)'}"
                       for k, v in timed.items() if k != best)
    return best, (f"the fastest faithful CPU variant, another runtime only when {1 - SWITCH_MARGIN:.0%} faster "
                  f"({best} {faithful[best]} ms; {others})")


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
        found = match_detections(onnx_runner(fp32), lambda _x: next(sim), ref_tensors, inputs,
                                 manifest.postprocessing, manifest.input.size)
        return {"file": out.name, "agreement": float(found["agreement"]), "ap50": float(found["ap50"])}

    recipe = f"{rknn_conversion.env_name()}|{platform}|uint8-device-normalised|v3"  # v3: AP50 against fp32 too
    out, meta = _cached(cache, "rknn", manifest.variants["fp32"].sha256, recipe, build)
    variant = Variant(file="", sha256=sha256_file(out), precision="int8", size_bytes=out.stat().st_size,
                      runtime="rknn", platform=platform, source_sha256=manifest.variants["fp32"].sha256,
                      toolkit=toolkit, calibration=CALIBRATION, agreement=meta["agreement"],
                      ap50_vs_fp32=meta["ap50"], input=spec, device_normalises=True)
    result = store.add_variant(manifest.name, f"rknn-{platform}", variant, out)
    line = (f"{manifest.name}: rknn-{platform} added ({toolkit}), PC-simulator AP50 against fp32's detections "
            f"{meta['ap50']:.3f} (agreement {meta['agreement']:.1%})")
    if not result.faithful(f"rknn-{platform}"):
        line += (f"; below the {AP50_REQUIRED:.2f} the int8 gate needs, so the NPU will not run it and the model "
                 "stays on the CPU")
    return result, line
