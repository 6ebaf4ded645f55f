"""`edgewatch models add`: a user's own detector into the store: an ONNX export, a TFLite file (plain,
or compiled for the Coral EdgeTPU) or an .rknn compiled for a Rockchip NPU.

The file is read without running it (:mod:`edgewatch.models.model_files`) and its output layout
(Ultralytics YOLOv5/YOLOv8, YOLOX, YOLO-NAS, RT-/RF-DETR, D-FINE, the rknn_model_zoo's multi-output
YOLOs, TFLite SSD post-processing, the EdgeTPU YOLO DFL split) is recognised from the tensors'
shapes and the class count (:mod:`edgewatch.models.layout_recognition`); where shapes alone leave
two readings (pixel or normalised boxes, YOLOX's grid offsets), the model is run once on a blank
image. The manifest records the head, input size, layout, dtype and normalisation, and the file
becomes a variant for its runtime (and chip). Like a catalogue install, an ONNX export is quantised
to int8 (calibrated on the sample photos plus any the user gives) and int8 becomes the default only
when it is faster here and agrees with fp32. The int8 file is a build output, cached under
``<cache>/conversions/user-<key>`` where the key covers the export's sha256, the calibration
photos and the recipe.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from tqdm import tqdm

from edgewatch.models.files import atomic_dir, atomic_write_json, sha256_file
from edgewatch.models.layout_recognition import Color, InputRange, Layout, LayoutError, recognise
from edgewatch.models.manifest import ModelManifest, Source, Variant, check_model_name
from edgewatch.models.model_files import Facts, ModelFileError, read_io
from edgewatch.models.runtime.layouts import cell_grid
from edgewatch.models.store import ModelStore
from edgewatch.models.tensor_info import TensorInfo

RECIPE = "user-onnx/int8-qdq-conv-perchannel-minmax/v1"  # change when outputs would differ
MIN_REFERENCE = 10  # fp32 detections on the calibration photos needed to judge int8 by
MAX_CALIBRATION = 200
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
PROBE_TIMEOUT_S = 60.0  # the one run that tells pixel boxes from fractions; a detector takes well under a second
PLACEHOLDER = "n/a"  # the name of a class index the labels file leaves out (a sparse id, a background column)
BACKGROUND = frozenset({"???", "background", "__background__"})
_NUMBERED = re.compile(r"^\s*(\d+)(?:\s*[:,]\s*|\s+)(\S.*?)\s*$")  # "17 cat", "17: cat", "17,cat"


class AddError(ValueError):
    pass


class _NotQuantisable(Exception):
    """onnxruntime's quantiser failed on this export (the message is its error)."""


@dataclass(frozen=True)
class LabelFile:
    """Class names as a labels file gives them: by id when it numbers them, else by line."""

    path: Path
    names: dict[int, str]
    numbered: bool  # "id name" lines or a YAML {id: name}: ids may start at 0 or 1, or have gaps

    def dense(self, offset: int = 0) -> tuple[str, ...]:
        """Names by class index ``id - offset``; an index no line names is PLACEHOLDER."""
        labels = [PLACEHOLDER] * (max(self.names) - offset + 1)
        for i, name in self.names.items():
            labels[i - offset] = name
        return tuple(labels)

    def candidates(self) -> list[tuple[str, ...]]:
        """The index mappings to try against the model, most literal first: ids as class indices
        (Coral's sparse COCO ids, RF-DETR's category ids), then, for ids counting from 1, id - 1."""
        out = [self.dense(0)]
        if self.numbered and min(self.names) >= 1:
            out.append(self.dense(1))
        return out


