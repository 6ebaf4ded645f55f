"""TensorFlow.js graph model -> ONNX, directly: no TensorFlow, no tf2onnx, only onnx and numpy.

A TF.js graph model is a ``model.json`` whose ``modelTopology.node`` is a TensorFlow GraphDef
written as JSON, plus binary weight shards described by ``weightsManifest``. This module reads
both, converts the graph op by op to ONNX (opset 13 by default) and writes the model. It runs in
the daemon's own environment in about a second, instead of the 1.5 GiB TensorFlow + tf2onnx
venv that ``converter_env`` builds on first use (minutes).

What it produces matches tf2onnx's conversion of the same model (see tests/test_tfjs_direct.py):

* inputs: every ``Placeholder`` in node order, named ``<node>:0`` unless the model's signature
  gives that tensor another name (its key); the layout is the graph's own (NHWC stays NHWC);
* outputs: the signature's outputs in the signature's order, named by their keys (without a
  signature: the outputs of the nodes nothing consumes);
* the same arithmetic: convolutions with their bias, SAME padding as explicit (asymmetric)
  pads, resize modes that pick the same pixels, GlobalAveragePool for spatial means.

Inside, 4-D tensors produced by convolutions are held as NCHW; every value remembers the
permutation between its ONNX form and its TensorFlow (NHWC) form, layout-agnostic ops pass that
permutation on, and a Transpose is inserted only where an op needs the TensorFlow layout (a
Reshape, a graph output) — so a chain of convolutions, activations, concatenations, pads and
resizes has no transposes at all. Nodes whose inputs are all constants are folded with numpy.

Only the ops in :data:`SUPPORTED_OPS` are converted. A graph that uses any other op (or a
variant this module does not handle, such as a ``SYMMETRIC`` MirrorPad wider than one pixel)
raises :class:`UnsupportedOp` naming it, before anything is written: the caller then falls
back to the tf2onnx worker.

Command line: ``python -m edgewatch.models.conversion.tfjs_direct MODEL_JSON OUT_ONNX [--opset N]``.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DEFAULT_OPSET = 13
MIN_OPSET = 13  # Squeeze/Unsqueeze/Split/ReduceSum take their axes as inputs from 13 on
IR_VERSION = 8  # what tf2onnx 1.17 writes; readable by onnx >= 1.10 and every runtime we use
PRODUCER = "edgewatch-tfjs-direct"
PRODUCER_VERSION = "1"

INT64_MAX = np.iinfo(np.int64).max
INT64_MIN = np.iinfo(np.int64).min
NHWC_TO_NCHW = (0, 3, 1, 2)

Progress = Callable[[str], None]


class DirectConversionError(RuntimeError):
    """The model could not be converted directly (damaged files, an op this module lacks...)."""


class UnsupportedOp(DirectConversionError):
    """The graph uses an op (or an op variant) the direct converter does not handle: use tf2onnx.

    ``ops`` maps each such op name to how many nodes use it (or to a description of the variant).
    """

    def __init__(self, ops: dict[str, int | str], model: str = ""):
        self.ops = dict(ops)
        where = f" in {model}" if model else ""
        parts = [f"{op} ({n} node{'s' if n != 1 else ''})" if isinstance(n, int) else f"{op}: {n}"
                 for op, n in sorted(self.ops.items())]
        super().__init__(f"TF.js op(s) not supported by the direct converter{where}: {', '.join(parts)}; "
                         "convert this model with tf2onnx instead")


# -- TF.js files ---------------------------------------------------------------------------------

_TF_DTYPES = {
    "DT_FLOAT": np.float32, "DT_HALF": np.float16, "DT_DOUBLE": np.float64, "DT_BFLOAT16": None,
    "DT_INT8": np.int8, "DT_INT16": np.int16, "DT_INT32": np.int32, "DT_INT64": np.int64,
    "DT_UINT8": np.uint8, "DT_UINT16": np.uint16, "DT_UINT32": np.uint32, "DT_UINT64": np.uint64,
    "DT_BOOL": np.bool_, "DT_STRING": np.object_,
}
_TF_DTYPE_NUMBERS = {1: "DT_FLOAT", 2: "DT_DOUBLE", 3: "DT_INT32", 4: "DT_UINT8", 5: "DT_INT16", 6: "DT_INT8",
                     7: "DT_STRING", 9: "DT_INT64", 10: "DT_BOOL", 14: "DT_BFLOAT16", 17: "DT_UINT16",
                     19: "DT_HALF", 22: "DT_UINT32", 23: "DT_UINT64"}
# dtypes of weight entries in weightsManifest, and of their quantised storage
_WEIGHT_DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.bool_, "uint8": np.uint8,
                  "uint16": np.uint16, "float16": np.float16, "int8": np.int8, "int16": np.int16}


def _np_dtype(tf_type) -> np.dtype:
    if isinstance(tf_type, int):
        tf_type = _TF_DTYPE_NUMBERS.get(tf_type, str(tf_type))
    dt = _TF_DTYPES.get(tf_type)
    if dt is None:
        raise UnsupportedOp({f"dtype {tf_type}": "no ONNX equivalent handled here"})
    return np.dtype(dt)


def load_model_json(path: Path) -> tuple[dict, bool]:
    raw = path.read_bytes()
    gzipped = raw[:2] == b"\x1f\x8b"  # some hub models gzip model.json and shards without saying so
    if gzipped:
        raw = gzip.decompress(raw)
    return json.loads(raw), gzipped


def read_weights(model: dict, folder: Path, gzipped: bool = False) -> dict[str, np.ndarray]:
    """All weights of a TF.js model, by name. Each manifest group's shards are read in order and
    joined; weights follow each other in the joined bytes. Quantised weights are dequantised the
    way TF.js does it (uint8/uint16: ``q * scale + min``, rounded for int32; float16: widened)."""
    weights: dict[str, np.ndarray] = {}
    for group in model.get("weightsManifest", []):
        chunks = []
        for rel in group["paths"]:
            data = (folder / rel).read_bytes()
            if gzipped and data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
            chunks.append(data)
        buf = b"".join(chunks)
        offset = 0
        for entry in group["weights"]:
            name, dtype, shape = entry["name"], entry["dtype"], [int(d) for d in entry["shape"]]
            count = int(np.prod(shape, dtype=np.int64))
            if dtype == "string":
                values = []
                for _ in range(count):
                    (length,) = np.frombuffer(buf, "<u4", 1, offset)
                    offset += 4
                    values.append(buf[offset:offset + int(length)])
                    offset += int(length)
                weights[name] = np.array(values, dtype=object).reshape(shape)
                continue
            if dtype not in _WEIGHT_DTYPES:
                raise UnsupportedOp({f"weight dtype {dtype}": f"weight {name}"})
            quant = entry.get("quantization")
            stored = np.dtype(_WEIGHT_DTYPES[quant["dtype"] if quant else dtype]).newbyteorder("<")
            nbytes = count * stored.itemsize
            if offset + nbytes > len(buf):
                raise DirectConversionError(f"weight {name} runs past the end of its shards "
                                            f"({offset + nbytes} > {len(buf)} bytes): the files are damaged")
            arr = np.frombuffer(buf, stored, count, offset)
            offset += nbytes
            if quant and quant["dtype"] in ("uint8", "uint16", "int8", "int16"):
                if "scale" not in quant or "min" not in quant:
                    raise DirectConversionError(f"weight {name}: {quant['dtype']} quantisation without scale/min")
                real = arr.astype(np.float64) * float(quant["scale"]) + float(quant["min"])
                arr = np.round(real).astype(np.int32) if dtype == "int32" else real.astype(_WEIGHT_DTYPES[dtype])
            else:
                arr = arr.astype(_WEIGHT_DTYPES[dtype])
            weights[name] = arr.reshape(shape)
        if offset != len(buf):
            raise DirectConversionError(f"weight shards {group['paths']} hold {len(buf)} bytes but the manifest "
                                        f"describes {offset}: the files do not belong together")
    return weights


PLACEHOLDERS = ("Placeholder", "PlaceholderWithDefault", "PlaceholderV2")


def signature_outputs(model: dict) -> list[tuple[str, str]]:
    """(output name, TF tensor ref) of each graph output: the signature's, in its order; without
    a signature, the nodes nothing consumes (named ``<node>:0``)."""
    sig = model.get("signature") or {}
    if sig.get("outputs"):
        return [(key, spec["name"]) for key, spec in sig["outputs"].items()]
    nodes = model["modelTopology"].get("node", [])
    consumed = {i.split(":")[0] for n in nodes for i in n.get("input", []) if not i.startswith("^")}
    return [(f"{n['name']}:0", n["name"]) for n in nodes if n["name"] not in consumed and n["op"] not in ("Const", "NoOp")]


def graph_io(model: dict) -> tuple[list[str], list[str]]:
    """The graph's input tensors (its placeholders, in node order) and output tensors (in the order
    of the ONNX model's outputs), as TensorFlow refs ``node:index``."""
    nodes = model["modelTopology"].get("node", [])
    inputs = [f"{n['name']}:0" for n in nodes if n["op"] in PLACEHOLDERS]
    return inputs, [ref if ":" in ref else f"{ref}:0" for _, ref in signature_outputs(model)]


def _tensor_attr_value(t: dict) -> np.ndarray:
    """A TensorProto written as JSON (a Const's ``value`` attribute)."""
    dtype = _np_dtype(t.get("dtype", "DT_FLOAT"))
    shape = [int(d.get("size", 0)) for d in t.get("tensorShape", {}).get("dim", [])]
    count = int(np.prod(shape, dtype=np.int64))
    if "tensorContent" in t:
        arr = np.frombuffer(base64.b64decode(t["tensorContent"]), dtype=np.dtype(dtype).newbyteorder("<"))
        return arr.astype(dtype).reshape(shape)
    for key, conv in (("floatVal", float), ("doubleVal", float), ("intVal", int), ("int64Val", int),
                      ("boolVal", bool), ("halfVal", None)):
        if key in t:
            vals = t[key]
            if key == "halfVal":
                arr = np.array([int(v) for v in vals], np.uint16).view(np.float16)
            else:
                arr = np.array([conv(v) for v in vals]).astype(dtype)
            if count and arr.size == 1:
                arr = np.full(shape, arr[0], dtype)
            return arr.astype(dtype).reshape(shape)
    return np.zeros(shape, dtype)


