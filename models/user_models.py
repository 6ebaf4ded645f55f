"""`edgewatch models add`: a user's own YOLOv5/YOLOv8-style ONNX detector into the store."""

from __future__ import annotations

from pathlib import Path

import yaml

from edgewatch.models.files import sha256_file
from edgewatch.models.manifest import InputSpec, ModelManifest, Preprocessing, Source, Variant, check_model_name
from edgewatch.models.postprocess import detect_yolo_kind
from edgewatch.models.store import ModelStore

DEFAULT_SIZE = 640


class AddError(ValueError):
    pass


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


def add_user_model(onnx_path: Path, name: str, labels_path: Path, store: ModelStore) -> ModelManifest:
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
    return store.commit(manifest, {"fp32": onnx_path})
