"""`edgewatch models convert` for the face models: CenterFace and MobileFaceNet for an NPU or a
TPU, judged by the face gate of :mod:`edgewatch.models.face_quantize` (the faces and landmarks
fp32 finds; the direction of fp32's vectors), never by the detectors' AP50.

- The accelerators want fixed shapes: the detector is converted at its largest input (640×640;
  ``fit_pad`` pads every image to it, at the same scale as on the CPU), the embedder at a batch
  of one (``runtime.faces.embed`` then feeds faces one at a time).
- RKNN: the detector is tried in int8 first and kept in float16 when int8 is not faithful; the
  embedder is built in float16 at once (its int8 moved vectors too far on the CPU already).
  Judged on the toolkit's PC simulator, on the same face photos as the CPU gate.
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
                 say: Say) -> tuple[ModelManifest, str]:
    """Convert a face model for ``target``; returns (manifest, a line saying what was done)."""
    photos = ensure_face_photos(cache, progress=say)
    reference = face_tensors(manifest.task, manifest.input, manifest.preprocessing, photos)
    if target == "rknn":
        return _rknn(manifest, fp32, platform, photos, reference, store, cache, say)
    raise ValueError(f"no face conversion for {target}")


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
