"""What a detector file a user brings says about itself, read without running it: `.onnx`, `.tflite`
(plain or compiled for the Coral EdgeTPU) and `.rknn` (compiled for one Rockchip NPU).

:func:`read_io` returns the inputs and outputs as :class:`TensorInfo` (in the order the runtime
hands outputs back) and ``facts``: the runtime and platform the file is built for (what
:class:`~edgewatch.models.manifest.Variant` records as ``runtime`` and ``platform``), and what else
the file tells. Whether it can run here is the backends' call when it is loaded
(:func:`edgewatch.backends.registry.load_backend` says why not).

How each format is read, and why:

* ``.onnx``: onnxruntime's session (the runtime the daemon runs it with) for the IO, the ONNX
  graph for its operators and opset.
* ``.tflite``: the flatbuffer itself, through the TFLite schema that ai-edge-litert ships
  (``schema_py_generated``). An ``_edgetpu.tflite`` holds an ``edgetpu-custom-op`` that no
  interpreter can prepare without the TPU's delegate, so nothing is allocated or run: tensor
  shapes, types and quantisation come from the file. Outputs of ``TFLite_Detection_PostProcess``
  get the shapes its kernel gives them when it runs (TF2 exports store placeholders there).
  Ultralytics appends a zip holding ``metadata.json`` (class names, image size) to its TFLite
  exports; it is read too.
* ``.rknn``: no NPU or toolkit needed. rknn-toolkit2 writes a header (``RKNN``, format version,
  the compiled model's length), the compiled model (a flatbuffer) and then a JSON trailer with the
  target platform, the toolkit version and every input and output (name, shape as in the source
  model, NPU type). The compiled model's description adds the normalisation compiled in (mean,
  std) and each tensor's calibrated range. The NPU's scale and zero point are not stored in a
  readable form (only the runtime's query gives them on the board), and rknnlite hands outputs
  back as float32 anyway, so they stay None.
"""

from __future__ import annotations

import ast
import json
import re
import struct
import zipfile
from pathlib import Path
from typing import Any

from edgewatch.models.tensor_info import TensorInfo

SUFFIXES = (".onnx", ".tflite", ".rknn")
EDGETPU_OP = "edgetpu-custom-op"
SSD_OP = "TFLite_Detection_PostProcess"
SSD_ROLES = ("boxes", "classes", "scores", "count")  # the op's outputs, in its own order

Facts = dict[str, Any]


class ModelFileError(ValueError):
    """The file cannot be read as the model format its name says; the message says what to do."""


def read_io(path: Path) -> tuple[list[TensorInfo], list[TensorInfo], Facts]:
    """(inputs, outputs, facts) of the model file at ``path``, chosen by its suffix."""
    path = Path(path)
    readers = {".onnx": _read_onnx, ".tflite": _read_tflite, ".rknn": _read_rknn}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise ModelFileError(f"{path.name}: give an .onnx, .tflite (plain or _edgetpu) or .rknn file")
    if not path.is_file():
        raise ModelFileError(f"{path} does not exist or is not a file")
    return reader(path)


# ------------------------------------------------------------------------------------------ ONNX

_ONNX_TYPES = {"float": "float32", "float16": "float16", "double": "float64", "uint8": "uint8", "int8": "int8",
               "int16": "int16", "int32": "int32", "int64": "int64", "bool": "bool"}


def _onnx_tensor(arg) -> TensorInfo:
    kind = re.fullmatch(r"tensor\((\w+)\)", arg.type)
    dtype = _ONNX_TYPES.get(kind.group(1), kind.group(1)) if kind else arg.type
    return TensorInfo(arg.name, tuple(d if isinstance(d, int) and d > 0 else None for d in arg.shape), dtype)


