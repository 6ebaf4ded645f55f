"""`edgewatch models convert` for the face models: CenterFace and MobileFaceNet for an NPU or a
TPU, judged by the face gate of :mod:`edgewatch.models.face_quantize` (the faces and landmarks
fp32 finds; the direction of fp32's vectors), never by the detectors' AP50.

- The accelerators want fixed shapes: the detector is converted at its largest input (640×640;
  ``fit_pad`` pads every image to it, at the same scale as on the CPU), the embedder at a batch
  of one (``runtime.faces.embed`` then feeds faces one at a time).
- RKNN: the detector is tried in int8 first and kept in float16 when int8 is not faithful; the
  embedder is built in float16 at once (its int8 moved vectors too far on the CPU already).
  Judged on the toolkit's PC simulator, on the same face photos as the CPU gate.
- Edge TPU: a full-integer int8 TFLite through onnx2tf (from a fixed-shape copy of the ONNX),
  judged with the TFLite runtime here, then compiled by ``edgetpu_compiler`` (or brought back
  compiled, as for the detectors). An embedder whose int8 failed the CPU gate is not converted:
  the Edge TPU runs int8 only. No plain TFLite variant for the CPU: the ONNX models take any
  image size, a fixed 640×640 TFLite would be slower on the small person crops cameras send.
- A variant that fails its gate is stored with the verdict, so the backends never run it
  (``ModelManifest.faithful``) and the line says so; the model then runs on the CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from edgewatch.models.face_quantize import FACE_GATE, FIDELITY, face_tensors
from edgewatch.models.files import sha256_file
from edgewatch.models.manifest import InputSpec, ModelManifest, Preprocessing, Variant
from edgewatch.models.photos import ensure_face_photos
from edgewatch.models.quantize import onnx_runner
from edgewatch.models.store import ModelStore

Say = Callable[[str], None]
CALIBRATION = "face photos: models.photos.FACE_PHOTOS, each as taken and mirrored"


def fixed_input(spec: InputSpec) -> InputSpec:
    """The model's input at one fixed shape: its largest size, a batch of one."""
    return spec.model_copy(update={"multiple_of": None})


def convert_face(manifest: ModelManifest, target: str, fp32: Path, store: ModelStore, cache: Path, platform: str,
                 compiled: Path | None, say: Say) -> tuple[ModelManifest, str]:
    """Convert a face model for ``target``; returns (manifest, a line saying what was done)."""
    photos = ensure_face_photos(cache, progress=say)
    reference = face_tensors(manifest.task, manifest.input, manifest.preprocessing, photos)
    if target == "rknn":
        return _rknn(manifest, fp32, platform, photos, reference, store, cache, say)
    return _edgetpu(manifest, fp32, photos, reference, store, cache, compiled, say)