# -- attributes ----------------------------------------------------------------------------------

def _attr(node: dict, name: str, default=None):
    a = node.get("attr", {}).get(name)
    if a is None:
        return default
    if "list" in a:
        lst = a["list"]
        for k in ("i", "f", "s", "b", "type", "shape"):
            if lst.get(k):
                return [_scalar_attr(k, v) for v in lst[k]]
        return []
    for k in ("i", "f", "s", "b", "type", "shape", "tensor", "func"):
        if k in a:
            return _scalar_attr(k, a[k])
    return default


def _scalar_attr(kind: str, v):
    if kind == "i":
        return int(v)
    if kind == "f":
        return float(v)
    if kind == "b":
        return bool(v)
    if kind == "s":
        if isinstance(v, list):  # older TF.js models store strings as lists of byte values
            return bytes(v).decode()
        return base64.b64decode(v).decode()
    if kind == "shape":
        return [int(d.get("size", -1)) for d in v.get("dim", [])] if not v.get("unknownRank") else None
    if kind == "tensor":
        return _tensor_attr_value(v)
    return v


# -- values --------------------------------------------------------------------------------------

@dataclass
class Val:
    """One TensorFlow tensor: its ONNX form ``name`` holds ``transpose(tf_value, perm)``.

    ``shape`` is the TensorFlow (logical) shape, None for unknown dimensions; ``const`` is set for
    values known at conversion time (then ``name`` is None until an ONNX op needs it)."""

    name: str | None
    shape: tuple
    dtype: np.dtype
    perm: tuple | None = None
    const: np.ndarray | None = None
    producer: onnx.NodeProto | None = None  # the ONNX Conv that made ``name``, for the bias fusion
    tf_node: str | None = None  # the TF node whose output this is

    @property
    def rank(self) -> int:
        return len(self.shape)


def _const(arr) -> Val:
    arr = np.asarray(arr)
    return Val(None, tuple(arr.shape), arr.dtype, None, arr)


def _inverse(perm) -> tuple:
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return tuple(inv)


def _is_identity(perm) -> bool:
    return perm is None or all(i == p for i, p in enumerate(perm))


def _norm_axis(axis: int, rank: int) -> int:
    axis = int(axis)
    if not -rank <= axis < max(rank, 1):
        raise DirectConversionError(f"axis {axis} out of range for rank {rank}")
    return axis + rank if axis < 0 else axis


def _broadcast(*shapes) -> tuple:
    rank = max(len(s) for s in shapes)
    out = []
    for i in range(rank):
        dims = [s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0]
        known = {d for d in dims if d is not None and d != 1}
        if len(known) > 1:
            raise DirectConversionError(f"shapes {shapes} do not broadcast")
        if known:
            out.append(known.pop())
        elif any(d is None for d in dims):
            out.append(None)
        else:
            out.append(1)
    return tuple(out)


def _static(shape) -> bool:
    return shape is not None and all(d is not None for d in shape)


def _onnx_type(dtype) -> int:
    return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


# -- the converter -------------------------------------------------------------------------------

_HANDLERS: dict[str, Callable] = {}
_FOLDERS: dict[str, Callable] = {}
IDENTITY_OPS = frozenset({"Identity", "IdentityN", "Snapshot", "StopGradient", "PreventGradient",
                          "EnsureShape", "CheckNumerics"})


def _registrar(table: dict[str, Callable]) -> Callable:
    """A decorator factory that files the decorated function in ``table`` under each op name given."""
    def register(*ops: str):
        def deco(fn):
            for op in ops:
                table[op] = fn
            return fn
        return deco
    return register


_handles = _registrar(_HANDLERS)
_folds = _registrar(_FOLDERS)


class _Converter:
    def __init__(self, model: dict, weights: dict[str, np.ndarray], opset: int, label: str):
        if opset < MIN_OPSET:
            raise ValueError(f"opset {opset} is below the minimum {MIN_OPSET}")
        self.opset = opset
        self.label = label
        self.model = model
        self.weights = weights
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.used_names: set[str] = set()
        self.forms: dict[tuple, str] = {}   # (onnx name, composed perm) -> transposed tensor
        self.const_names: dict[tuple, str] = {}
        self.values: dict[str, list[Val]] = {}
        self.tf_nodes = {n["name"]: n for n in model["modelTopology"].get("node", [])}
        self.consumers: Counter = Counter()
        for n in self.tf_nodes.values():
            for inp in n.get("input", []):
                if not inp.startswith("^"):
                    self.consumers[self._split_ref(inp)[0]] += 1

    # names and ONNX nodes ---------------------------------------------------------------------

    def unique(self, hint: str) -> str:
        name, i = hint, 1
        while name in self.used_names:
            name = f"{hint}__{i}"
            i += 1
        self.used_names.add(name)
        return name

    def emit(self, op_type: str, inputs: list[str], hint: str, n_out: int = 1, **attrs) -> list[str]:
        outs = [self.unique(hint if n_out == 1 else f"{hint}:{i}") for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=outs[0], **attrs))
        return outs

    def initializer(self, arr: np.ndarray, hint: str) -> str:
        arr = np.ascontiguousarray(arr)
        if arr.dtype == np.object_:
            raise UnsupportedOp({"string tensors": "used by a converted op"})
        key = (arr.dtype.str, arr.shape, arr.tobytes()) if arr.size <= 64 else None
        if key is not None and key in self.const_names:
            return self.const_names[key]
        name = self.unique(hint)
        self.initializers.append(numpy_helper.from_array(arr, name))
        if key is not None:
            self.const_names[key] = name
        return name

    def i64(self, values, hint: str) -> str:
        return self.initializer(np.asarray(values, np.int64), hint)

    # values in the layout an op needs ----------------------------------------------------------

    def need(self, v: Val, perm=None, hint: str = "") -> str:
        """The ONNX name of ``transpose(tf value, perm)`` (perm None: the TF layout itself)."""
        if perm is not None and _is_identity(perm):
            perm = None
        if v.const is not None:
            arr = v.const if perm is None else np.transpose(v.const, perm)
            return self.initializer(arr, hint or "const")
        if v.perm is None:
            composed = perm
        else:
            inv = _inverse(v.perm)
            composed = tuple(inv[q] for q in (perm if perm is not None else range(v.rank)))
        if _is_identity(composed):
            return v.name
        key = (v.name, tuple(composed))
        if key not in self.forms:
            self.forms[key] = self.emit("Transpose", [v.name], f"{v.name}/transpose", perm=list(composed))[0]
        return self.forms[key]

    def const_in(self, v: Val, what: str, node: dict) -> np.ndarray:
        if v.const is None:
            raise UnsupportedOp({node["op"]: f"non-constant {what} (node {node['name']})"})
        return v.const

    # graph walking -----------------------------------------------------------------------------

    @staticmethod
    def _split_ref(ref: str) -> tuple[str, int]:
        parts = ref.split(":")
        if len(parts) == 1:
            return ref, 0
        if len(parts) == 2 and parts[1].isdigit():
            return parts[0], int(parts[1])
        raise UnsupportedOp({f"tensor reference {ref!r}": "function-style output names"})

    def order(self, targets: list[str]) -> list[str]:
        """Node names needed for ``targets``, inputs before consumers (iterative DFS)."""
        seen: set[str] = set()
        done: list[str] = []
        for target in targets:
            stack = [(target, False)]
            while stack:
                name, expanded = stack.pop()
                if expanded:
                    done.append(name)
                    continue
                if name in seen:
                    continue
                if name not in self.tf_nodes:
                    raise DirectConversionError(f"node {name!r} is referenced but not in the graph")
                seen.add(name)
                stack.append((name, True))
                for inp in reversed(self.tf_nodes[name].get("input", [])):
                    if not inp.startswith("^"):
                        dep = self._split_ref(inp)[0]
                        if dep not in seen:
                            stack.append((dep, False))
        return done

    def value(self, ref: str) -> Val:
        name, idx = self._split_ref(ref)
        outs = self.values[name]
        if idx >= len(outs) or outs[idx] is None:
            raise UnsupportedOp({self.tf_nodes[name]["op"]: f"output {idx} is used (node {name})"})
        return outs[idx]

    def run(self, progress: Progress) -> onnx.ModelProto:
        sig = self.model.get("signature") or {}
        placeholders = [n for n in self.tf_nodes.values() if n["op"] in PLACEHOLDERS]
        rename_in = {v["name"]: k for k, v in (sig.get("inputs") or {}).items()}
        outputs = signature_outputs(self.model)
        for key, _ in outputs:
            self.used_names.add(key)
        input_names = [rename_in.get(f"{p['name']}:0", f"{p['name']}:0") for p in placeholders]
        self.used_names.update(input_names)

        order = self.order([self._split_ref(ref)[0] for _, ref in outputs])
        needed = Counter(self.tf_nodes[n]["op"] for n in order)
        missing = {op: k for op, k in needed.items()
                   if op not in _HANDLERS and op not in IDENTITY_OPS and op not in ("Const", "NoOp")
                   and op not in ("Placeholder", "PlaceholderWithDefault", "PlaceholderV2")}
        if missing:
            raise UnsupportedOp(missing, self.label)
        progress(f"converting {len(order)} nodes ({len(needed)} op types)")

        graph_inputs = []
        for p, name in zip(placeholders, input_names):
            dtype = _np_dtype(_attr(p, "dtype", "DT_FLOAT"))
            shape = _attr(p, "shape")
            if shape is None:
                raise DirectConversionError(f"input {p['name']} has no shape in the model")
            shape = tuple(None if d < 0 else d for d in shape)
            self.values[p["name"]] = [Val(name, shape, dtype)]
            graph_inputs.append(helper.make_tensor_value_info(
                name, _onnx_type(dtype), [d if d is not None else f"unk_{name}_{i}" for i, d in enumerate(shape)]))

        for name in order:
            node = self.tf_nodes[name]
            op = node["op"]
            if name in self.values:  # a placeholder
                continue
            if op == "Const":
                if name in self.weights:
                    arr = self.weights[name]
                else:
                    arr = _attr(node, "value")
                    if arr is None:
                        raise DirectConversionError(f"constant {name} has no weight and no value")
                want = _attr(node, "dtype")
                if want is not None and arr.dtype != np.object_:
                    arr = arr.astype(_np_dtype(want))
                self.values[name] = [_const(arr)]
                continue
            if op == "NoOp":
                self.values[name] = []
                continue
            ins = [self.value(r) for r in node.get("input", []) if not r.startswith("^")]
            if op in IDENTITY_OPS:
                self.values[name] = ins if op == "IdentityN" else ins[:1]
                continue
            if ins and all(v.const is not None for v in ins) and op in _FOLDERS:
                try:
                    folded = _FOLDERS[op](self, node, [v.const for v in ins])
                except UnsupportedOp:
                    raise
                except Exception as exc:
                    raise DirectConversionError(f"folding constant node {name} ({op}) failed: {exc}") from exc
                self.values[name] = [_const(a) for a in folded]
                continue
            if op in ("Shape", "Size", "Rank") and ins and _static(ins[0].shape):
                self.values[name] = [_const(a) for a in _FOLDERS[op](self, node, [np.empty(0)], static=ins[0])]
                continue
            self.node_name = name
            try:
                outs = _HANDLERS[op](self, node, ins)
            except UnsupportedOp as exc:
                raise UnsupportedOp(exc.ops, self.label) from None
            for v in outs:
                if v is not None and v.tf_node is None:
                    v.tf_node = name
            self.values[name] = outs

        graph_outputs = []
        claimed: set[str] = set(input_names) | {t.name for t in self.initializers}
        renames: dict[str, str] = {}
        for key, ref in outputs:
            v = self.value(ref)
            src = self.need(v, None, hint=key)
            producer = next((n for n in self.nodes if src in n.output), None)
            if producer is not None and src not in claimed and src not in renames:
                renames[src] = key
            else:
                self.nodes.append(helper.make_node("Identity", [src], [key], name=f"{key}/Identity"))
            claimed.add(src)
            graph_outputs.append(helper.make_tensor_value_info(
                key, _onnx_type(v.dtype), [d if d is not None else f"unk_{key}_{i}" for i, d in enumerate(v.shape)]))
        if renames:
            for n in self.nodes:
                for i, x in enumerate(n.input):
                    if x in renames:
                        n.input[i] = renames[x]
                for i, x in enumerate(n.output):
                    if x in renames:
                        n.output[i] = renames[x]

        used = {i for n in self.nodes for i in n.input}
        initializers = [t for t in self.initializers if t.name in used]
        graph = helper.make_graph(self.nodes, "tfjs_model", graph_inputs, graph_outputs, initializers)
        model = helper.make_model(graph, producer_name=PRODUCER, producer_version=PRODUCER_VERSION,
                                  opset_imports=[helper.make_opsetid("", self.opset)])
        model.ir_version = IR_VERSION
        return model

    # helpers used by handlers ------------------------------------------------------------------

    def hint(self) -> str:
        return self.node_name

    def out(self, name: str, shape, dtype, perm=None) -> Val:
        return Val(name, tuple(shape), np.dtype(dtype), None if _is_identity(perm) else tuple(perm))

    def align(self, ins: list[Val]) -> tuple[tuple | None, list[str]]:
        """Inputs of an elementwise op in one common layout: the layout of the first non-constant
        input of the highest rank; constants are reshaped and transposed to it."""
        rank = max(v.rank for v in ins)
        perm = None
        for v in ins:
            if v.const is None and v.rank == rank:
                perm = v.perm
                break
        if perm is not None and any(v.const is None and v.rank not in (0, rank) for v in ins):
            perm = None
        names = []
        for i, v in enumerate(ins):
            if v.const is not None:
                arr = v.const
                if perm is not None and arr.ndim > 0:
                    arr = np.transpose(arr.reshape((1,) * (rank - arr.ndim) + arr.shape), perm)
                names.append(self.initializer(arr, f"{self.hint()}/c{i}"))
            elif v.rank == 0:
                names.append(v.name)
            else:
                names.append(self.need(v, perm))
        return perm, names

    def stored_axis(self, axis: int, perm) -> int:
        return axis if perm is None else _inverse(perm)[axis]


