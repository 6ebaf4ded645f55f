"""Convert one TensorFlow.js graph model (model.json + .bin shards) to ONNX.

Standalone script, run with the converter virtual environment's python (the one that
``converter_env.ensure_converter_env`` builds, with tensorflow-cpu and tf2onnx)::

    python tfjs_worker.py MODEL_JSON OUT_ONNX [--opset N] [--inputs-as-nchw NAME ...]

It imports nothing from edgewatch. tf2onnx 1.17's TF.js reader needs three fixes, applied
here at run time (installed files are never edited):

1. it calls ``numpy.product``, removed in numpy 2: alias it to ``numpy.prod``;
2. TF.js ``_FusedConv2D`` nodes lack ``TArgs``, which TensorFlow's graph importer requires
   (it is ``[T] * num_args``): any op whose definition has a ``TArgs`` attribute gets it;
3. some nodes lack type attributes that have defaults in the op definition (``TopKV2``'s
   ``index_type``/``Tk``): every missing type attribute with a default gets the default.

Fixes 2 and 3 are applied to the parsed model.json, before tf2onnx builds its graph. One fix
is applied to the ONNX graph tf2onnx builds:

4. TF's nearest-neighbour resize with ``half_pixel_centers`` (YOLOv5's upsampling) becomes an
   ONNX ``Resize`` with ``coordinate_transformation_mode=tf_half_pixel_for_nn``, deprecated since
   opset 13 (onnxruntime warns on every session; other runtimes and converters may reject it).
   With whole-number scales it picks the same pixels as ``asymmetric`` + ``floor``
   (``floor((x + 0.5) / s) == floor(x / s)`` for integers x, s), so such nodes are rewritten to
   that; any other such node is left as it is.

OUT_ONNX is written atomically (temporary file in the same folder, fsync, rename).
Progress goes to stderr, one short line at a time; exit status 0 on success, 1 on failure.
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
import time

# The sibling worker_io.py, run by file path: this script runs isolated (-I) in another venv without
# edgewatch, and putting its folder on sys.path would let our rknn.py/tflite.py shadow the real
# packages of those names (rknn-toolkit2's rknn is a namespace package: any module wins).
_WORKER_IO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker_io.py")
write_atomically = runpy.run_path(_WORKER_IO)["write_atomically"]

# Quiet TensorFlow's C++ logging and keep it on the CPU; must be set before it is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

DEFAULT_OPSET = 15  # tf2onnx 1.17's preferred opset; widely supported by runtimes and quantisers

_T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[tfjs-worker {time.monotonic() - _T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def patch_numpy() -> None:
    """Fix 1: tf2onnx.tfjs_utils.read_tfjs_weight calls numpy.product (gone in numpy 2)."""
    import numpy as np

    if not hasattr(np, "product"):
        np.product = np.prod  # type: ignore[attr-defined]


def _iter_nodes(model: dict):
    topology = model.get("modelTopology", {})
    yield from topology.get("node", [])
    for func in topology.get("library", {}).get("function", []) or []:
        yield from func.get("nodeDef", []) or []


def fix_tfjs_model(model: dict, api_def_map) -> dict:
    """Fixes 2 and 3, in place on the parsed model.json; returns counts of what was added."""
    from tensorflow.core.framework import types_pb2

    counts: dict = {}
    # tf2onnx renames this TF.js-only op to the TF-internal one before shape inference.
    renamed = {"FusedDepthwiseConv2dNative": "_FusedDepthwiseConv2dNative"}
    op_defs: dict = {}
    for node in _iter_nodes(model):
        op = node.get("op")
        if not op or op == "Const":
            continue
        tf_op = renamed.get(op, op)
        if tf_op not in op_defs:
            try:
                op_defs[tf_op] = api_def_map.get_op_def(tf_op)
            except ValueError:
                op_defs[tf_op] = None  # unknown op: leave it to tf2onnx to report
        op_def = op_defs[tf_op]
        if op_def is None:
            continue
        attrs = node.setdefault("attr", {})
        for attr_def in op_def.attr:
            name = attr_def.name
            if name in attrs:
                continue
            if name == "TArgs" and attr_def.type == "list(type)":
                t = attrs.get("T", {}).get("type", "DT_FLOAT")
                if "num_args" in attrs:
                    num_args = int(attrs["num_args"]["i"])
                else:
                    # conv input + filter come first; the rest are the fused ops' arguments
                    data_inputs = [i for i in node.get("input", []) if not i.startswith("^")]
                    num_args = max(len(data_inputs) - 2, 0)
                    attrs["num_args"] = {"i": str(num_args)}
                attrs["TArgs"] = {"list": {"type": [t] * num_args}}
            elif attr_def.type == "type" and attr_def.HasField("default_value"):
                attrs[name] = {"type": types_pb2.DataType.Name(attr_def.default_value.type)}
            else:
                continue
            key = f"{op}.{name}"
            counts[key] = counts.get(key, 0) + 1
    return counts


def install_tfjs_fixes() -> None:
    """Wrap tf2onnx.tfjs_utils.read_model_json so every model it reads is fixed first."""
    from tf2onnx import tfjs_utils

    if getattr(tfjs_utils.read_model_json, "_edgewatch_fixed", False):
        return
    original = tfjs_utils.read_model_json

    def read_model_json(model_path):
        model, zip_compressed = original(model_path)
        counts = fix_tfjs_model(model, tfjs_utils.tf_api_def_map)
        if counts:
            log("filled missing node attributes: "
                + ", ".join(f"{k} x{v}" for k, v in sorted(counts.items())))
        return model, zip_compressed

    read_model_json._edgewatch_fixed = True  # type: ignore[attr-defined]
    tfjs_utils.read_model_json = read_model_json


def fix_onnx_resize(model_proto) -> int:
    """Fix 4, in place: nearest ``tf_half_pixel_for_nn`` Resize nodes with constant whole-number
    scales become ``asymmetric`` + ``floor`` (the same pixels). Returns how many were rewritten."""
    from onnx import helper, numpy_helper

    consts = {t.name: t for t in model_proto.graph.initializer}
    for node in model_proto.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            consts[node.output[0]] = node.attribute[0].t
    fixed = 0
    for node in model_proto.graph.node:
        if node.op_type != "Resize":
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("coordinate_transformation_mode") != b"tf_half_pixel_for_nn" or attrs.get("mode") != b"nearest":
            continue
        scales = consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if scales is None:
            continue
        values = numpy_helper.to_array(scales)
        if values.size == 0 or (values < 1).any() or (values != values.round()).any():
            continue
        keep = [a for a in node.attribute if a.name not in ("coordinate_transformation_mode", "nearest_mode")]
        del node.attribute[:]
        node.attribute.extend(keep)
        node.attribute.extend([helper.make_attribute("coordinate_transformation_mode", "asymmetric"),
                               helper.make_attribute("nearest_mode", "floor")])
        fixed += 1
    return fixed


def convert(model_json: str, out_onnx: str, opset: int, inputs_as_nchw: list[str] | None) -> None:
    if not os.path.isfile(model_json):
        raise FileNotFoundError(f"model file not found: {model_json}")
    log("importing tensorflow and tf2onnx")
    patch_numpy()
    import tensorflow as tf
    from tf2onnx import convert as tf2onnx_convert

    install_tfjs_fixes()
    log(f"tensorflow {tf.__version__}; converting {model_json} (opset {opset})")
    with tf.device("/cpu:0"):
        model_proto, _ = tf2onnx_convert._convert_common(  # pylint: disable=protected-access
            None,
            name=os.path.basename(model_json),
            opset=opset,
            tfjs_path=model_json,
            inputs_as_nchw=inputs_as_nchw or None,
            output_path=None,
        )
    resized = fix_onnx_resize(model_proto)
    if resized:
        log(f"rewrote {resized} nearest Resize node(s) from tf_half_pixel_for_nn to asymmetric/floor (same pixels)")
    data = model_proto.SerializeToString()
    log("inputs: " + ", ".join(i.name for i in model_proto.graph.input)
        + "; outputs: " + ", ".join(o.name for o in model_proto.graph.output))
    write_atomically(out_onnx, data)
    log(f"wrote {out_onnx} ({len(data)} bytes)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Convert a TensorFlow.js graph model to ONNX.")
    parser.add_argument("model_json", help="path to the TF.js model.json (weights shards beside it)")
    parser.add_argument("out_onnx", help="path of the ONNX file to write")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    parser.add_argument("--inputs-as-nchw", nargs="*", default=None, metavar="NAME",
                        help="graph inputs to transpose from NHWC to NCHW")
    args = parser.parse_args(argv)
    try:
        convert(args.model_json, args.out_onnx, args.opset, args.inputs_as_nchw)
    except Exception as exc:  # report and exit non-zero; the caller shows the stderr tail
        import traceback

        traceback.print_exc(file=sys.stderr)
        log(f"FAILED: {type(exc).__name__}: {exc}")
        return 1
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