def _read_onnx(path: Path) -> tuple[list[TensorInfo], list[TensorInfo], Facts]:
    import onnx
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        graph = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        raise ModelFileError(f"{path.name} is not a loadable ONNX model ({exc}); export it again, e.g. "
                             "`yolo export format=onnx opset=17`") from None
    meta = session.get_modelmeta()
    facts: Facts = {"format": "onnx", "runtime": "onnx", "platform": None, "producer": meta.producer_name,
                    "opset": max((o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")), default=None),
                    "ops": sorted({n.op_type for n in graph.graph.node}),
                    "metadata": dict(meta.custom_metadata_map)}
    return [_onnx_tensor(i) for i in session.get_inputs()], [_onnx_tensor(o) for o in session.get_outputs()], facts


# ---------------------------------------------------------------------------------------- TFLite

def _tflite_schema():
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError:
        raise ModelFileError("reading .tflite files needs ai-edge-litert's TFLite schema: pip install ai-edge-litert"
                             ) from None
    return schema_py_generated


def _enum_names(enum_class) -> dict[int, str]:
    return {v: k for k, v in vars(enum_class).items() if not k.startswith("_") and isinstance(v, int)}


def _op_name(schema, code, builtin_names: dict[int, str]) -> tuple[str, bool]:
    """(name, is it a custom op) of an operator code."""
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())  # the schema's rule for codes over 127
    if builtin == schema.BuiltinOperator.CUSTOM:
        return (code.CustomCode() or b"").decode(errors="replace"), True
    return builtin_names.get(builtin, str(builtin)), False


def _tflite_tensor(tensor, type_names: dict[int, str]) -> TensorInfo:
    if tensor.ShapeSignatureLength():
        shape = tuple(None if d < 0 else int(d) for d in tensor.ShapeSignatureAsNumpy())
    else:
        shape = tuple(int(d) for d in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
    dtype = type_names.get(tensor.Type(), str(tensor.Type())).lower()
    q = tensor.Quantization()
    scale = zero = None
    if q is not None and q.ScaleLength() == 1 and q.Scale(0) != 0:
        scale, zero = float(q.Scale(0)), int(q.ZeroPoint(0)) if q.ZeroPointLength() else 0
    return TensorInfo((tensor.Name() or b"").decode(errors="replace"), shape, dtype, scale, zero)


def _ssd_outputs(op, tensors: list[TensorInfo]) -> tuple[dict, dict[str, str]]:
    """The SSD op's attributes (its flexbuffer options) and its outputs' roles by tensor name. Its
    output tensors in ``tensors`` get the shapes its kernel gives them when it runs: TF2 exports
    store placeholders ([]) there."""
    from flatbuffers import flexbuffers

    raw = op.CustomOptionsAsNumpy().tobytes() if op.CustomOptionsLength() else b""
    attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in (flexbuffers.Loads(raw) if raw else {}).items()}
    rows = int(attrs.get("max_detections", 0)) * int(attrs.get("max_classes_per_detection", 1))
    roles = {}
    for slot, role, shape in zip(range(op.OutputsLength()), SSD_ROLES, ((1, rows, 4), (1, rows), (1, rows), (1,))):
        t = tensors[op.Outputs(slot)]
        roles[t.name] = role
        if rows:
            tensors[op.Outputs(slot)] = TensorInfo(t.name, shape, t.dtype, t.scale, t.zero_point)
    return attrs, roles


def _ultralytics_metadata(path: Path) -> dict:
    """The ``metadata.json`` Ultralytics appends to its TFLite exports as a zip, if there is one."""
    try:
        with zipfile.ZipFile(path) as zf:
            name = next((n for n in zf.namelist() if n.endswith(".json")), None)
            return json.loads(zf.read(name)) if name else {}
    except (zipfile.BadZipFile, ValueError, OSError):
        return {}


def _read_tflite(path: Path) -> tuple[list[TensorInfo], list[TensorInfo], Facts]:
    from edgewatch.backends.tflite import graph_order

    schema = _tflite_schema()
    buf = path.read_bytes()
    if buf[4:8] != b"TFL3":
        raise ModelFileError(f"{path.name} is not a TFLite model (no TFL3 flatbuffer identifier); export it again "
                             "with `yolo export format=tflite` (or edgetpu), or give the .onnx")
    try:
        model = schema.Model.GetRootAs(buf, 0)
        graph = model.Subgraphs(0)
        type_names = _enum_names(schema.TensorType)
        builtin_names = _enum_names(schema.BuiltinOperator)
        named = [_op_name(schema, model.OperatorCodes(i), builtin_names) for i in range(model.OperatorCodesLength())]
        codes = [n for n, _ in named]
        tensors = [_tflite_tensor(graph.Tensors(i), type_names) for i in range(graph.TensorsLength())]
        ops = [graph.Operators(i) for i in range(graph.OperatorsLength())]
        inputs = [tensors[graph.Inputs(i)] for i in range(graph.InputsLength())]
        output_ids = [graph.Outputs(i) for i in range(graph.OutputsLength())]
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path.name} is a damaged TFLite flatbuffer ({exc}); copy or export it again") from None
    facts: Facts = {"format": "tflite", "runtime": "edgetpu" if EDGETPU_OP in codes else "tflite",
                    "platform": None, "edgetpu": EDGETPU_OP in codes, "ops": sorted(set(codes)),
                    "custom_ops": sorted({n for n, custom in named if custom}), "metadata": _ultralytics_metadata(path)}
    for op in ops:
        if codes[op.OpcodeIndex()] == SSD_OP:
            facts["postprocess"], facts["output_roles"] = _ssd_outputs(op, tensors)
    outputs = [d["info"] for d in graph_order([{"name": tensors[i].name, "info": tensors[i]} for i in output_ids])]
    return inputs, outputs, facts