# -- constant folding (numpy) --------------------------------------------------------------------

def _np_binary(fn):
    return lambda cv, node, xs: [np.asarray(fn(xs[0], xs[1])).astype(np.result_type(xs[0], xs[1]))]


_NP_BINARY = {
    "Add": np.add, "AddV2": np.add, "Sub": np.subtract, "Mul": np.multiply, "RealDiv": np.divide,
    "Maximum": np.maximum, "Minimum": np.minimum, "FloorDiv": np.floor_divide, "FloorMod": np.mod,
}
for _op, _fn in _NP_BINARY.items():
    _FOLDERS[_op] = _np_binary(_fn)


def _np_compare(fn):
    return lambda cv, node, xs: [fn(xs[0], xs[1])]


for _op, _fn in {"Equal": np.equal, "NotEqual": np.not_equal, "Less": np.less, "LessEqual": np.less_equal,
                 "Greater": np.greater, "GreaterEqual": np.greater_equal, "LogicalAnd": np.logical_and,
                 "LogicalOr": np.logical_or}.items():
    _FOLDERS[_op] = _np_compare(_fn)
_FOLDERS["Neg"] = lambda cv, node, xs: [np.negative(xs[0])]
_FOLDERS["Square"] = lambda cv, node, xs: [xs[0] * xs[0]]
_FOLDERS["LogicalNot"] = lambda cv, node, xs: [np.logical_not(xs[0])]


@_folds("Cast")
def _fold_cast(cv, node, xs):
    return [xs[0].astype(_np_dtype(_attr(node, "DstT")))]


@_folds("Reshape")
def _fold_reshape(cv, node, xs):
    return [xs[0].reshape([int(d) for d in xs[1].reshape(-1)])]


@_folds("Transpose")
def _fold_transpose(cv, node, xs):
    return [np.transpose(xs[0], [int(p) for p in xs[1]])]


@_folds("ConcatV2")
def _fold_concat(cv, node, xs):
    return [np.concatenate(xs[:-1], axis=int(xs[-1]))]


@_folds("Pack")
def _fold_pack(cv, node, xs):
    return [np.stack(xs, axis=_attr(node, "axis", 0))]


@_folds("ExpandDims")
def _fold_expand(cv, node, xs):
    return [np.expand_dims(xs[0], int(np.asarray(xs[1]).reshape(-1)[0]))]


@_folds("Squeeze")
def _fold_squeeze(cv, node, xs):
    axes = _attr(node, "squeeze_dims", None) or _attr(node, "axis", None) or None
    return [np.squeeze(xs[0], axis=tuple(axes) if axes else None)]


@_folds("Shape", "Size", "Rank")
def _fold_shape(cv, node, xs, static: Val | None = None):
    shape = static.shape if static is not None else xs[0].shape
    out = np.dtype(_np_dtype(_attr(node, "out_type", "DT_INT32")))
    if node["op"] == "Shape":
        return [np.asarray(shape, out)]
    if node["op"] == "Size":
        return [np.asarray(int(np.prod(shape, dtype=np.int64)), out)]
    return [np.asarray(len(shape), np.int32)]


@_folds("StridedSlice")
def _fold_strided_slice(cv, node, xs):
    index = _tf_index(node, xs[0].ndim, xs[1], xs[2], xs[3])
    return [np.asarray(xs[0][index])]


@_folds("Slice")
def _fold_slice(cv, node, xs):
    begin, size = [int(b) for b in xs[1]], [int(s) for s in xs[2]]
    index = tuple(slice(b, None if s < 0 else b + s) for b, s in zip(begin, size))
    return [xs[0][index]]


@_folds("GatherV2", "Gather")
def _fold_gather(cv, node, xs):
    axis = int(xs[2]) if node["op"] == "GatherV2" else 0
    if _attr(node, "batch_dims", 0):
        raise UnsupportedOp({node["op"]: "batch_dims != 0"})
    return [np.take(xs[0], xs[1], axis=axis)]


@_folds("SparseToDense")
def _fold_sparse_to_dense(cv, node, xs):
    indices, shape, values, default = xs
    out = np.full([int(s) for s in np.asarray(shape).reshape(-1)], default, dtype=values.dtype)
    indices = np.asarray(indices).reshape(len(indices) if indices.ndim else 1, -1) if indices.size else indices
    if indices.size:
        vals = np.broadcast_to(values, (indices.shape[0],))
        for idx, val in zip(indices, vals):
            out[tuple(int(i) for i in np.atleast_1d(idx))] = val
    return [out]


@_folds("Fill")
def _fold_fill(cv, node, xs):
    return [np.full([int(d) for d in xs[0]], xs[1], dtype=xs[1].dtype)]


@_folds("Range")
def _fold_range(cv, node, xs):
    dtype = np.result_type(*xs)
    return [np.arange(xs[0], xs[1], xs[2]).astype(dtype)]


@_folds("Prod", "Sum", "Max", "Min")
def _fold_reduce(cv, node, xs):
    fn = {"Prod": np.prod, "Sum": np.sum, "Max": np.max, "Min": np.min}[node["op"]]
    axes = tuple(int(a) for a in np.asarray(xs[1]).reshape(-1))
    return [np.asarray(fn(xs[0], axis=axes, keepdims=_attr(node, "keep_dims", False))).astype(xs[0].dtype)]


