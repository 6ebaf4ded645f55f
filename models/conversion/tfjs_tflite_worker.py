"""Convert a TF.js graph model to a full-integer (int8) TensorFlow Lite model, through TensorFlow itself.

Standalone script, run with the python of the TFLite converter venv (``tflite.ensure_tflite_env``)::

    python tfjs_tflite_worker.py GRAPH_JSON WEIGHTS_NPZ MODEL_ONNX CALIBRATION_NPZ OUT_TFLITE [--io-dtype int8|uint8]

A TF.js graph model *is* a TensorFlow GraphDef (as JSON) plus weights, so no layout guessing is
needed: the graph keeps its own layout (NHWC for graphs exported from TF), which onnx2tf's
NCHW→NHWC rewrite gets wrong for graphs that were NHWC to begin with (YOLOv5s: a Pad on the
wrong axis). Steps:

* GRAPH_JSON (written by ``tflite.convert_tfjs_to_tflite``) holds the graph's nodes, its input
  and output tensor names in the ONNX model's order, and the weight names; WEIGHTS_NPZ the
  weights in that order (read and dequantised by edgewatch's own TF.js reader);
* TF.js's fused ops (``_FusedConv2D``, ``FusedDepthwiseConv2dNative``, ``_FusedMatMul``) are
  split back into the base op, ``BiasAdd`` and the activation, which TFLite's converter knows,
  and ``Square`` becomes ``Mul`` (TFLite has no int8 SQUARE);
* weights go into their Const nodes, a batch of 1 into the input, and the graph is imported and
  pruned to a concrete function from the input to the outputs;
* that function must reproduce ONNX Runtime's fp32 model on the first calibration sample;
* TFLiteConverter with the calibration tensors as representative data, builtin int8 ops only,
  int8 (or uint8) input and output; the result is loaded back with XNNPACK before it is written.

Output protocol as ``tflite_worker.py``: one ``RESULT {json}`` line on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import runpy
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_tflite_worker = runpy.run_path(os.path.join(_HERE, "tflite_worker.py"))  # sets TF's env vars too
log = _tflite_worker["log"]
load_calibration = _tflite_worker["load_calibration"]
describe = _tflite_worker["describe"]
write_atomically = _tflite_worker["write_atomically"]
FLOAT_TOLERANCE = _tflite_worker["FLOAT_TOLERANCE"]
quantise_full_int8 = _tflite_worker["quantise_full_int8"]

FUSED_BASE = {"_FusedConv2D": "Conv2D", "FusedDepthwiseConv2dNative": "DepthwiseConv2dNative",
              "_FusedMatMul": "MatMul"}
BASE_ATTRS = {
    "Conv2D": {"T", "strides", "padding", "explicit_paddings", "data_format", "dilations", "use_cudnn_on_gpu"},
    "DepthwiseConv2dNative": {"T", "strides", "padding", "explicit_paddings", "data_format", "dilations"},
    "MatMul": {"T", "transpose_a", "transpose_b"},
}
PLAIN_ACTIVATIONS = ("Relu", "Relu6", "Elu", "Sigmoid", "Tanh")


def _fused_ops(node: dict) -> list[str]:
    encoded = node.get("attr", {}).get("fused_ops", {}).get("list", {}).get("s", [])
    return [base64.b64decode(s).decode() for s in encoded]


def unfuse(node: dict) -> list[dict]:
    """A TF.js fused node as the TensorFlow nodes it stands for (the last keeps the node's name);
    an op TFLite has no int8 kernel for as one it has (Square(x) → Mul(x, x))."""
    if node["op"] == "Square":
        x = node["input"][0]
        return [{**node, "op": "Mul", "input": [x, x, *node["input"][1:]]}]
    base = FUSED_BASE.get(node["op"])
    if base is None:
        return [node]
    attr = node.get("attr", {})
    data = [i for i in node.get("input", []) if not i.startswith("^")]
    control = [i for i in node.get("input", []) if i.startswith("^")]
    fused = _fused_ops(node)
    extra = iter(data[2:])
    t = attr.get("T", {"type": "DT_FLOAT"})
    chain = [{"name": node["name"], "op": base, "input": data[:2] + control,
              "attr": {k: v for k, v in attr.items() if k in BASE_ATTRS[base]}}]
    for op in fused:
        prev = chain[-1]
        prev["name"] = f"{node['name']}/{prev['op']}"
        if op == "BiasAdd":
            step = {"op": "BiasAdd", "input": [prev["name"], next(extra)], "attr": {"T": t}}
            if "data_format" in attr and base != "MatMul":
                step["attr"]["data_format"] = attr["data_format"]
        elif op in PLAIN_ACTIVATIONS:
            step = {"op": op, "input": [prev["name"]], "attr": {"T": t}}
        elif op == "LeakyRelu":
            step = {"op": "LeakyRelu", "input": [prev["name"]],
                    "attr": {"T": t, "alpha": attr.get("leakyrelu_alpha", {"f": 0.2})}}
        else:
            raise RuntimeError(f"{node['name']}: fused op {op} ({node['op']}) is not supported by this converter")
        step["name"] = node["name"]
        chain.append(step)
    return chain


def build_function(graph_json: str, weights_npz: str):
    """The TF.js graph as a TensorFlow concrete function of its input, returning its outputs."""
    import numpy as np
    import tensorflow as tf
    from google.protobuf import json_format
    from tensorflow.core.framework import graph_pb2
    from tensorflow.python.framework import tensor_util

    spec = json.load(open(graph_json))
    nodes = [n for node in spec["nodes"] for n in unfuse(node)]
    graph_def = json_format.ParseDict({"node": nodes, "versions": spec.get("versions") or {}},
                                      graph_pb2.GraphDef(), ignore_unknown_fields=True)
    with np.load(weights_npz, allow_pickle=False) as data:
        weights = {name: data[f"arr_{i}"] for i, name in enumerate(spec["weight_names"])}
    inputs = {ref.split(":")[0] for ref in spec["inputs"]}
    for node in graph_def.node:
        if node.op == "Const" and node.name in weights:
            node.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(weights.pop(node.name)))
        elif node.name in inputs and "shape" in node.attr:
            dims = node.attr["shape"].shape.dim
            if dims and dims[0].size < 0:
                dims[0].size = 1  # one image at a time, as the daemon sends
    if weights:
        raise RuntimeError(f"{len(weights)} weights match no Const node (e.g. {next(iter(weights))})")

    def imported():
        tf.compat.v1.import_graph_def(graph_def, name="")

    wrapped = tf.compat.v1.wrap_function(imported, [])
    graph = wrapped.graph
    return wrapped.prune(feeds=[graph.get_tensor_by_name(r) for r in spec["inputs"]],
                         fetches=[graph.get_tensor_by_name(r if ":" in r else f"{r}:0") for r in spec["outputs"]])


def float_check(onnx_path: str, fn, sample) -> float:
    """Largest difference between the function and ONNX Runtime's fp32 model, relative to each output's range."""
    import numpy as np
    import onnxruntime as ort
    import tensorflow as tf

    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    ref = sess.run(None, {sess.get_inputs()[0].name: sample})
    got = fn(tf.constant(sample))
    got = [np.asarray(g) for g in (got if isinstance(got, (list, tuple)) else [got])]
    if len(got) != len(ref):
        raise RuntimeError(f"the TensorFlow graph has {len(got)} outputs, the ONNX model {len(ref)}")
    worst = 0.0
    for r, g in zip(ref, got):
        if r.shape != g.shape:
            raise RuntimeError(f"output shape {g.shape} differs from ONNX's {r.shape}")
        scale = max(float(np.abs(r).max()), 1e-6)
        worst = max(worst, float(np.abs(r - g).max()) / scale)
    return worst


def convert(graph_json: str, weights_npz: str, onnx_path: str, calib_path: str, out_path: str,
            io_dtype: str) -> dict:
    import tensorflow as tf

    samples = load_calibration(calib_path)
    log(f"{len(samples)} calibration samples of shape {list(samples[0].shape)}")
    log("loading TensorFlow and rebuilding the TF.js graph")
    fn = build_function(graph_json, weights_npz)
    diff = float_check(onnx_path, fn, samples[0])
    log(f"float check vs onnxruntime: max difference {diff:.2e} (relative to each output's range)")
    if not diff <= FLOAT_TOLERANCE:
        raise RuntimeError(f"the TensorFlow graph does not reproduce the ONNX model (max relative difference "
                           f"{diff:.3g} > {FLOAT_TOLERANCE})")

    tflite_bytes = quantise_full_int8(tf.lite.TFLiteConverter.from_concrete_functions([fn]), samples, io_dtype)
    log(f"checking the TFLite model ({len(tflite_bytes)} bytes)")
    info = describe(tflite_bytes)
    info["input_layout"] = "graph"  # the graph's own layout, which the ONNX model has too
    info["float_check_max_rel_diff"] = diff
    ops = [n["op"] for n in json.load(open(graph_json))["nodes"]]
    info["rewrites"] = {"unfused": sum(op in FUSED_BASE for op in ops), "square_to_mul": ops.count("Square")}
    info["toolkit"] = f"TF.js graph via tensorflow-cpu {tf.__version__} TFLiteConverter"
    write_atomically(out_path, tflite_bytes)
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name in ("graph_json", "weights_npz", "model_onnx", "calibration_npz", "out_tflite"):
        ap.add_argument(name)
    ap.add_argument("--io-dtype", choices=("int8", "uint8"), default="int8")
    args = ap.parse_args(argv)
    return _tflite_worker["report"](lambda: convert(args.graph_json, args.weights_npz, args.model_onnx,
                                                    args.calibration_npz, args.out_tflite, args.io_dtype))


if __name__ == "__main__":
    sys.exit(main())
