"""`edgewatch models add`: a user's own YOLOv5/YOLOv8-style ONNX detector into the store.

Like a catalogue install, the export is quantised to int8 (calibrated on the sample photos plus
any the user gives) and int8 becomes the default only when it is faster here and agrees with
fp32. The int8 file is a build output, cached under ``<cache>/conversions/user-<key>`` where the
key covers the export's sha256, the calibration photos and the recipe.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml
from tqdm import tqdm

from edgewatch.models.files import atomic_dir, atomic_write_json, sha256_file
from edgewatch.models.manifest import InputSpec, ModelManifest, Preprocessing, Source, Variant, check_model_name
from edgewatch.models.runtime.heads import detect_yolo_kind
from edgewatch.models.store import ModelStore

DEFAULT_SIZE = 640
RECIPE = "user-onnx/int8-qdq-conv-perchannel-minmax/v1"  # change when outputs would differ
MIN_REFERENCE = 10  # fp32 detections on the calibration photos needed to judge int8 by
MAX_CALIBRATION = 200
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class AddError(ValueError):
    pass


class _NotQuantisable(Exception):
    """onnxruntime's quantiser failed on this export (the message is its error)."""


def read_labels(path: Path) -> tuple[str, ...]:
    """One class name per line, or a YOLO data YAML with ``names`` (list or {id: name})."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise AddError(f"cannot read labels file {path}: {exc.strerror}") from None
    if path.suffix in (".yaml", ".yml"):
        names = (yaml.safe_load(text) or {}).get("names")
        if isinstance(names, dict):
            names = [names[k] for k in sorted(names)]
        if not isinstance(names, list):
            raise AddError(f"{path} has no 'names' list: give a text file with one class name per line")
        labels = [str(n).strip() for n in names]
    else:
        labels = [line.strip() for line in text.splitlines() if line.strip()]
    if not labels:
        raise AddError(f"{path} lists no class names: give one class name per line, in training order")
    return tuple(labels)


def calibration_photos(folder: Path) -> list[Path]:
    """The images in ``folder`` (sorted, at most MAX_CALIBRATION)."""
    if not folder.is_dir():
        raise AddError(f"--calibration {folder} is not a directory: give a folder of JPEG/PNG snapshots")
    photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not photos:
        raise AddError(f"--calibration {folder} has no .jpg/.png images: put snapshots from your cameras there")
    return photos[:MAX_CALIBRATION]


def _int8_build(fp32: Path, manifest: ModelManifest, photos: list[Path], cache: Path) -> Path | None:
    """Quantise and measure (or reuse the cached result); the folder with int8.onnx and
    report.json, or None if this export cannot be quantised (the reason is printed)."""
    from edgewatch.models.quantize import GATE, calibration_tensors, measure_variants, quantize_int8

    digests = [sha256_file(p) for p in photos]
    key = hashlib.sha256(json.dumps({"model": manifest.variants["fp32"].sha256, "photos": digests,
                                     "recipe": RECIPE, "min_reference": MIN_REFERENCE,
                                     "gate": GATE}).encode()).hexdigest()[:32]
    built = cache / "conversions" / f"user-{key}"
    if (built / "report.json").is_file():
        tqdm.write(f"{manifest.name}: reusing the int8 model measured before ({built})")
        return built
    steps = tqdm(total=3, desc=f"int8 {manifest.name}", unit="step", bar_format="{desc}: {n}/{total} {postfix}")
    try:
        # A concurrent add that finished first keeps its folder: its result is as good as ours.
        with atomic_dir(built) as tmp:
            steps.set_postfix_str(f"preparing {len(photos)} calibration photos", refresh=True)
            tensors = calibration_tensors(photos, manifest.input, manifest.preprocessing)
            steps.update()
            steps.set_postfix_str(f"static quantisation on {len(tensors)} images", refresh=True)
            try:
                quantize_int8(fp32, tmp / "int8.onnx", tensors)
            except Exception as exc:  # onnxruntime.quantization fails on some exotic graphs
                raise _NotQuantisable(exc) from exc  # leaves the with block: nothing is kept
            steps.update()
            steps.set_postfix_str("measuring fp32 vs int8 speed and agreement", refresh=True)
            report = measure_variants(fp32, tmp / "int8.onnx", tensors, manifest.postprocessing,
                                      manifest.input.size, MIN_REFERENCE)
            report["quantization"]["recipe"] = RECIPE
            atomic_write_json(tmp / "report.json", report)
            steps.update()
    except _NotQuantisable as exc:
        tqdm.write(f"{manifest.name}: int8 quantisation failed ({exc}); keeping fp32 only. "
                   "Re-export with a plain opset (e.g. `yolo export format=onnx opset=17`) to try again")
        return None
    finally:
        steps.close()
    return built


def add_user_model(onnx_path: Path, name: str, labels_path: Path, store: ModelStore, cache: Path | None = None,
                   int8: bool = True, calibration: Path | None = None) -> ModelManifest:
    """Check ``onnx_path`` is a YOLO-layout detector for ``labels_path`` and store it; with
    ``int8``, also an int8 variant (``cache`` holds it and the sample photos)."""
    import onnxruntime as ort

    check_model_name(name)
    labels = read_labels(labels_path)
    try:
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise AddError(f"{onnx_path} is not a loadable ONNX model ({exc}); export it with "
                       "`yolo export format=onnx` or YOLOv5's export.py --include onnx") from None
    inp, out = session.get_inputs()[0], session.get_outputs()[0]
    shape = [d if isinstance(d, int) and d > 0 else None for d in inp.shape]
    if len(shape) != 4:
        raise AddError(f"input {inp.name} has shape {inp.shape}; expected a 4-D image tensor (1×3×H×W)")
    layout = "nchw" if shape[1] == 3 else "nhwc"
    h, w = (shape[2], shape[3]) if layout == "nchw" else (shape[1], shape[2])
    h, w = h or DEFAULT_SIZE, w or DEFAULT_SIZE
    kind = detect_yolo_kind(tuple(out.shape), len(labels))
    digest = sha256_file(onnx_path)
    manifest = ModelManifest(
        name=name,
        title=f"user model {onnx_path.name}",
        labels=labels,
        input=InputSpec(name=inp.name, shape=(1, 3, h, w) if layout == "nchw" else (1, h, w, 3), layout=layout,
                        dtype="uint8" if "uint8" in inp.type else "float32"),
        preprocessing=Preprocessing(color="rgb", std=(255.0, 255.0, 255.0), pad_value=114),
        postprocessing=kind,  # type: ignore[arg-type]
        source=Source(registry="local", package=str(onnx_path.resolve()), version=digest[:12]),
        license="user-supplied",
        variants={"fp32": Variant(file="", sha256=digest, precision="fp32", size_bytes=onnx_path.stat().st_size)},
        default_variant="fp32",
    )
    if not int8 or cache is None:
        return store.commit(manifest, {"fp32": onnx_path})
    from edgewatch.models.photos import ensure_photos

    photos = list(ensure_photos(cache, progress=tqdm.write).values())
    photos += calibration_photos(calibration) if calibration else []
    built = _int8_build(onnx_path, manifest, photos, cache)
    if built is None:
        return store.commit(manifest, {"fp32": onnx_path})
    report = json.loads((built / "report.json").read_text())
    variants = {"fp32": manifest.variants["fp32"],
                "int8": Variant(**{**report["variants"]["int8"], "file": ""})}
    variants["fp32"] = variants["fp32"].model_copy(
        update={"inference_ms_p50": report["variants"]["fp32"]["inference_ms_p50"]})
    manifest = manifest.model_copy(update={"variants": variants, "default_variant": report["default_variant"],
                                           "quantization_report": report["quantization"]})
    return store.commit(manifest, {"fp32": onnx_path, "int8": built / "int8.onnx"})