@_folds("Tile")
def _fold_tile(cv, node, xs):
    return [np.tile(xs[0], [int(m) for m in xs[1]])]


@_folds("ZerosLike", "OnesLike")
def _fold_like(cv, node, xs):
    return [(np.zeros_like if node["op"] == "ZerosLike" else np.ones_like)(xs[0])]


@_folds("Select", "SelectV2")
def _fold_select(cv, node, xs):
    return [np.where(xs[0], xs[1], xs[2])]


# -- StridedSlice index --------------------------------------------------------------------------

def _tf_index(node: dict, rank: int, begin, end, strides) -> tuple:
    """StridedSlice's begin/end/strides and masks as a numpy index (ints, slices, None, Ellipsis),
    which has exactly TensorFlow's meaning."""
    bm, em = _attr(node, "begin_mask", 0), _attr(node, "end_mask", 0)
    elm, nam, sam = _attr(node, "ellipsis_mask", 0), _attr(node, "new_axis_mask", 0), _attr(node, "shrink_axis_mask", 0)
    begin, end, strides = (np.asarray(a).reshape(-1).tolist() for a in (begin, end, strides))
    index: list = []
    for i in range(len(begin)):
        bit = 1 << i
        if elm & bit:
            index.append(Ellipsis)
        elif nam & bit:
            index.append(None)
        elif sam & bit:
            index.append(0 if (bm & bit and strides[i] > 0) else int(begin[i]))
        else:
            s = int(strides[i])
            if s == 0:
                raise DirectConversionError(f"StridedSlice {node['name']} has stride 0")
            index.append(slice(None if bm & bit else int(begin[i]), None if em & bit else int(end[i]), s))
    if index.count(Ellipsis) > 1:
        raise UnsupportedOp({"StridedSlice": "more than one ellipsis"})
    return tuple(index)


def _expand_index(index: tuple, rank: int) -> list:
    """The index with its ellipsis (explicit or implicit at the end) expanded: one entry per input
    dimension (int or slice), plus None entries for new axes."""
    used = sum(1 for x in index if x is not None and x is not Ellipsis)
    if Ellipsis not in index:
        index = index + (Ellipsis,)
    out: list = []
    for x in index:
        if x is Ellipsis:
            out.extend([slice(None)] * (rank - used))
        else:
            out.append(x)
    return out


def _index_shape(shape: tuple, items: list) -> tuple:
    out: list = []
    d = 0
    for x in items:
        if x is None:
            out.append(1)
            continue
        dim = shape[d]
        d += 1
        if isinstance(x, int):
            continue
        out.append(None if dim is None else len(range(*x.indices(dim))))
    return tuple(out)


# -- handlers ------------------------------------------------------------------------------------

_UNARY = {"Relu": "Relu", "Sigmoid": "Sigmoid", "Tanh": "Tanh", "Exp": "Exp", "Log": "Log", "Sqrt": "Sqrt",
          "Abs": "Abs", "Neg": "Neg", "Floor": "Floor", "Ceil": "Ceil", "Round": "Round",
          "Reciprocal": "Reciprocal", "Inv": "Reciprocal", "Softplus": "Softplus", "Softsign": "Softsign",
          "Erf": "Erf", "Sin": "Sin", "Cos": "Cos", "Sign": "Sign", "LogicalNot": "Not", "IsNan": "IsNaN",
          "Elu": "Elu", "Selu": "Selu"}


@_handles(*_UNARY)
def _unary(cv: _Converter, node, ins):
    (x,) = ins[:1]
    name = cv.emit(_UNARY[node["op"]], [cv.need(x, x.perm)], cv.hint())[0]
    return [cv.out(name, x.shape, np.bool_ if node["op"] == "IsNan" else x.dtype, x.perm)]


def _activation(cv: _Converter, op: str, src: str, hint: str, *, alpha=None, prelu_alpha: str | None = None) -> str:
    if op == "Relu6":
        return cv.emit("Clip", [src, cv.initializer(np.array(0, np.float32), "zero"),
                                cv.initializer(np.array(6, np.float32), "six")], hint)[0]
    if op == "LeakyRelu":
        return cv.emit("LeakyRelu", [src], hint, alpha=float(0.2 if alpha is None else alpha))[0]
    if op == "Prelu":
        return cv.emit("PRelu", [src, prelu_alpha], hint)[0]
    if op in ("Relu", "Elu", "Sigmoid", "Tanh", "Selu"):
        return cv.emit(op, [src], hint)[0]
    raise UnsupportedOp({f"fused activation {op}": "not handled"})


@_handles("Relu6", "LeakyRelu")
def _relu_like(cv: _Converter, node, ins):
    x = ins[0]
    if x.dtype != np.float32 and node["op"] == "Relu6":
        raise UnsupportedOp({"Relu6": f"dtype {x.dtype}"})
    name = _activation(cv, node["op"], cv.need(x, x.perm), cv.hint(), alpha=_attr(node, "alpha", 0.2))
    return [cv.out(name, x.shape, x.dtype, x.perm)]


@_handles("Square")
def _square(cv: _Converter, node, ins):
    x = ins[0]
    src = cv.need(x, x.perm)
    return [cv.out(cv.emit("Mul", [src, src], cv.hint())[0], x.shape, x.dtype, x.perm)]


@_handles("Rsqrt")
def _rsqrt(cv: _Converter, node, ins):
    x = ins[0]
    s = cv.emit("Sqrt", [cv.need(x, x.perm)], f"{cv.hint()}/sqrt")[0]
    return [cv.out(cv.emit("Reciprocal", [s], cv.hint())[0], x.shape, x.dtype, x.perm)]


_BINARY = {"Add": "Add", "AddV2": "Add", "Sub": "Sub", "Mul": "Mul", "RealDiv": "Div", "Div": "Div",
           "Maximum": "Max", "Minimum": "Min", "Pow": "Pow", "Equal": "Equal", "Less": "Less",
           "Greater": "Greater", "LessEqual": "LessOrEqual", "GreaterEqual": "GreaterOrEqual",
           "LogicalAnd": "And", "LogicalOr": "Or"}
_COMPARE = {"Equal", "NotEqual", "Less", "Greater", "LessEqual", "GreaterEqual", "LogicalAnd", "LogicalOr"}


def _fuse_bias(cv: _Converter, node, ins) -> Val | None:
    """Add(conv output, per-channel constant) -> the constant joins the Conv's bias (as tf2onnx does)."""
    if node["op"] not in ("Add", "AddV2", "BiasAdd") or len(ins) != 2:
        return None
    for x, c in ((ins[0], ins[1]), (ins[1], ins[0])):
        conv = x.producer
        if (c.const is None or x.const is not None or conv is None or conv.op_type != "Conv"
                or conv.output[0] != x.name or x.rank != 4 or x.perm != NHWC_TO_NCHW or c.dtype != np.float32):
            continue
        channels = x.shape[3]
        arr = c.const
        if arr.ndim > 4 or channels is None or arr.size != channels or arr.shape[-1:] != (channels,):
            continue
        refs = [cv._split_ref(r)[0] for r in node.get("input", []) if not r.startswith("^")]
        if x.tf_node not in refs or cv.consumers[x.tf_node] != 1:
            continue  # the bare convolution is used elsewhere too
        bias = arr.reshape(channels)
        if len(conv.input) == 3:
            old = next(t for t in cv.initializers if t.name == conv.input[2])
            bias = (numpy_helper.to_array(old) + bias).astype(np.float32)
            conv.input[2] = cv.initializer(bias, f"{cv.hint()}/bias")
        else:
            conv.input.append(cv.initializer(bias.astype(np.float32), f"{cv.hint()}/bias"))
        return x
    return None


@_handles(*_BINARY, "NotEqual", "SquaredDifference", "FloorDiv", "FloorMod", "BiasAdd")
def _binary(cv: _Converter, node, ins):
    op = node["op"]
    if op == "BiasAdd" and _attr(node, "data_format", "NHWC") == "NCHW" and ins[0].rank > 2:
        b = ins[1]
        shape = (-1,) + (1,) * (ins[0].rank - 2)
        ins = [ins[0], _const(b.const.reshape(shape)) if b.const is not None else
               Val(cv.emit("Reshape", [cv.need(b), cv.i64(shape, "shape")], f"{cv.hint()}/bias")[0],
                   (b.shape[0],) + (1,) * (ins[0].rank - 2), b.dtype)]
    fused = _fuse_bias(cv, node, ins)
    if fused is not None:
        return [fused]
    a, b = ins
    perm, (na, nb) = cv.align(ins)
    shape = _broadcast(a.shape, b.shape)
    hint = cv.hint()
    dtype = a.dtype
    is_int = np.issubdtype(dtype, np.integer)
    if op in ("BiasAdd",):
        name = cv.emit("Add", [na, nb], hint)[0]
    elif op in ("Div",) and is_int:
        raise UnsupportedOp({"Div": "integer division"})
    elif op == "NotEqual":
        name = cv.emit("Not", [cv.emit("Equal", [na, nb], f"{hint}/equal")[0]], hint)[0]
    elif op == "SquaredDifference":
        d = cv.emit("Sub", [na, nb], f"{hint}/sub")[0]
        name = cv.emit("Mul", [d, d], hint)[0]
    elif op == "FloorDiv":
        if is_int:  # (a - floormod(a, b)) / b is exact, so truncating division gives the floor
            m = cv.emit("Mod", [na, nb], f"{hint}/mod", fmod=0)[0]
            name = cv.emit("Div", [cv.emit("Sub", [na, m], f"{hint}/sub")[0], nb], hint)[0]
        else:
            name = cv.emit("Floor", [cv.emit("Div", [na, nb], f"{hint}/div")[0]], hint)[0]
    elif op == "FloorMod":
        if is_int:
            name = cv.emit("Mod", [na, nb], hint, fmod=0)[0]
        else:  # fmod, then + b where the remainder's sign differs from b's (TF's floormod)
            m = cv.emit("Mod", [na, nb], f"{hint}/fmod", fmod=1)[0]
            zero = cv.initializer(np.array(0, dtype), "zero_" + dtype.name)
            nonzero = cv.emit("Not", [cv.emit("Equal", [m, zero], f"{hint}/is0")[0]], f"{hint}/nz")[0]
            differ = cv.emit("Xor", [cv.emit("Less", [m, zero], f"{hint}/mneg")[0],
                                     cv.emit("Less", [nb, zero], f"{hint}/bneg")[0]], f"{hint}/differ")[0]
            fix = cv.emit("And", [nonzero, differ], f"{hint}/fix")[0]
            name = cv.emit("Where", [fix, cv.emit("Add", [m, nb], f"{hint}/add")[0], m], hint)[0]
    else:
        name = cv.emit(_BINARY[op], [na, nb], hint)[0]
    out_dtype = np.bool_ if op in _COMPARE else dtype
    return [cv.out(name, shape, out_dtype, perm)]