# ------------------------------------------------------------------------------------------ RKNN

RKNN_MAGIC = b"RKNN"
_RKNN_HEADER = 64  # magic, padding, format version (u64 at 8), compiled model length (u64 at 16), …
_RKNN_DESCRIPTION = b"{'attrs': "  # the compiled model's description string (a Python literal)
_NPU_TYPES = {"int8": "int8", "uint8": "uint8", "int16": "int16", "float16": "float16", "": "float16"}


def _rknn_trailer(data: bytes) -> tuple[int, dict]:
    """(format version, the JSON trailer after the compiled model)."""
    version, size = struct.unpack_from("<QQ", data, 8)
    end = _RKNN_HEADER + size
    (length,) = struct.unpack_from("<Q", data, end)
    return version, json.loads(data[end + 8:end + 8 + length])


def _rknn_description(data: bytes) -> dict:
    """The compiled model's description (normalisation, calibrated ranges), or {} if absent."""
    at = data.find(_RKNN_DESCRIPTION)
    if at < 4:
        return {}
    (length,) = struct.unpack_from("<I", data, at - 4)  # a flatbuffer string: u32 length, bytes, NUL
    if at + length >= len(data) or data[at + length] != 0:
        return {}
    try:
        described = ast.literal_eval(data[at:at + length].decode())
    except (ValueError, SyntaxError, UnicodeDecodeError, MemoryError, RecursionError):
        return {}
    return described if isinstance(described, dict) else {}


def _range(quant: dict) -> tuple:
    """A tensor's calibrated (min, max): floats for a per-layer range, lists for per-channel ones."""
    low, high = quant["min"], quant["max"]
    return (low[0], high[0]) if len(low) == len(high) == 1 else (list(low), list(high))


def _read_rknn(path: Path) -> tuple[list[TensorInfo], list[TensorInfo], Facts]:
    data = path.read_bytes()
    if data[:4] != RKNN_MAGIC:
        raise ModelFileError(f"{path.name} is not an RKNN model (no RKNN header); build it with rknn-toolkit2 "
                             "(`rknn.export_rknn`) or give the .onnx and run `edgewatch models convert --target rknn`")
    try:
        version, trailer = _rknn_trailer(data)
        tensors = {t["tensor_id"]: t for t in trailer["norm_tensor"]}
        ends = {"input": [], "output": []}
        for link in trailer["graph"]:
            if link.get("left") in ends and link.get("right") == "norm_tensor":
                ends[link["left"]].append((link["left_tensor_id"], tensors[link["right_tensor_id"]]))
        platforms = [str(p).lower() for p in trailer["target_platform"]]
    except (struct.error, ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(f"{path.name}: no rknn-toolkit2 model description found ({exc}); files from "
                             "rknn-toolkit 1.x (RK1808, RV1109/1126) are not supported: rebuild it with rknn-toolkit2 "
                             "for your board's SoC, or give the .onnx") from None

    def info(t: dict) -> TensorInfo:
        npu = str((t.get("dtype") or {}).get("qnt_type", ""))
        return TensorInfo(str(t.get("url", t["tensor_id"])), tuple(int(d) for d in t["size"]), _NPU_TYPES.get(npu, npu))

    inputs = [info(t) for _, t in sorted(ends["input"], key=lambda p: p[0])]
    outputs = [info(t) for _, t in sorted(ends["output"], key=lambda p: p[0])]
    described = _rknn_description(data)
    first = (described.get("attrs") or {}).get(inputs[0].name, {}) if inputs else {}
    quantised = {t.dtype for t in inputs + outputs} - {"float16"}
    facts: Facts = {"format": "rknn", "runtime": "rknn", "platform": platforms[0] if platforms else None,
                    "target_platforms": platforms, "toolkit": trailer.get("version"), "rknn_format": version,
                    "source_framework": trailer.get("ori_network_platform"),
                    "quantisation": ", ".join(sorted(quantised)) or "float16",
                    "mean": first.get("mean"), "std": first.get("std"),
                    "ranges": {name: _range(q) for name, q in (described.get("quant_tab") or {}).items()
                               if q.get("min") and q.get("max")}}
    return inputs, outputs, facts