def read_labels(path: Path) -> LabelFile:
    """Plain names one per line (a "n/a" line keeps its index), "id name" lines, or an Ultralytics
    data.yaml / metadata.yaml with ``names`` (a list, or {id: name})."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise AddError(f"cannot read labels file {path}: {exc.strerror}") from None
    if path.suffix in (".yaml", ".yml"):
        try:
            names = (yaml.safe_load(text) or {}).get("names")
        except (yaml.YAMLError, AttributeError):
            names = None
        if isinstance(names, dict):
            try:
                found = {int(k): str(v).strip() for k, v in names.items()}
            except (TypeError, ValueError):
                raise AddError(f"{path}: 'names' keys must be class ids (0, 1, ...)") from None
            return _label_file(path, found, numbered=True)
        if not isinstance(names, list):
            raise AddError(f"{path} has no 'names' list: give a text file with one class name per line")
        return _label_file(path, dict(enumerate(str(n).strip() for n in names)), numbered=False)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    matches = [_NUMBERED.match(line) for line in lines]
    if lines and all(matches):
        found: dict[int, str] = {}
        for m in matches:
            i = int(m.group(1))  # type: ignore[union-attr]
            if i in found:
                raise AddError(f"{path}: class id {i} appears twice; give each id one line")
            found[i] = m.group(2)  # type: ignore[union-attr]
        return _label_file(path, found, numbered=True)
    return _label_file(path, dict(enumerate(lines)), numbered=False)


def _label_file(path: Path, names: dict[int, str], numbered: bool) -> LabelFile:
    if not names:
        raise AddError(f"{path} lists no class names: give one class name per line, in training order")
    if min(names) < 0 or max(names) > 100_000:
        raise AddError(f"{path}: class ids must be 0 to 100000")
    return LabelFile(path, names, numbered)


def recognise_with_labels(inputs: list[TensorInfo], outputs: list[TensorInfo], labels: LabelFile,
                          kind: str | None = None, input_range: InputRange | None = None, color: Color | None = None
                          ) -> tuple[Layout, tuple[str, ...]]:
    """The layout the tensors fit with one of the labels file's index mappings, and the labels by
    class index (PLACEHOLDER first when the model has a background column the file does not name)."""
    first: LayoutError | None = None
    tried = []
    for names in labels.candidates():
        try:
            layout = recognise(inputs, outputs, len(names), kind, input_range, color)
        except LayoutError as exc:
            first = first or exc
            tried.append(str(len(names)))
            continue
        if layout.classes == len(names) + 1:
            names = (PLACEHOLDER, *names)
        elif layout.kind == "tflite_ssd" and not labels.numbered and names[0].lower() in BACKGROUND:
            names = names[1:]  # TF's label maps name the background first; the op's class 0 is the first real one
        return layout, names
    assert first is not None
    also = f" (tried {' and '.join(tried)} classes from {labels.path.name})" if len(tried) > 1 else ""
    raise LayoutError(f"{first}{also}")


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
                                     "recipe": RECIPE, "min_reference": MIN_REFERENCE, "gate": GATE,
                                     # the same file added as another layout or input range measures differently
                                     "head": manifest.postprocessing, "input": manifest.input.model_dump(mode="json"),
                                     "preprocessing": manifest.preprocessing.model_dump(mode="json")},
                                    sort_keys=True).encode()).hexdigest()[:32]
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


def add_user_model(model_path: Path, name: str, labels_path: Path, store: ModelStore, cache: Path | None = None,
                   int8: bool = True, calibration: Path | None = None, kind: str | None = None,
                   input_range: InputRange | None = None, color: Color | None = None) -> ModelManifest:
    """Recognise ``model_path``'s detector layout (``kind`` forces one; ``input_range`` and ``color``
    override its input convention) for ``labels_path`` and store it; for an ONNX export with
    ``int8``, also an int8 variant (``cache`` holds it and the sample photos) where the quantiser applies."""
    check_model_name(name)
    labels_file = read_labels(labels_path)
    try:
        inputs, outputs, facts = read_io(model_path)
    except ModelFileError as exc:
        raise AddError(str(exc)) from None
    if facts["runtime"] == "rknn":
        inputs, outputs = _as_rknnlite_presents(inputs, outputs)
    try:
        layout, labels = recognise_with_labels(inputs, outputs, labels_file, kind, input_range, color)
    except LayoutError as exc:
        raise AddError(f"{model_path.name}: {exc}") from None
    _check_ssd_classes(layout, labels, facts, labels_path)
    digest = sha256_file(model_path)
    key, variant = _variant(model_path, facts, layout, outputs, digest)
    manifest = _manifest(name, model_path, layout, labels, key, variant)
    if layout.also_fits and kind is None:
        chosen = _settle_by_running(manifest, model_path, facts, layout)
        if chosen != layout.kind:  # its family's input convention comes with it
            layout, labels = recognise_with_labels(inputs, outputs, labels_file, chosen, input_range, color)
            manifest = _manifest(name, model_path, layout, labels, key, variant)
    tqdm.write(f"{name}: {layout.kind}, input {layout.input_name} {layout.size[0]}x{layout.size[1]} "
               f"{layout.layout} {layout.dtype} {layout.color.upper()} {layout.input_range}, {facts['runtime']}"
               + (f" for {facts['platform']}" if facts.get("platform") else "")
               + " (head from the outputs' shapes, pixel scaling by its family's convention: --input-range and "
                 "--color change it)")
    if facts["runtime"] != "onnx":
        manifest = store.commit(manifest, {key: model_path})
        _say_where_it_runs(store, manifest)
        return manifest
    if layout.size_input:
        # quantize_int8 calibrates, and measure_variants times and compares, through the one image input
        manifest = manifest.model_copy(update={"quantization_report": {
            "reason": f"fp32 only: the model also takes {layout.size_input} (the {layout.kind} layout), which the "
                      "int8 quantiser and its agreement check do not feed"}})
        return store.commit(manifest, {"fp32": model_path})
    if not int8 or cache is None:
        return store.commit(manifest, {"fp32": model_path})
    from edgewatch.models.photos import ensure_photos

    photos = list(ensure_photos(cache, progress=tqdm.write).values())
    photos += calibration_photos(calibration) if calibration else []
    built = _int8_build(model_path, manifest, photos, cache)
    if built is None:
        return store.commit(manifest, {"fp32": model_path})
    report = json.loads((built / "report.json").read_text())
    variants = {"fp32": manifest.variants["fp32"],
                "int8": Variant(**{**report["variants"]["int8"], "file": ""})}
    variants["fp32"] = variants["fp32"].model_copy(
        update={"inference_ms_p50": report["variants"]["fp32"]["inference_ms_p50"]})
    manifest = manifest.model_copy(update={"variants": variants, "default_variant": report["default_variant"],
                                           "quantization_report": report["quantization"]})
    return store.commit(manifest, {"fp32": model_path, "int8": built / "int8.onnx"})


def _as_rknnlite_presents(inputs: list[TensorInfo], outputs: list[TensorInfo]
                          ) -> tuple[list[TensorInfo], list[TensorInfo]]:
    """An .rknn's tensors as the host sees them: the file gives the NPU's own types (int8, the source
    model's NCHW shape); rknnlite takes the image as uint8 NHWC pixels (the normalisation and the
    quantisation are compiled into the NPU, as rknn_model_zoo's demos feed it) and hands outputs
    back as float32."""
    def image(i: TensorInfo) -> TensorInfo:
        if len(i.shape) == 4 and i.shape[1] == 3 and i.shape[3] != 3:
            return TensorInfo(i.name, (i.shape[0], i.shape[2], i.shape[3], 3), "uint8")
        return TensorInfo(i.name, i.shape, "uint8") if len(i.shape) == 4 else i

    return [image(i) for i in inputs], [TensorInfo(o.name, o.shape, "float32") for o in outputs]


def _manifest(name: str, path: Path, layout: Layout, labels: tuple[str, ...], key: str, variant: Variant
              ) -> ModelManifest:
    return ModelManifest(
        name=name,
        title=f"user model {path.name} ({layout.kind})",
        labels=labels,
        input=layout.input_spec(),
        preprocessing=layout.preprocessing(),
        postprocessing=layout.kind,
        source=Source(registry="local", package=str(path.resolve()), version=variant.sha256[:12]),
        license="user-supplied",
        variants={key: variant},
        default_variant=key,
    )


def _check_ssd_classes(layout: Layout, labels: tuple[str, ...], facts: Facts, labels_path: Path) -> None:
    """An SSD's post-processing op knows its class count, which the labels must cover."""
    classes = (facts.get("postprocess") or {}).get("num_classes")
    if layout.kind == "tflite_ssd" and isinstance(classes, int) and len(labels) < classes:
        raise AddError(f"{labels_path.name} names {len(labels)} classes but the model's post-processing has "
                       f"{classes}: give the labels file that came with the model (Coral's coco_labels.txt: "
                       "`id name` lines)")


def _variant(path: Path, facts: Facts, layout: Layout, outputs: list[TensorInfo], digest: str) -> tuple[str, Variant]:
    """The store key and variant of the file: for its runtime, and for an .rknn its chip."""
    runtime = facts["runtime"]
    if runtime == "rknn":
        precision = "int8" if {"int8", "uint8"} & set(str(facts.get("quantisation", "")).split(", ")) else "fp16"
        key = f"rknn-{facts['platform']}" if facts.get("platform") else "rknn"
    elif runtime == "onnx":
        precision, key = "fp32", "fp32"
    else:  # tflite, edgetpu
        quantised = layout.dtype != "float32" or any(o.quantised for o in outputs)
        precision, key = ("int8" if quantised or runtime == "edgetpu" else "fp32"), runtime
    return key, Variant(file="", sha256=digest, precision=precision, size_bytes=path.stat().st_size,
                        runtime=runtime, platform=facts.get("platform"), toolkit=facts.get("toolkit"),
                        device_normalises=runtime == "rknn")


def _settle_by_running(manifest: ModelManifest, path: Path, facts: Facts, layout: Layout) -> str:
    """The reading of a single-tensor YOLO output where the shapes allow two (boxes in input pixels,
    as fractions of the input as Ultralytics' TFLite and EdgeTPU exports give them, or YOLOX's grid
    offsets): the model runs once on a grey image, and decoded boxes' centres span the input, in
    pixels or in fractions, following the grid, where YOLOX's raw offsets stay near their cell. A
    file this box cannot run (EdgeTPU, RKNN) takes its exporter's convention: fractions for the EdgeTPU."""
    kinds = (layout.kind, *layout.also_fits)
    normalised = next((k for k in kinds if k.endswith("_normalized")), layout.kind)
    centres = _with_timeout(lambda: _blank_run_centres(manifest, path, facts), PROBE_TIMEOUT_S)
    if centres is None:
        chosen = normalised if facts["runtime"] == "edgetpu" else layout.kind
        tqdm.write(f"{manifest.name}: its outputs fit {' and '.join(kinds)}; it could not run here to tell (an "
                   f"accelerator's file, or no answer within {PROBE_TIMEOUT_S:g} s), so it is read as {chosen}; if "
                   "the boxes come out wrong, add it again with --kind")
        return chosen
    top = float(np.abs(centres).max())
    if top >= 0.25 * layout.size[0]:
        return layout.kind  # pixels
    if "yolox" in kinds and (top > 1.5 or not _follows_grid(centres, layout.size)):
        return "yolox"
    return normalised


def _with_timeout(run, seconds: float):
    """``run()``'s result, or None when it has not returned within ``seconds`` (a model that never
    answers is left running in a daemon thread, which ends with the command)."""
    done: list = []

    def target() -> None:
        try:
            done.append(run())
        except Exception as exc:  # the runtime's own error: the layout's default reading is kept
            tqdm.write(f"running the model on a grey image failed: {exc}")
            done.append(None)

    worker = threading.Thread(target=target, daemon=True, name="models-add-probe")
    worker.start()
    worker.join(seconds)
    return done[0] if done else None


def _follows_grid(centres: np.ndarray, size: tuple[int, int]) -> bool:
    """Whether box centres (as fractions of the width) follow their cells' x, one row per cell."""
    cells, strides = cell_grid(size)
    xs = (cells[:, 0] + 0.5) * strides / size[0]
    return xs.shape == centres.shape and float(np.corrcoef(xs, centres)[0, 1]) > 0.8


def _blank_run_centres(manifest: ModelManifest, path: Path, facts: Facts) -> np.ndarray | None:
    """The box centre x of every row of the single output, the model run once on the CPU on a grey
    image; None for a file only an accelerator runs."""
    from edgewatch.backends.onnxruntime_cpu import OnnxRuntimeCpuBackend
    from edgewatch.backends.tflite import TfliteCpuBackend
    from edgewatch.models.runtime.preprocess import letterbox

    backends = {"onnx": OnnxRuntimeCpuBackend, "tflite": TfliteCpuBackend}
    if facts["runtime"] not in backends or not backends[facts["runtime"]].probe().available:
        return None
    backend = backends[facts["runtime"]]()
    backend.load(path, manifest, manifest.default_variant)
    try:
        w, h = manifest.input.size
        tensor, _ = letterbox(np.full((h, w, 3), 114, np.uint8), *backend.input_format())
        out = backend.infer(tensor)[0]
    finally:
        backend.close()
    rows = out.reshape(out.shape[-2], out.shape[-1])
    return rows[0] if manifest.postprocessing.startswith("yolov8") else rows[:, 0]  # columns for YOLOv8


def _say_where_it_runs(store: ModelStore, manifest: ModelManifest) -> None:
    """Load the stored file on the backend ``auto`` would choose, and say which, or why none can."""
    from edgewatch.backends.base import BackendError
    from edgewatch.backends.registry import load_backend

    try:
        chosen = load_backend("auto", store, manifest)
    except BackendError as exc:
        tqdm.write(f"{manifest.name}: stored, but it cannot run on this box: {exc}")
        return
    chosen.backend.close()
    tqdm.write(f"{manifest.name}: runs here on {chosen.backend.type_key} ({chosen.backend.execution_provider})")