def _raw(pre: Preprocessing) -> Preprocessing:
    """``pre`` without normalisation: the device applies mean and std."""
    return pre.model_copy(update={"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)})


def _verdict(manifest: ModelManifest, fp32: Path, candidate: Callable[[np.ndarray], list[np.ndarray]],
             reference: list[np.ndarray], fed: list[np.ndarray]) -> dict:
    ok, figures = FIDELITY[manifest.task](onnx_runner(fp32), candidate, reference, fed, manifest.postprocessing)
    return {"faithful": ok, "gate": FACE_GATE, **figures}


def _rknn(manifest: ModelManifest, fp32: Path, platform: str, photos: dict[str, Path], reference: list[np.ndarray],
          store: ModelStore, cache: Path, say: Say) -> tuple[ModelManifest, str]:
    from edgewatch.models.convert import RKNN_PLATFORMS, ConvertError, _cached
    from edgewatch.models.conversion import rknn as rknn_conversion

    if platform not in RKNN_PLATFORMS:
        raise ConvertError(f"unknown RKNN platform {platform!r}; expected one of {', '.join(RKNN_PLATFORMS)}")
    # The NPU normalises (mean/std are in the .rknn): the host sends uint8 NHWC in the model's colours.
    spec = rknn_conversion.runtime_input_spec(fixed_input(manifest.input))
    fed = face_tensors(manifest.task, spec, _raw(manifest.preprocessing), photos)
    w, h = spec.size
    toolkit = f"rknn-toolkit2 {rknn_conversion.TOOLKIT_VERSION}"
    precisions = ("int8", "fp16") if manifest.task == "face_detection" else ("fp16",)

    def build(folder: Path) -> dict:
        for precision in precisions:
            out = folder / f"{manifest.name}_{platform}_{precision}.rknn"
            say(f"converting {manifest.name} to {precision} RKNN for {platform} at {w}x{h} with {toolkit} (own venv, "
                "built on first use), then checking it on the toolkit's PC simulator against fp32 on the face photos…")
            outputs, _ = rknn_conversion.simulate(
                fp32, fed, [], platform, cache, progress=say, spec=manifest.input, pre=manifest.preprocessing,
                out_rknn=out, build=rknn_conversion.Build(samples=fed, input_shape=(1, 3, h, w),
                                                          fp16=precision == "fp16"))
            sim = iter(outputs)
            verdict = _verdict(manifest, fp32, lambda _x: next(sim), reference, fed)
            say(f"{manifest.name} {precision} on the simulator: {verdict['fidelity']}"
                f"{'' if verdict['faithful'] else ' (not faithful)'}")
            if verdict["faithful"] or precision == precisions[-1]:
                return {"file": out.name, "precision": precision, **verdict}
            out.unlink()
        raise AssertionError("unreachable")

    recipe = f"{rknn_conversion.env_name()}|{platform}|face|{FACE_GATE}|{w}x{h}|v1"
    out, meta = _cached(cache, "rknn", manifest.variants["fp32"].sha256, recipe, build)
    key = f"rknn-{platform}"
    variant = Variant(file="", sha256=sha256_file(out), precision=meta["precision"], size_bytes=out.stat().st_size,
                      runtime="rknn", platform=platform, source_sha256=manifest.variants["fp32"].sha256,
                      toolkit=toolkit, calibration=CALIBRATION if meta["precision"] == "int8" else None,
                      agreement=meta.get("agreement"), input=spec, device_normalises=True,
                      faithful_to_fp32=meta["faithful"], fidelity=meta["fidelity"])
    result = store.add_variant(manifest.name, key, variant, out)
    line = f"{manifest.name}: {key} added ({toolkit}, {meta['precision']}, {w}x{h}); PC simulator: {meta['fidelity']}"
    if not meta["faithful"]:
        line += "; not faithful to fp32, so the NPU will not run it and the model stays on the CPU"
    return result, line


def fixed_onnx(fp32: Path, spec: InputSpec, out: Path) -> Path:
    """A copy of ``fp32`` whose symbolic input dimensions take ``spec``'s shape (batch 1), for
    converters that need one fixed shape; ``fp32`` itself when it has none."""
    import onnx

    model = onnx.load(str(fp32))
    inputs = [i for i in model.graph.input if i.name not in {x.name for x in model.graph.initializer}]
    dims = inputs[0].type.tensor_type.shape.dim
    if all(d.HasField("dim_value") for d in dims):
        return fp32
    for d, value in zip(dims, spec.shape):
        if not d.HasField("dim_value"):
            d.dim_value = value
    del model.graph.value_info[:]  # shapes inferred from the symbolic ones
    onnx.save(model, str(out))
    return out


def _edgetpu(manifest: ModelManifest, fp32: Path, photos: dict[str, Path], reference: list[np.ndarray],
             store: ModelStore, cache: Path, compiled: Path | None, say: Say) -> tuple[ModelManifest, str]:
    import tempfile

    from edgewatch.backends.tflite import TfliteCpuBackend
    from edgewatch.models import convert as detector_convert
    from edgewatch.models.conversion import tflite as tflite_conversion

    int8 = manifest.variants.get("int8")
    if int8 is not None and int8.faithful_to_fp32 is False:
        raise detector_convert.ConvertError(
            f"{manifest.name} is not converted for the Edge TPU, which runs int8 only: its int8 model is not faithful "
            f"to fp32 ({int8.fidelity}). On a Coral box it runs on the CPU ({manifest.default_variant}).")
    probe = TfliteCpuBackend.probe()
    if not probe.available:
        raise detector_convert.ConvertError(f"cannot judge a TFLite model here: {probe.reason}")
    spec = fixed_input(manifest.input)
    calibration = face_tensors(manifest.task, spec, manifest.preprocessing, photos)

    def build(folder: Path) -> dict:
        out = folder / f"{manifest.name}_int8_for_edgetpu.tflite"
        say(f"converting {manifest.name} to full-integer int8 TFLite for the Edge TPU (onnx2tf, calibrated on "
            f"{len(calibration)} face photo tensors; first time: builds a converter venv)…")
        with tempfile.TemporaryDirectory(prefix="edgewatch-face-") as tmp:
            source = fixed_onnx(fp32, spec, Path(tmp) / "fixed.onnx")
            meta = tflite_conversion.convert_onnx_to_tflite(source, out, calibration, cache, progress=say,
                                                            edgetpu=True)
        input_spec = detector_convert._tflite_spec(manifest, meta["input_layout"]).model_copy(
            update={"multiple_of": None})
        verdict = _judge_tflite(manifest, fp32, out, input_spec, photos, reference)
        return {"file": out.name, "toolkit": meta["toolkit"], "input": input_spec.model_dump(mode="json"), **verdict}

    recipe = f"{tflite_conversion.env_name()}|edgetpu=True|face|{FACE_GATE}|v1"
    out, meta = detector_convert._cached(cache, "tflite", manifest.variants["fp32"].sha256, recipe, build)
    variant = Variant(file="", sha256=sha256_file(out), precision="int8", size_bytes=out.stat().st_size,
                      runtime="tflite", source_sha256=manifest.variants["fp32"].sha256, toolkit=meta["toolkit"],
                      calibration=CALIBRATION, agreement=meta.get("agreement"), input=InputSpec(**meta["input"]),
                      faithful_to_fp32=meta["faithful"], fidelity=meta["fidelity"])
    line = f"{manifest.name}: int8 TFLite for the Edge TPU {meta['fidelity']}"
    if not meta["faithful"]:
        return store.get(manifest.name), (f"{line}: not faithful to fp32, so it is not compiled for the Edge TPU; "
                                          f"{manifest.name} runs on the CPU there")
    return detector_convert._edgetpu(manifest, out, variant, store, compiled, say, line)


def _judge_tflite(manifest: ModelManifest, fp32: Path, tflite: Path, spec: InputSpec, photos: dict[str, Path],
                  reference: list[np.ndarray]) -> dict:
    """The face gate's verdict on the TFLite file, run by the TFLite runtime here."""
    from edgewatch.backends.tflite import TfliteCpuBackend

    probe = Variant(file="", sha256="", precision="int8", size_bytes=0, runtime="tflite", input=spec)
    backend = TfliteCpuBackend()
    backend.load(tflite, manifest.model_copy(update={"variants": {**manifest.variants, "probe": probe}}), "probe")
    try:
        fed = face_tensors(manifest.task, *backend.input_format(), photos)
        return _verdict(manifest, fp32, backend.infer, reference, fed)
    finally:
        backend.close()