@_handles("AddN")
def _add_n(cv: _Converter, node, ins):
    perm, names = cv.align(ins)
    return [cv.out(cv.emit("Sum", names, cv.hint())[0], _broadcast(*(v.shape for v in ins)), ins[0].dtype, perm)]


@_handles("Select", "SelectV2")
def _select(cv: _Converter, node, ins):
    if node["op"] == "Select" and ins[0].rank not in (0, ins[1].rank):
        raise UnsupportedOp({"Select": "a rank-1 condition selecting rows"})
    perm, names = cv.align(ins)
    return [cv.out(cv.emit("Where", names, cv.hint())[0], _broadcast(*(v.shape for v in ins)), ins[1].dtype, perm)]


@_handles("ClipByValue")
def _clip(cv: _Converter, node, ins):
    x, lo, hi = ins
    if lo.const is not None and hi.const is not None and lo.const.ndim == 0 and hi.const.ndim == 0:
        name = cv.emit("Clip", [cv.need(x, x.perm), cv.need(lo), cv.need(hi)], cv.hint())[0]
        return [cv.out(name, x.shape, x.dtype, x.perm)]
    perm, (nx, nlo, nhi) = cv.align(ins)
    m = cv.emit("Max", [nx, nlo], f"{cv.hint()}/max")[0]
    return [cv.out(cv.emit("Min", [m, nhi], cv.hint())[0], x.shape, x.dtype, perm)]


@_handles("Cast")
def _cast(cv: _Converter, node, ins):
    x = ins[0]
    dst = _np_dtype(_attr(node, "DstT"))
    if dst == x.dtype:
        return [x]
    name = cv.emit("Cast", [cv.need(x, x.perm)], cv.hint(), to=_onnx_type(dst))[0]
    return [cv.out(name, x.shape, dst, x.perm)]


@_handles("Prelu")
def _prelu(cv: _Converter, node, ins):
    x, alpha = ins
    perm, (nx, na) = cv.align([x, alpha])
    return [cv.out(cv.emit("PRelu", [nx, na], cv.hint())[0], x.shape, x.dtype, perm)]


# convolutions and pooling ------------------------------------------------------------------------

def _spatial(node, name: str, fmt: str, default: int = 1) -> list[int]:
    vals = _attr(node, name) or [default] * 4
    if len(vals) == 2:
        return [int(v) for v in vals]
    return [int(v) for v in (vals[1:3] if fmt == "NHWC" else vals[2:4])]


def _pads(node, padding: str, fmt: str, in_hw, kernel, strides, dilations) -> tuple[list[int] | None, list]:
    """ONNX pads (top, left, bottom, right) and the output spatial size, for TF padding rules."""
    if padding == "VALID":
        pads = [0, 0, 0, 0]
    elif padding == "EXPLICIT":
        ex = [int(v) for v in _attr(node, "explicit_paddings", [])]
        pairs = [ex[2:4], ex[4:6]] if fmt == "NHWC" else [ex[4:6], ex[6:8]]
        pads = [pairs[0][0], pairs[1][0], pairs[0][1], pairs[1][1]]
    elif padding == "SAME":
        if any(d is None for d in in_hw):
            return None, [None if d is None else -(-d // s) for d, s in zip(in_hw, strides)]
        before, after = [], []
        for size, k, s, d in zip(in_hw, kernel, strides, dilations):
            out = -(-size // s)
            total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
            before.append(total // 2)
            after.append(total - total // 2)  # TF puts the odd pixel at the end (bottom/right)
        pads = before + after
    else:
        raise UnsupportedOp({node["op"]: f"padding {padding}"})
    out_hw = []
    for i, (size, k, s, d) in enumerate(zip(in_hw, kernel, strides, dilations)):
        if size is None:
            out_hw.append(None)
        else:
            out_hw.append((size + pads[i] + pads[i + 2] - ((k - 1) * d + 1)) // s + 1)
    return pads, out_hw


def _fused_parts(cv: _Converter, node, extra: list[Val]) -> tuple[np.ndarray | None, str | None, dict]:
    """(bias, activation, activation options) of a TF.js fused conv/matmul."""
    fused = [s for s in (_attr(node, "fused_ops", []) or [])]
    bias = None
    act = None
    opts: dict = {}
    args = list(extra)
    if fused and fused[0] == "BiasAdd":
        bias = cv.const_in(args.pop(0), "bias", node)
        fused = fused[1:]
    elif fused and fused[0] == "FusedBatchNorm":
        raise UnsupportedOp({node["op"]: "fused FusedBatchNorm"})
    if fused:
        act = fused[0]
        if len(fused) > 1:
            raise UnsupportedOp({node["op"]: f"fused ops {fused}"})
        if act == "LeakyRelu":
            opts["alpha"] = _attr(node, "leakyrelu_alpha", 0.2)
        elif act == "Prelu":
            if not args:
                raise DirectConversionError(f"{node['name']}: Prelu without its alpha argument")
            opts["prelu"] = args.pop(0)
        elif act not in ("Relu", "Relu6", "Elu", "Sigmoid", "Tanh", "Selu"):
            raise UnsupportedOp({node["op"]: f"fused activation {act}"})
    return bias, act, opts


@_handles("Conv2D", "_FusedConv2D", "FusedConv2D", "DepthwiseConv2dNative", "FusedDepthwiseConv2dNative",
          "_FusedDepthwiseConv2dNative")
def _conv(cv: _Converter, node, ins):
    op = node["op"]
    x, w = ins[0], ins[1]
    depthwise = "Depthwise" in op
    fmt = _attr(node, "data_format", "NHWC")
    if fmt not in ("NHWC", "NCHW") or x.rank != 4:
        raise UnsupportedOp({op: f"data_format {fmt} / rank {x.rank}"})
    wt = cv.const_in(w, "filter", node)
    kh, kw, cin_f, cout = wt.shape
    strides = _spatial(node, "strides", fmt)
    dilations = _spatial(node, "dilations", fmt)
    c_axis = 3 if fmt == "NHWC" else 1
    in_hw = [x.shape[1], x.shape[2]] if fmt == "NHWC" else [x.shape[2], x.shape[3]]
    cin = x.shape[c_axis]
    pads, out_hw = _pads(node, _attr(node, "padding", "VALID"), fmt, in_hw, [kh, kw], strides, dilations)
    if depthwise:
        weight = np.transpose(wt, (2, 3, 0, 1)).reshape(cin_f * cout, 1, kh, kw)  # out channel = c * M + m
        group, out_c = cin_f, cin_f * cout
    else:
        if cin is None:
            group = 1
        elif cin % cin_f:
            raise DirectConversionError(f"{node['name']}: {cin} input channels, filter expects {cin_f}")
        else:
            group = cin // cin_f
        weight = np.transpose(wt, (3, 2, 0, 1))
        out_c = cout
    bias, act, opts = _fused_parts(cv, node, ins[2:]) if op not in ("Conv2D", "DepthwiseConv2dNative") else (
        None, None, {})
    hint = cv.hint()
    inputs = [cv.need(x, NHWC_TO_NCHW if fmt == "NHWC" else None),
              cv.initializer(weight.astype(np.float32), w.name or f"{hint}/weights")]
    if bias is not None:
        inputs.append(cv.initializer(bias.reshape(out_c).astype(np.float32), f"{hint}/bias"))
    attrs: dict = {"kernel_shape": [kh, kw], "strides": strides, "dilations": dilations, "group": group}
    if pads is None:
        attrs["auto_pad"] = "SAME_UPPER"
    else:
        attrs["pads"] = pads
    name = cv.emit("Conv", inputs, hint if act is None else f"{hint}/conv", **attrs)[0]
    conv_node = cv.nodes[-1]
    if act is not None:
        prelu = None
        if act == "Prelu":
            alpha = cv.const_in(opts["prelu"], "prelu alpha", node)
            prelu = cv.initializer(alpha.reshape(-1, 1, 1) if alpha.size == out_c else alpha.reshape(()),
                                   f"{hint}/alpha")
        name = _activation(cv, act, name, hint, alpha=opts.get("alpha"), prelu_alpha=prelu)
    n = x.shape[0]
    shape = (n, out_hw[0], out_hw[1], out_c) if fmt == "NHWC" else (n, out_c, out_hw[0], out_hw[1])
    v = cv.out(name, shape, np.float32, NHWC_TO_NCHW if fmt == "NHWC" else None)
    if act is None:
        v.producer = conv_node
    return [v]


@_handles("MaxPool", "AvgPool")
def _pool(cv: _Converter, node, ins):
    x = ins[0]
    fmt = _attr(node, "data_format", "NHWC")
    if fmt not in ("NHWC", "NCHW") or x.rank != 4:
        raise UnsupportedOp({node["op"]: f"data_format {fmt}"})
    kernel = _spatial(node, "ksize", fmt)
    strides = _spatial(node, "strides", fmt)
    in_hw = [x.shape[1], x.shape[2]] if fmt == "NHWC" else [x.shape[2], x.shape[3]]
    pads, out_hw = _pads(node, _attr(node, "padding", "VALID"), fmt, in_hw, kernel, strides, [1, 1])
    attrs: dict = {"kernel_shape": kernel, "strides": strides}
    if pads is None:
        attrs["auto_pad"] = "SAME_UPPER"
    else:
        attrs["pads"] = pads
    if node["op"] == "AvgPool":
        attrs["count_include_pad"] = 0  # TF averages over the real pixels only
    perm = NHWC_TO_NCHW if fmt == "NHWC" else None
    name = cv.emit("MaxPool" if node["op"] == "MaxPool" else "AveragePool", [cv.need(x, perm)], cv.hint(),
                   **attrs)[0]
    c = x.shape[3] if fmt == "NHWC" else x.shape[1]
    shape = (x.shape[0], out_hw[0], out_hw[1], c) if fmt == "NHWC" else (x.shape[0], c, out_hw[0], out_hw[1])
    return [cv.out(name, shape, x.dtype, perm)]


@_handles("FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3")
def _batch_norm(cv: _Converter, node, ins):
    x = ins[0]
    if _attr(node, "is_training", False):
        raise UnsupportedOp({node["op"]: "is_training"})
    scale, offset, mean, var = (cv.const_in(v, "statistics", node).astype(np.float32) for v in ins[1:5])
    fmt = _attr(node, "data_format", "NHWC")
    perm = NHWC_TO_NCHW if fmt == "NHWC" and x.rank == 4 else None
    hint = cv.hint()
    name = cv.emit("BatchNormalization", [cv.need(x, perm), cv.initializer(scale, f"{hint}/scale"),
                                          cv.initializer(offset, f"{hint}/offset"),
                                          cv.initializer(mean, f"{hint}/mean"), cv.initializer(var, f"{hint}/var")],
                   hint, epsilon=float(_attr(node, "epsilon", 1e-4)))[0]
    return [cv.out(name, x.shape, x.dtype, perm)] + [None] * 5


@_handles("MatMul", "BatchMatMul", "BatchMatMulV2", "_FusedMatMul", "FusedMatMul")
def _matmul(cv: _Converter, node, ins):
    a, b = ins[0], ins[1]
    ta = _attr(node, "transpose_a", False) or _attr(node, "adj_x", False)
    tb = _attr(node, "transpose_b", False) or _attr(node, "adj_y", False)

    def swap(v: Val) -> tuple:
        p = list(range(v.rank))
        p[-1], p[-2] = p[-2], p[-1]
        return tuple(p)

    na = cv.need(a, swap(a) if ta else None)
    nb = cv.need(b, swap(b) if tb else None)
    sa = list(a.shape)
    sb = list(b.shape)
    if ta:
        sa[-1], sa[-2] = sa[-2], sa[-1]
    if tb:
        sb[-1], sb[-2] = sb[-2], sb[-1]
    shape = _broadcast(tuple(sa[:-2]), tuple(sb[:-2])) + (sa[-2], sb[-1])
    hint = cv.hint()
    bias, act, opts = _fused_parts(cv, node, ins[2:]) if "Fused" in node["op"] else (None, None, {})
    name = cv.emit("MatMul", [na, nb], hint if bias is None and act is None else f"{hint}/matmul")[0]
    if bias is not None:
        name = cv.emit("Add", [name, cv.initializer(bias.astype(np.float32), f"{hint}/bias")],
                       hint if act is None else f"{hint}/bias_add")[0]
    if act is not None:
        prelu = cv.initializer(cv.const_in(opts["prelu"], "prelu alpha", node), f"{hint}/alpha") \
            if act == "Prelu" else None
        name = _activation(cv, act, name, hint, alpha=opts.get("alpha"), prelu_alpha=prelu)
    return [cv.out(name, shape, a.dtype)]


# resizing, padding -------------------------------------------------------------------------------

@_handles("ResizeBilinear", "ResizeNearestNeighbor")
def _resize(cv: _Converter, node, ins):
    x, size = ins
    if x.rank != 4:
        raise UnsupportedOp({node["op"]: f"rank {x.rank}"})
    align = _attr(node, "align_corners", False)
    half = _attr(node, "half_pixel_centers", False)
    hint = cv.hint()
    src = cv.need(x, NHWC_TO_NCHW)
    n, h, w, c = x.shape
    attrs: dict = {}
    if size.const is not None:
        oh, ow = (int(s) for s in size.const.reshape(-1))
    else:
        oh = ow = None
    if node["op"] == "ResizeBilinear":
        attrs["mode"] = "linear"
        attrs["coordinate_transformation_mode"] = ("align_corners" if align else "half_pixel" if half
                                                   else "asymmetric")
    else:
        attrs["mode"] = "nearest"
        whole = (oh is not None and h and w and oh % h == 0 and ow % w == 0 and oh >= h and ow >= w)
        if align:  # round(x * (in - 1) / (out - 1)), halves away from zero
            attrs.update(coordinate_transformation_mode="align_corners", nearest_mode="round_prefer_ceil")
        elif half and not whole:  # floor((x + 0.5) * in / out) == round_prefer_ceil((x + 0.5) * in / out - 0.5)
            attrs.update(coordinate_transformation_mode="half_pixel", nearest_mode="round_prefer_ceil")
        else:  # floor(x * in / out); for whole-number upscales also what half_pixel_centers picks
            attrs.update(coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    if oh is not None and n is not None and c is not None:
        sizes = cv.i64([n, c, oh, ow], f"{hint}/sizes")
    else:
        shape = cv.emit("Shape", [src], f"{hint}/shape")[0]
        nc = cv.emit("Slice", [shape, cv.i64([0], "zero_1d"), cv.i64([2], "two_1d")], f"{hint}/nc")[0]
        hw = cv.emit("Cast", [cv.need(size)], f"{hint}/hw", to=TensorProto.INT64)[0]
        sizes = cv.emit("Concat", [nc, hw], f"{hint}/sizes", axis=0)[0]
    name = cv.emit("Resize", [src, "", "", sizes], hint, **attrs)[0]
    return [cv.out(name, (n, oh, ow, c), x.dtype, NHWC_TO_NCHW)]


@_handles("Pad", "PadV2", "MirrorPad")
def _pad(cv: _Converter, node, ins):
    x, paddings = ins[0], ins[1]
    pads = cv.const_in(paddings, "paddings", node).astype(np.int64).reshape(-1, 2)
    if (pads < 0).any():
        raise UnsupportedOp({node["op"]: "negative paddings"})
    perm = x.perm
    order = perm if perm is not None else tuple(range(x.rank))
    onnx_pads = [int(pads[d, 0]) for d in order] + [int(pads[d, 1]) for d in order]
    hint = cv.hint()
    inputs = [cv.need(x, perm), cv.i64(onnx_pads, f"{hint}/pads")]
    attrs: dict = {}
    if node["op"] == "MirrorPad":
        mode = _attr(node, "mode", "REFLECT")
        if mode == "REFLECT":
            attrs["mode"] = "reflect"
        elif mode == "SYMMETRIC" and pads.max() <= 1:
            attrs["mode"] = "edge"  # repeating the edge pixel once is the same thing
        else:
            raise UnsupportedOp({"MirrorPad": f"mode {mode} with paddings up to {pads.max()}"})
    else:
        value = ins[2].const if node["op"] == "PadV2" else np.zeros((), x.dtype)
        if value is None:
            raise UnsupportedOp({"PadV2": "non-constant pad value"})
        inputs.append(cv.initializer(np.asarray(value, x.dtype).reshape(()), f"{hint}/value"))
    name = cv.emit("Pad", inputs, hint, **attrs)[0]
    shape = tuple(None if d is None else d + int(pads[i].sum()) for i, d in enumerate(x.shape))
    return [cv.out(name, shape, x.dtype, perm)]


# reductions, softmax, argmax ----------------------------------------------------------------------

_REDUCE = {"Mean": "ReduceMean", "Sum": "ReduceSum", "Max": "ReduceMax", "Min": "ReduceMin", "Prod": "ReduceProd"}


@_handles(*_REDUCE)
def _reduce(cv: _Converter, node, ins):
    x, axes_v = ins
    axes = sorted({_norm_axis(a, x.rank) for a in cv.const_in(axes_v, "axes", node).reshape(-1)})
    keep = bool(_attr(node, "keep_dims", False))
    hint = cv.hint()
    perm = x.perm
    stored_axes = sorted(cv.stored_axis(a, perm) for a in axes)
    shape = tuple((1 if i in axes else d) for i, d in enumerate(x.shape) if keep or i not in axes)
    src = cv.need(x, perm)
    if node["op"] == "Mean" and x.rank == 4 and stored_axes == [2, 3] and x.dtype == np.float32:
        name = cv.emit("GlobalAveragePool", [src], hint if keep else f"{hint}/gap")[0]
        if not keep:
            name = cv.emit("Squeeze", [name, cv.i64([2, 3], "axes_2_3")], hint)[0]
    elif not axes:
        return [x]
    elif node["op"] == "Sum":  # axes is an input from opset 13 on
        name = cv.emit("ReduceSum", [src, cv.i64(stored_axes, f"{hint}/axes")], hint, keepdims=int(keep))[0]
    elif cv.opset >= 18:
        name = cv.emit(_REDUCE[node["op"]], [src, cv.i64(stored_axes, f"{hint}/axes")], hint, keepdims=int(keep))[0]
    else:
        name = cv.emit(_REDUCE[node["op"]], [src], hint, axes=stored_axes, keepdims=int(keep))[0]
    if keep or perm is None:
        out_perm = perm
    else:  # the kept dimensions, in stored order, renumbered
        kept = [d for d in perm if d not in axes]
        renum = {d: i for i, d in enumerate(sorted(kept))}
        out_perm = tuple(renum[d] for d in kept)
    return [cv.out(name, shape, x.dtype, out_perm)]


@_handles("Softmax", "LogSoftmax")
def _softmax(cv: _Converter, node, ins):
    x = ins[0]
    axis = cv.stored_axis(x.rank - 1, x.perm)
    name = cv.emit(node["op"], [cv.need(x, x.perm)], cv.hint(), axis=axis)[0]
    return [cv.out(name, x.shape, x.dtype, x.perm)]


@_handles("ArgMax", "ArgMin")
def _argmax(cv: _Converter, node, ins):
    x, dim = ins
    axis = _norm_axis(int(cv.const_in(dim, "dimension", node).reshape(-1)[0]), x.rank)
    out_type = _np_dtype(_attr(node, "output_type", "DT_INT64"))
    hint = cv.hint()
    name = cv.emit(node["op"], [cv.need(x)], hint if out_type == np.int64 else f"{hint}/arg", axis=axis, keepdims=0)[0]
    if out_type != np.int64:
        name = cv.emit("Cast", [name], hint, to=_onnx_type(out_type))[0]
    return [cv.out(name, tuple(d for i, d in enumerate(x.shape) if i != axis), out_type)]


@_handles("TopKV2")
def _topk(cv: _Converter, node, ins):
    x, k = ins
    kk = int(cv.const_in(k, "k", node).reshape(-1)[0])
    hint = cv.hint()
    axis = cv.stored_axis(x.rank - 1, x.perm)
    values, indices = cv.emit("TopK", [cv.need(x, x.perm), cv.i64([kk], f"{hint}/k")], hint, n_out=2,
                              axis=axis, largest=1, sorted=1)
    index_type = _np_dtype(_attr(node, "index_type", "DT_INT32"))
    shape = x.shape[:-1] + (kk,)
    vals = cv.out(values, shape, x.dtype, x.perm)
    if index_type != np.int64:
        indices = cv.emit("Cast", [indices], f"{hint}/indices", to=_onnx_type(index_type))[0]
    return [vals, cv.out(indices, shape, index_type, x.perm)]


# shapes and data movement -------------------------------------------------------------------------

@_handles("Reshape")
def _reshape(cv: _Converter, node, ins):
    x, shape_v = ins
    hint = cv.hint()
    if shape_v.const is not None:
        target = [int(d) for d in shape_v.const.reshape(-1)]
        if 0 in target and any(d is None or d != 0 for d in x.shape):
            raise UnsupportedOp({"Reshape": "a zero-sized target dimension"})
        known = [d for d in target if d != -1]
        if -1 in target and _static(x.shape):
            total = int(np.prod(x.shape, dtype=np.int64))
            rest = int(np.prod(known, dtype=np.int64)) if known else 1
            out_shape = tuple(total // rest if d == -1 else d for d in target)
        else:
            out_shape = tuple(None if d == -1 else d for d in target)
        if _static(out_shape) and _static(x.shape) and out_shape == tuple(x.shape):
            return [x]
        shape_name = cv.i64(target, f"{hint}/shape")
    else:
        shape_name = cv.emit("Cast", [cv.need(shape_v)], f"{hint}/shape", to=TensorProto.INT64)[0]
        if shape_v.shape[0] is None:
            raise UnsupportedOp({"Reshape": "a target shape of unknown rank"})
        out_shape = (None,) * shape_v.shape[0]
    name = cv.emit("Reshape", [cv.need(x), shape_name], hint)[0]
    return [cv.out(name, out_shape, x.dtype)]


@_handles("Transpose")
def _transpose(cv: _Converter, node, ins):
    x, perm_v = ins
    t = tuple(int(p) for p in cv.const_in(perm_v, "perm", node).reshape(-1))
    shape = tuple(x.shape[i] for i in t)
    inv_t = _inverse(t)
    stored = x.perm if x.perm is not None else tuple(range(x.rank))
    new_perm = tuple(inv_t[p] for p in stored)  # same ONNX tensor, seen through the new permutation
    return [Val(x.name, shape, x.dtype, None if _is_identity(new_perm) else new_perm, producer=None)]


@_handles("ConcatV2", "Concat")
def _concat(cv: _Converter, node, ins):
    if node["op"] == "Concat":
        axis_v, parts = ins[0], ins[1:]
    else:
        parts, axis_v = ins[:-1], ins[-1]
    rank = parts[0].rank
    axis = _norm_axis(int(cv.const_in(axis_v, "axis", node).reshape(-1)[0]), rank)
    perms = {v.perm for v in parts if v.const is None}
    perm = perms.pop() if len(perms) == 1 else None
    names = [cv.need(v, perm) for v in parts]
    dim = [v.shape[axis] for v in parts]
    shape = list(parts[0].shape)
    for v in parts[1:]:
        shape = [a if a is not None else b for a, b in zip(shape, v.shape)]
    shape[axis] = None if any(d is None for d in dim) else sum(dim)
    if len(names) == 1:
        return [parts[0]]
    name = cv.emit("Concat", names, cv.hint(), axis=cv.stored_axis(axis, perm))[0]
    return [cv.out(name, shape, parts[0].dtype, perm)]


@_handles("Pack")
def _pack(cv: _Converter, node, ins):
    rank = ins[0].rank + 1
    axis = _norm_axis(_attr(node, "axis", 0), rank)
    hint = cv.hint()
    axes = cv.i64([axis], f"{hint}/axes")
    names = [cv.emit("Unsqueeze", [cv.need(v), axes], f"{hint}/{i}")[0] for i, v in enumerate(ins)]
    shape = list(_broadcast(*(v.shape for v in ins)))
    shape.insert(axis, len(ins))
    return [cv.out(cv.emit("Concat", names, hint, axis=axis)[0], shape, ins[0].dtype)]


@_handles("Unpack")
def _unpack(cv: _Converter, node, ins):
    x = ins[0]
    axis = _norm_axis(_attr(node, "axis", 0), x.rank)
    num = _attr(node, "num") or x.shape[axis]
    hint = cv.hint()
    extra = {"num_outputs": num} if cv.opset >= 18 else {}
    parts = cv.emit("Split", [cv.need(x)], f"{hint}/split", n_out=num, axis=axis, **extra) if num > 1 else [cv.need(x)]
    axes = cv.i64([axis], f"{hint}/axes")
    shape = x.shape[:axis] + x.shape[axis + 1:]
    return [cv.out(cv.emit("Squeeze", [p, axes], f"{hint}:{i}")[0], shape, x.dtype) for i, p in enumerate(parts)]


@_handles("Split", "SplitV")
def _split(cv: _Converter, node, ins):
    if node["op"] == "Split":
        dim_v, x = ins
        num = _attr(node, "num_split")
        sizes = None
    else:
        x, sizes_v, dim_v = ins
        sizes = [int(s) for s in cv.const_in(sizes_v, "size_splits", node).reshape(-1)]
        num = len(sizes)
    axis = _norm_axis(int(cv.const_in(dim_v, "split_dim", node).reshape(-1)[0]), x.rank)
    total = x.shape[axis]
    if sizes is None:
        sizes = [None if total is None else total // num] * num
    elif -1 in sizes:
        if total is None:
            raise UnsupportedOp({"SplitV": "-1 size along a dimension of unknown size"})
        sizes[sizes.index(-1)] = total - sum(s for s in sizes if s != -1)
    if num == 1:
        return [x]
    hint = cv.hint()
    inputs = [cv.need(x, x.perm)]
    if node["op"] == "SplitV":
        inputs.append(cv.i64(sizes, f"{hint}/sizes"))
    extra = {"num_outputs": num} if cv.opset >= 18 and len(inputs) == 1 else {}
    outs = cv.emit("Split", inputs, hint, n_out=num, axis=cv.stored_axis(axis, x.perm), **extra)
    results = []
    for name, size in zip(outs, sizes):
        shape = list(x.shape)
        shape[axis] = size
        results.append(cv.out(name, shape, x.dtype, x.perm))
    return results


@_handles("Squeeze")
def _squeeze(cv: _Converter, node, ins):
    x = ins[0]
    axes = _attr(node, "squeeze_dims", None) or _attr(node, "axis", None) or []
    axes = sorted({_norm_axis(a, x.rank) for a in axes})
    if not axes:
        if any(d is None for d in x.shape):
            raise UnsupportedOp({"Squeeze": "no axes on a shape with unknown dimensions"})
        axes = [i for i, d in enumerate(x.shape) if d == 1]
    hint = cv.hint()
    name = cv.emit("Squeeze", [cv.need(x), cv.i64(axes, f"{hint}/axes")], hint)[0]
    return [cv.out(name, tuple(d for i, d in enumerate(x.shape) if i not in axes), x.dtype)]


@_handles("ExpandDims")
def _expand_dims(cv: _Converter, node, ins):
    x, dim = ins
    axis = _norm_axis(int(cv.const_in(dim, "dim", node).reshape(-1)[0]), x.rank + 1)
    hint = cv.hint()
    name = cv.emit("Unsqueeze", [cv.need(x), cv.i64([axis], f"{hint}/axes")], hint)[0]
    shape = list(x.shape)
    shape.insert(axis, 1)
    return [cv.out(name, shape, x.dtype)]


@_handles("StridedSlice")
def _strided_slice(cv: _Converter, node, ins):
    x = ins[0]
    begin, end, strides = (cv.const_in(v, "begin/end/strides", node) for v in ins[1:4])
    index = _tf_index(node, x.rank, begin, end, strides)
    items = _expand_index(index, x.rank)
    out_shape = _index_shape(x.shape, items)
    hint = cv.hint()
    simple = all(isinstance(it, slice) for it in items)
    perm = x.perm if simple else None
    starts, ends, axes, steps, shrink = [], [], [], [], []
    d = 0
    for it in items:
        if it is None:
            continue
        if isinstance(it, int):
            starts.append(it)
            ends.append(INT64_MAX if it == -1 else it + 1)
            axes.append(d)
            steps.append(1)
            shrink.append(d)
        elif it != slice(None):
            step = 1 if it.step is None else it.step
            starts.append(it.start if it.start is not None else (0 if step > 0 else INT64_MAX))
            ends.append(it.stop if it.stop is not None else (INT64_MAX if step > 0 else INT64_MIN))
            axes.append(d)
            steps.append(step)
        d += 1
    name = cv.need(x, perm)
    if axes:
        stored = [cv.stored_axis(a, perm) for a in axes]
        inputs = [name, cv.i64(starts, f"{hint}/starts"), cv.i64(ends, f"{hint}/ends"),
                  cv.i64(stored, f"{hint}/axes")]
        if any(s != 1 for s in steps):
            inputs.append(cv.i64(steps, f"{hint}/steps"))
        name = cv.emit("Slice", inputs, hint if simple else f"{hint}/slice")[0]
    if shrink:
        name = cv.emit("Squeeze", [name, cv.i64(shrink, f"{hint}/shrink")], f"{hint}/squeeze")[0]
    new_axes = [i for i, it in enumerate(it for it in items if not isinstance(it, int)) if it is None]
    if new_axes:
        name = cv.emit("Unsqueeze", [name, cv.i64(new_axes, f"{hint}/new_axes")], hint)[0]
    if not (axes or shrink or new_axes):
        return [x]
    return [cv.out(name, out_shape, x.dtype, perm)]


@_handles("Slice")
def _slice(cv: _Converter, node, ins):
    x = ins[0]
    begin = [int(b) for b in cv.const_in(ins[1], "begin", node).reshape(-1)]
    size = [int(s) for s in cv.const_in(ins[2], "size", node).reshape(-1)]
    ends = [INT64_MAX if s < 0 else b + s for b, s in zip(begin, size)]
    hint = cv.hint()
    perm = x.perm
    axes = [cv.stored_axis(a, perm) for a in range(x.rank)]
    name = cv.emit("Slice", [cv.need(x, perm), cv.i64(begin, f"{hint}/starts"), cv.i64(ends, f"{hint}/ends"),
                             cv.i64(axes, f"{hint}/axes")], hint)[0]
    shape = tuple((None if d is None else d - b) if s < 0 else s for d, b, s in zip(x.shape, begin, size))
    return [cv.out(name, shape, x.dtype, perm)]


@_handles("GatherV2", "Gather")
def _gather(cv: _Converter, node, ins):
    params, indices = ins[0], ins[1]
    axis = 0 if node["op"] == "Gather" else int(cv.const_in(ins[2], "axis", node).reshape(-1)[0])
    if _attr(node, "batch_dims", 0):
        raise UnsupportedOp({node["op"]: "batch_dims != 0"})
    axis = _norm_axis(axis, params.rank)
    name = cv.emit("Gather", [cv.need(params), cv.need(indices)], cv.hint(), axis=axis)[0]
    shape = params.shape[:axis] + indices.shape + params.shape[axis + 1:]
    return [cv.out(name, shape, params.dtype)]


@_handles("Tile")
def _tile(cv: _Converter, node, ins):
    x, mult = ins
    reps = [int(m) for m in cv.const_in(mult, "multiples", node).reshape(-1)]
    perm = x.perm
    stored = [reps[d] for d in perm] if perm is not None else reps
    hint = cv.hint()
    name = cv.emit("Tile", [cv.need(x, perm), cv.i64(stored, f"{hint}/repeats")], hint)[0]
    shape = tuple(None if d is None else d * r for d, r in zip(x.shape, reps))
    return [cv.out(name, shape, x.dtype, perm)]


@_handles("BroadcastTo")
def _broadcast_to(cv: _Converter, node, ins):
    x, shape_v = ins
    target = [int(d) for d in cv.const_in(shape_v, "shape", node).reshape(-1)]
    hint = cv.hint()
    name = cv.emit("Expand", [cv.need(x), cv.i64(target, f"{hint}/shape")], hint)[0]
    return [cv.out(name, _broadcast(x.shape, tuple(target)), x.dtype)]


@_handles("Fill")
def _fill(cv: _Converter, node, ins):
    dims, value = ins
    hint = cv.hint()
    shape_name = cv.emit("Cast", [cv.need(dims)], f"{hint}/dims", to=TensorProto.INT64)[0]
    name = cv.emit("Expand", [cv.need(value), shape_name], hint)[0]
    rank = dims.shape[0]
    return [cv.out(name, (None,) * rank, value.dtype)]


@_handles("ZerosLike", "OnesLike")
def _zeros_like(cv: _Converter, node, ins):
    x = ins[0]
    fill = np.zeros((), x.dtype) if node["op"] == "ZerosLike" else np.ones((), x.dtype)
    if _static(x.shape):
        return [_const(np.full(x.shape, fill))]
    hint = cv.hint()
    shape = cv.emit("Shape", [cv.need(x)], f"{hint}/shape")[0]
    name = cv.emit("ConstantOfShape", [shape], hint, value=numpy_helper.from_array(fill.reshape(1)))[0]
    return [cv.out(name, x.shape, x.dtype)]


@_handles("Shape", "Size", "Rank")
def _shape(cv: _Converter, node, ins):
    x = ins[0]
    out_type = _np_dtype(_attr(node, "out_type", "DT_INT32"))
    hint = cv.hint()
    shape = cv.emit("Shape", [cv.need(x)], f"{hint}/shape")[0]
    if node["op"] == "Size":
        shape = cv.emit("ReduceProd", [shape], f"{hint}/prod", keepdims=0)[0]
        out_shape: tuple = ()
    elif node["op"] == "Rank":
        return [_const(np.array(x.rank, np.int32))]
    else:
        out_shape = (x.rank,)
    return [cv.out(cv.emit("Cast", [shape], hint, to=_onnx_type(out_type))[0], out_shape, out_type)]


@_handles("DepthToSpace", "SpaceToDepth")
def _depth_space(cv: _Converter, node, ins):
    x = ins[0]
    fmt = _attr(node, "data_format", "NHWC")
    if fmt != "NHWC" or x.rank != 4:
        raise UnsupportedOp({node["op"]: f"data_format {fmt}"})
    bs = int(_attr(node, "block_size"))
    n, h, w, c = x.shape
    attrs = {"blocksize": bs}
    if node["op"] == "DepthToSpace":
        attrs["mode"] = "DCR"  # TF's channel order: (row in block, column in block, channel)
        shape = (n, None if h is None else h * bs, None if w is None else w * bs, None if c is None else c // bs // bs)
    else:
        shape = (n, None if h is None else h // bs, None if w is None else w // bs, None if c is None else c * bs * bs)
    name = cv.emit(node["op"], [cv.need(x, NHWC_TO_NCHW)], cv.hint(), **attrs)[0]
    return [cv.out(name, shape, x.dtype, NHWC_TO_NCHW)]


SUPPORTED_OPS: frozenset[str] = frozenset(
    set(_HANDLERS) | IDENTITY_OPS | {"Const", "NoOp", "Placeholder", "PlaceholderWithDefault", "PlaceholderV2"}
    | {"SparseToDense", "Range"}  # constant inputs only (folded)
)


def _fold_only(cv: _Converter, node, ins):
    raise UnsupportedOp({node["op"]: f"non-constant inputs (node {node['name']})"})


for _op in ("SparseToDense", "Range"):
    _HANDLERS[_op] = _fold_only


# -- entry points --------------------------------------------------------------------------------

def build_onnx(model_json: Path | str, *, opset: int = DEFAULT_OPSET, progress: Progress | None = None) -> onnx.ModelProto:
    """The ONNX model of a TF.js graph model (model.json with its weight shards beside it)."""
    say = progress or (lambda _msg: None)
    model_json = Path(model_json)
    model, gzipped = load_model_json(model_json)
    topology = model.get("modelTopology") or {}
    fmt = model.get("format") or topology.get("format") or ("layers-model" if "keras_version" in topology
                                                           else "graph-model")
    if fmt != "graph-model" or "node" not in topology:
        raise UnsupportedOp({f"model format {fmt}": "only TF.js graph models are converted"}, model_json.name)
    functions = (topology.get("library") or {}).get("function") or []
    if functions:
        raise UnsupportedOp({"function library": f"{len(functions)} function(s) (control flow)"}, model_json.name)
    weights = read_weights(model, model_json.parent, gzipped)
    say(f"read {len(weights)} weights of {model_json.name}")
    return _Converter(model, weights, opset, model_json.name).run(say)


def convert(model_json: Path | str, out_onnx: Path | str, *, opset: int = DEFAULT_OPSET,
            progress: Progress | None = None, check: bool = True) -> dict:
    """Convert ``model_json`` to ONNX at ``out_onnx`` (written atomically). Raises UnsupportedOp
    (nothing written) when the graph has an op this module does not convert, DirectConversionError
    for other problems. Returns a summary: inputs, outputs (name, shape), node count, seconds."""
    from edgewatch.models.conversion.worker_io import write_atomically

    t0 = time.monotonic()
    model = build_onnx(model_json, opset=opset, progress=progress)
    if check:
        try:
            onnx.checker.check_model(model)
        except onnx.checker.ValidationError as exc:
            raise DirectConversionError(f"the converted model of {model_json} is not valid ONNX: {exc}") from exc
    data = model.SerializeToString()
    write_atomically(str(out_onnx), data)

    def io(vi):
        return (vi.name, [d.dim_value if d.HasField("dim_value") else d.dim_param for d in vi.type.tensor_type.shape.dim])

    return {"inputs": [io(i) for i in model.graph.input], "outputs": [io(o) for o in model.graph.output],
            "nodes": len(model.graph.node), "ops": dict(Counter(n.op_type for n in model.graph.node)),
            "bytes": len(data), "seconds": round(time.monotonic() - t0, 3), "opset": opset}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Convert a TensorFlow.js graph model to ONNX without TensorFlow.")
    parser.add_argument("model_json")
    parser.add_argument("out_onnx")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    args = parser.parse_args(argv)
    try:
        info = convert(args.model_json, args.out_onnx, opset=args.opset, progress=lambda m: print(m, file=sys.stderr))
    except DirectConversionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
