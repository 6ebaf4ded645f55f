"""Convert one ONNX model to a full-integer (int8) TensorFlow Lite model.

Standalone script, run with the python of the TFLite converter virtual environment (the one
that ``tflite.ensure_tflite_env`` builds, with tensorflow-cpu, tf-keras and onnx2tf)::

    python tflite_worker.py MODEL_ONNX CALIBRATION_NPZ OUT_TFLITE [--io-dtype int8|uint8] [--edgetpu]

It imports nothing from edgewatch. The path is ONNX -> (onnx2tf) Keras model in NHWC ->
(TFLiteConverter) TFLite with full integer quantisation:

* graph fixes on a copy of the ONNX, so that int8 calibration gets sane ranges: MaxPool pads
  that are not TF "SAME" become a Pad node, and a Pad with an infinite fill value (tf2onnx's
  -inf padding before a max-pool) gets the smallest value its input takes on the calibration
  data instead (``finite_pad_constants``); with ``--edgetpu`` also LeakyRelu -> PRelu and
  -inf Pad + MaxPool -> shift / zero Pad / MaxPool / unshift (``edgetpu_rewrites``);
* onnx2tf simplifies the ONNX (onnxsim) and rebuilds the graph in TensorFlow with NHWC
  activations, so a 4-D NCHW image input becomes NHWC [N, H, W, C]. onnx2tf would download a
  sample image from GitHub to test its ops; it gets the calibration data instead (offline);
* the Keras model must reproduce ONNX Runtime on the first calibration sample (float check);
* the calibration tensors (float32, in the ONNX model's own layout, i.e. exactly what the
  daemon's preprocessing feeds the ONNX model) are transposed to the Keras input's layout and
  given to the converter as its representative dataset;
* only TFLITE_BUILTINS_INT8 ops are allowed (no float fallback, no TF select ops), input and
  output tensors are int8 (or uint8 with ``--io-dtype uint8``); the result is loaded back with
  ai-edge-litert's interpreter (XNNPACK) before it is written.

CALIBRATION_NPZ holds one array per sample (any key names, in key order) or a single array
stacked along a leading sample axis; each sample has the model input's shape (batch 1).

OUT_TFLITE is written atomically (temporary file in the same folder, fsync, rename). After the
write the worker prints one JSON line on stdout, prefixed ``RESULT ``, describing the model's
input and outputs (shapes, dtypes, quantisation), its ops, the rewrites applied and the
versions used. Progress goes to stderr, one short line at a time; exit status 0 on success,
1 on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import shutil
import sys
import tempfile
import time

# The sibling worker_io.py, run by file path: this script runs isolated (-I) in another venv without
# edgewatch, and putting its folder on sys.path would let our rknn.py/tflite.py shadow the real
# packages of those names (rknn-toolkit2's rknn is a namespace package: any module wins).
_WORKER_IO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker_io.py")
write_atomically = runpy.run_path(_WORKER_IO)["write_atomically"]

# Quiet TensorFlow's C++ logging and keep it on the CPU; must be set before it is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# onnx2tf runs the ``onnxsim`` command of this environment as a subprocess: make it findable
# even when this python is started by its full path without the venv being activated.
os.environ["PATH"] = os.path.dirname(os.path.abspath(sys.executable)) + os.pathsep + os.environ.get("PATH", "")

_T0 = time.monotonic()
FLOAT_TOLERANCE = 1e-3  # onnx2tf's graph vs ONNX Runtime, relative to each output's largest magnitude


def log(msg: str) -> None:
    print(f"[tflite-worker {time.monotonic() - _T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def load_calibration(path: str):
    """The calibration samples as a list of float32 arrays, each with a leading batch axis of 1."""
    import numpy as np

    with np.load(path, allow_pickle=False) as data:
        keys = list(data.keys())
        if not keys:
            raise ValueError(f"{path} holds no arrays")
        if len(keys) == 1 and data[keys[0]].ndim >= 5:  # one stacked array [S, 1, ...]
            samples = [np.asarray(a, dtype=np.float32) for a in data[keys[0]]]
        else:
            samples = [np.asarray(data[k], dtype=np.float32) for k in keys]
    for s in samples:
        if not np.isfinite(s).all():
            raise ValueError("calibration data holds NaN or infinite values")
    return samples


def onnx_input(model_path: str) -> tuple[str, list[int]]:
    import onnx

    model = onnx.load(model_path, load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ValueError(f"only single-input models are supported; this one has {len(inputs)} inputs")
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in inputs[0].type.tensor_type.shape.dim]
    return inputs[0].name, dims


def to_keras_layout(sample, onnx_shape: list[int], keras_shape: list[int | None]):
    """One calibration sample in the Keras input's layout: (array, moved channels last?)."""
    import numpy as np

    keras_shape = [d if d is not None else -1 for d in keras_shape]
    if sample.ndim != len(keras_shape):
        raise ValueError(f"calibration sample has shape {list(sample.shape)}, the model input {onnx_shape}")

    def fits(shape) -> bool:
        return all(k in (-1, s) for k, s in zip(keras_shape, shape))

    if sample.ndim >= 3:  # channels-first -> channels-last, as onnx2tf does for 3-D..5-D inputs
        moved = np.transpose(sample, [0, *range(2, sample.ndim), 1])
        if fits(moved.shape) and not fits(sample.shape):
            return np.ascontiguousarray(moved), True
    if fits(sample.shape):
        return sample, False
    raise ValueError(
        f"cannot map calibration sample shape {list(sample.shape)} (ONNX input {onnx_shape}) "
        f"to the converted model's input {keras_shape}")


def float_check(onnx_path: str, in_name: str, sample, model, keras_sample) -> float:
    """Largest difference between ONNX Runtime and the Keras model on one sample, relative to
    the output's range (outputs paired by shape, trying the transposes onnx2tf may apply)."""
    import numpy as np
    import onnxruntime as ort

    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    ref = sess.run(None, {in_name: sample})
    got = model(keras_sample, training=False)
    got = [np.asarray(g) for g in (got if isinstance(got, (list, tuple)) else [got])]
    worst = 0.0
    for r in ref:
        best = float("inf")
        for g in got:
            if g.size != r.size:
                continue
            candidates = [g] if g.shape == r.shape else []
            if g.ndim >= 3:
                back = np.moveaxis(g, -1, 1)  # channels-last -> channels-first
                if back.shape == r.shape:
                    candidates.append(back)
            for c in candidates:
                best = min(best, float(np.max(np.abs(c - r))) / max(1.0, float(np.max(np.abs(r)))))
        worst = max(worst, best)
    return worst


def split_pool_pads(model) -> int:
    """MaxPool nodes whose explicit pads are not TensorFlow's "SAME" get them as a separate
    Pad(value=-inf) node, in place (``finite_pad_constants`` then makes the fill finite).
    onnx2tf keeps "SAME" pads inside the pool, where TFLite ignores padded cells. Returns the
    number of pools changed."""
    import numpy as np
    from onnx import helper, numpy_helper, shape_inference

    try:
        inferred = shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - without shapes nothing is split
        return 0
    shapes = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input):
        shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
    graph = model.graph
    nodes = []
    count = 0
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        pads = list(attrs.get("pads", []))
        auto_pad = attrs.get("auto_pad", b"NOTSET")
        auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
        dims = shapes.get(node.input[0]) if node.input else None
        if node.op_type != "MaxPool" or auto_pad != "NOTSET" or not any(pads) or not dims \
                or None in dims[2:] or attrs.get("ceil_mode", 0) or any(d != 1 for d in attrs.get("dilations", [])) \
                or len(node.output) != 1:
            nodes.append(node)
            continue
        kernel = list(attrs["kernel_shape"])
        strides = list(attrs.get("strides", [1] * len(kernel)))
        same_begin, same_end = [], []
        for size, k, st in zip(dims[2:], kernel, strides):
            total = max((-(-size // st) - 1) * st + k - size, 0)
            same_begin.append(total // 2)
            same_end.append(total - total // 2)
        if pads == same_begin + same_end:
            nodes.append(node)
            continue
        n = len(kernel)
        base = node.name or node.output[0]
        pads_name, fill_name, padded = f"{base}__pads", f"{base}__fill", f"{base}__padded"
        graph.initializer.append(numpy_helper.from_array(
            np.array([0, 0, *pads[:n], 0, 0, *pads[n:]], dtype=np.int64), pads_name))
        graph.initializer.append(numpy_helper.from_array(np.array(-np.inf, dtype=np.float32), fill_name))
        nodes.append(helper.make_node("Pad", [node.input[0], pads_name, fill_name], [padded], name=base + "__pad"))
        for a in list(node.attribute):
            if a.name == "pads":
                node.attribute.remove(a)
        node.input[0] = padded
        nodes.append(node)
        count += 1
    if count:
        del graph.node[:]
        graph.node.extend(nodes)
        log(f"moved the explicit pads of {count} MaxPool node(s) into Pad nodes")
    return count


def finite_pad_constants(model_path: str, input_name: str, samples) -> int:
    """Give constant-mode Pad nodes with an infinite fill value a finite one, in place.

    tf2onnx writes TF's explicit max-pool padding as Pad(value=-inf) + MaxPool (and onnx2tf
    pads a MaxPool's own explicit pads with float32's lowest value). Int8 calibration then
    sees -inf (or -3.4e38) in the padded tensor, whose quantisation parameters the pad shares
    with its input: the scale becomes ~1e36 and the whole network after it is destroyed (and
    XNNPACK refuses the model). Padding with the smallest value that the pad's input takes on
    the calibration data (largest, for +inf) gives the same max-pool result for every value the
    int8 model can represent, and a sane scale. Returns the number of pads changed.
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(model_path)
    split = split_pool_pads(model)
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    const_nodes = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}

    def const_value(name: str):
        if name in inits:
            return numpy_helper.to_array(inits[name])
        node = const_nodes.get(name)
        if node is not None:
            for a in node.attribute:
                if a.name == "value":
                    return numpy_helper.to_array(a.t)
        return None

    targets = []
    for node in graph.node:
        if node.op_type != "Pad" or len(node.input) < 3 or not node.input[2]:
            continue
        mode = next((a.s.decode() for a in node.attribute if a.name == "mode"), "constant")
        value = const_value(node.input[2])
        if mode != "constant" or value is None or value.size != 1:
            continue
        v = float(value.reshape(()))
        if np.isfinite(v) and abs(v) < 1e30:
            continue
        targets.append((node, v < 0, value.dtype))
    if not targets:
        if split:
            onnx.save(model, model_path)
        return 0

    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    names = []
    for node, _neg, _dt in targets:
        name = node.input[0]
        if name not in known and name not in names:
            probe.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
        names.append(name)
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    lo = {n: np.inf for n in names}
    hi = {n: -np.inf for n in names}
    for sample in samples:
        outs = sess.run(list(dict.fromkeys(names)), {input_name: sample})
        for name, arr in zip(dict.fromkeys(names), outs):
            lo[name] = min(lo[name], float(np.min(arr)))
            hi[name] = max(hi[name], float(np.max(arr)))
    for i, (node, negative, dtype) in enumerate(targets):
        fill = lo[node.input[0]] if negative else hi[node.input[0]]
        new_name = f"{node.input[2]}__finite_{i}"
        graph.initializer.append(numpy_helper.from_array(np.array(fill, dtype=dtype), new_name))
        log(f"pad {node.name}: fill value {'-' if negative else '+'}inf -> {fill:.4g} (calibrated)")
        node.input[2] = new_name
    onnx.save(model, model_path)
    return len(targets)


def edgetpu_rewrites(model_path: str) -> dict:
    """Rewrite ops that the Edge TPU does not run into equivalent ones it does, in place.

    * LeakyRelu(alpha) -> PRelu with a per-channel slope [C, 1, 1] all alpha (TFLite PRELU;
      LEAKY_RELU is not in the Edge TPU's op list);
    * Pad(value=-inf) feeding only a MaxPool -> Sub(c), Pad(0), MaxPool, Add(c), where c is the
      smallest value the pad's input takes on the calibration data: max-pooling commutes with
      the shift, and the zero pad becomes a plain PAD (PADV2 is not in the Edge TPU's op list).
      Run after ``finite_pad_constants``, which has already put c in the pad.

    Exact in float; int8 adds a requantisation or two. Returns counts of what was rewritten.
    """
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper, shape_inference

    model = onnx.load(model_path)
    try:
        inferred = shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - shapes are only needed for the PRelu slope
        inferred = model
    shapes = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        dims = [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
        shapes[vi.name] = dims
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    consumers: dict = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    counts = {"leakyrelu_to_prelu": 0, "maxpool_pad_shift": 0}
    new_nodes = []
    after: dict = {}
    for idx, node in enumerate(graph.node):
        if node.op_type == "LeakyRelu":
            alpha = next((a.f for a in node.attribute if a.name == "alpha"), 0.01)
            dims = shapes.get(node.input[0])
            if dims and len(dims) == 4 and dims[1]:
                slope = f"{node.name or node.output[0]}__prelu_slope"
                graph.initializer.append(numpy_helper.from_array(
                    np.full((dims[1], 1, 1), alpha, dtype=np.float32), slope))
                new_nodes.append(helper.make_node("PRelu", [node.input[0], slope], list(node.output),
                                                  name=(node.name or "leaky") + "__prelu"))
                counts["leakyrelu_to_prelu"] += 1
                continue
        if node.op_type == "Pad" and len(node.input) >= 3 and node.input[2] in inits:
            users = consumers.get(node.output[0], [])
            mode = next((a.s.decode() for a in node.attribute if a.name == "mode"), "constant")
            value = numpy_helper.to_array(inits[node.input[2]])
            if mode == "constant" and value.size == 1 and len(users) == 1 and users[0].op_type == "MaxPool" \
                    and float(value.reshape(())) != 0.0 and np.isfinite(value).all() \
                    and node.output[0] not in {o.name for o in graph.output}:
                base = node.name or node.output[0]
                c_name, zero_name = f"{base}__shift", f"{base}__zero"
                graph.initializer.append(numpy_helper.from_array(value.reshape(()).astype(np.float32), c_name))
                graph.initializer.append(numpy_helper.from_array(np.zeros((), np.float32), zero_name))
                shifted = f"{base}__shifted"
                new_nodes.append(helper.make_node("Sub", [node.input[0], c_name], [shifted], name=base + "__sub"))
                pad_inputs = [shifted, node.input[1], zero_name] + list(node.input[3:])
                new_nodes.append(helper.make_node("Pad", pad_inputs, list(node.output), name=base + "__pad0"))
                pool = users[0]
                pooled = f"{pool.name or pool.output[0]}__shifted"
                pool_out = pool.output[0]
                pool.output[0] = pooled
                add = helper.make_node("Add", [pooled, c_name], [pool_out], name=(pool.name or "pool") + "__unshift")
                after[id(pool)] = add  # inserted right after the MaxPool below
                counts["maxpool_pad_shift"] += 1
                continue
        new_nodes.append(node)
    ordered = []
    for node in new_nodes:
        ordered.append(node)
        if id(node) in after:
            ordered.append(after.pop(id(node)))
    del graph.node[:]
    graph.node.extend(ordered)
    onnx.checker.check_model(model)
    onnx.save(model, model_path)
    log(f"Edge TPU rewrites: {counts}")
    return counts


def build_keras(copy: str, work_dir: str, sample_nhwc):
    """onnx2tf: ONNX -> tf_keras model (NHWC). ``copy`` is rewritten: onnx2tf simplifies it in place.

    onnx2tf feeds a sample image to ONNX Runtime and to the TensorFlow ops it builds, to check
    them and to settle ambiguous axes; for image inputs it downloads that sample from GitHub.
    This machine may be offline, and our own calibration data fits the model better: hand it
    ``sample_nhwc`` (float32 [S, H, W, C]) instead (fix applied at run time).
    """
    import importlib

    import onnx2tf

    impl = importlib.import_module("onnx2tf.onnx2tf")
    common = importlib.import_module("onnx2tf.utils.common_functions")
    impl.download_test_image_data = lambda: sample_nhwc
    common.download_test_image_data = lambda: sample_nhwc

    try:
        model = _onnx2tf_convert(onnx2tf, copy, work_dir)
    except SystemExit as exc:  # onnx2tf calls sys.exit(1) on some errors, after printing them
        raise RuntimeError(f"onnx2tf stopped (exit {exc.code}); its messages are above") from None
    if model is None:
        raise RuntimeError("onnx2tf returned no model")
    return model


def _onnx2tf_convert(onnx2tf, copy: str, work_dir: str):
    return onnx2tf.convert(
        input_onnx_file_path=copy,
        output_folder_path=os.path.join(work_dir, "saved_model"),
        disable_model_save=True,       # we convert and quantise ourselves below
        # Its only effect with disable_model_save (which returns before onnx2tf's own quantisation
        # and file naming): a MaxPool with explicit pads is padded with 0 instead of float32's
        # lowest value, which would ruin int8 scales. Such pads only reach onnx2tf when onnxsim
        # folds a Pad(0) back into the pool, i.e. when the pool's input is >= 0 on the calibration
        # data (finite_pad_constants, edgetpu_rewrites): then 0 is exact.
        output_integer_quantized_tflite=True,
        non_verbose=True,
        verbosity="error",
    )


def convert(onnx_path: str, calib_path: str, out_path: str, io_dtype: str, edgetpu: bool = False) -> dict:
    import numpy as np

    onnx_path, calib_path, out_path = (os.path.abspath(p) for p in (onnx_path, calib_path, out_path))
    start_dir = os.getcwd()

    log(f"reading calibration data {os.path.basename(calib_path)}")
    samples = load_calibration(calib_path)
    in_name, onnx_shape = onnx_input(onnx_path)
    log(f"{len(samples)} calibration samples; ONNX input {in_name} {onnx_shape}")

    log("loading TensorFlow and onnx2tf")
    import tensorflow as tf

    out_dir = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tflite-work-") as work_dir:
        try:
            copy = os.path.join(work_dir, "model.onnx")
            shutil.copyfile(onnx_path, copy)
            rewrites = {"finite_pads": finite_pad_constants(copy, in_name, samples)}
            if edgetpu:
                rewrites.update(edgetpu_rewrites(copy))
            sample_nhwc = None
            if samples[0].ndim == 4:
                stacked = np.concatenate(samples[:20], axis=0)
                channels_first = onnx_shape[1] in (1, 3, 4) and onnx_shape[-1] not in (1, 3, 4)
                sample_nhwc = np.ascontiguousarray(stacked.transpose(0, 2, 3, 1) if channels_first else stacked)
            log("onnx2tf: rebuilding the ONNX graph in TensorFlow (NHWC)")
            os.chdir(work_dir)  # onnx2tf writes scratch files to the working directory
            model = build_keras(copy, work_dir, sample_nhwc)
        finally:
            os.chdir(start_dir)
        if len(model.inputs) != 1:
            raise RuntimeError(f"converted model has {len(model.inputs)} inputs, expected 1")
        keras_shape = list(model.inputs[0].shape)
        moved = [to_keras_layout(s, onnx_shape, keras_shape) for s in samples]
        calib = [m[0] for m in moved]
        if len(keras_shape) != 4:
            layout = "as-onnx"
        elif moved[0][1]:
            layout = "nhwc"
        else:  # kept as the ONNX model has it
            layout = "nhwc" if onnx_shape[-1] in (1, 3, 4) and onnx_shape[1] not in (1, 3, 4) else "nchw"
        log(f"Keras model: input {keras_shape} ({layout}), outputs {[list(o.shape) for o in model.outputs]}")

        # The float graph must reproduce ONNX Runtime before quantisation is worth doing.
        diff = float_check(onnx_path, in_name, samples[0], model, calib[0])
        log(f"float check vs onnxruntime: max difference {diff:.2e} (relative to each output's range)")
        if not diff <= FLOAT_TOLERANCE:
            raise RuntimeError(
                f"the TensorFlow graph built by onnx2tf does not reproduce the ONNX model "
                f"(max relative difference {diff:.3g} > {FLOAT_TOLERANCE}); this model cannot be converted")

        @tf.function(input_signature=[tf.TensorSpec(model.inputs[0].shape, tf.float32, name="input")])
        def serve(x):
            return model(x, training=False)

        converter = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], model)
        tflite_bytes = quantise_full_int8(converter, calib, io_dtype)

    log(f"checking the TFLite model ({len(tflite_bytes)} bytes)")
    info = describe(tflite_bytes)
    info["input_layout"] = layout
    info["float_check_max_rel_diff"] = diff
    info["rewrites"] = rewrites
    info["toolkit"] = toolkit_versions()

    write_atomically(out_path, tflite_bytes)
    log(f"wrote {out_path}")
    return info


def quantise_full_int8(converter, calib, io_dtype: str) -> bytes:
    """Run a TFLiteConverter with full integer quantisation: ``calib`` as the representative
    data, builtin int8 ops only, ``io_dtype`` (int8/uint8) input and output."""
    import tensorflow as tf

    def representative():
        for c in calib:
            yield [tf.constant(c)]

    log(f"TFLiteConverter: full integer quantisation ({len(calib)} calibration samples, {io_dtype} "
        "input/output, builtin int8 ops only)")
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8 if io_dtype == "uint8" else tf.int8
    converter.inference_output_type = tf.uint8 if io_dtype == "uint8" else tf.int8
    return converter.convert()


def describe(tflite_bytes: bytes) -> dict:
    """Input/output details of the model, read back with the TFLite interpreter. Loading it with
    the default delegate (XNNPACK) proves the daemon's interpreter can prepare it."""
    from ai_edge_litert.interpreter import Interpreter

    import numpy as np

    interp = Interpreter(model_content=tflite_bytes, num_threads=1)
    # The model's own ops, read before the delegate replaces them with one DELEGATE node.
    op_details = interp._get_ops_details()
    ops = sorted({op["op_name"] for op in op_details})
    def is_float(t: int) -> bool:
        return t >= 0 and interp._get_tensor_details(t, 0)["dtype"] == np.float32

    float_ops = sorted({op["op_name"] for op in op_details if any(is_float(t) for t in op["outputs"])})
    if float_ops:
        raise RuntimeError(f"ops left in float: {float_ops}; the model is not fully integer")
    try:
        interp.allocate_tensors()
    except (RuntimeError, ValueError) as exc:
        raise RuntimeError(f"the TFLite interpreter (XNNPACK) cannot prepare the converted model: {exc}") from exc

    def one(d: dict) -> dict:
        scale, zero = d["quantization"]
        return {"name": d["name"], "shape": [int(x) for x in d["shape"]], "dtype": np.dtype(d["dtype"]).name,
                "quant": [float(scale), int(zero)]}

    ins = [one(d) for d in interp.get_input_details()]
    outs = [one(d) for d in interp.get_output_details()]
    for d in ins + outs:
        if d["dtype"] not in ("int8", "uint8") or d["quant"][0] == 0.0:
            raise RuntimeError(f"tensor {d['name']} is {d['dtype']} with quantisation {d['quant']}: "
                               "the model is not fully integer")
    return {"inputs": ins, "outputs": outs, "ops": ops}


def toolkit_versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for dist in ("onnx2tf", "tensorflow-cpu", "tf-keras", "onnx", "onnxsim", "numpy"):
        try:
            parts.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            pass
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_onnx")
    ap.add_argument("calibration_npz")
    ap.add_argument("out_tflite")
    ap.add_argument("--io-dtype", choices=("int8", "uint8"), default="int8",
                    help="type of the model's input and output tensors (default int8)")
    ap.add_argument("--edgetpu", action="store_true",
                    help="rewrite ops the Edge TPU lacks (LeakyRelu, -inf Pad before MaxPool) into ones it has")
    args = ap.parse_args(argv)
    if not os.path.isfile(args.model_onnx):
        log(f"error: ONNX model not found: {args.model_onnx}")
        return 1
    if not os.path.isfile(args.calibration_npz):
        log(f"error: calibration data not found: {args.calibration_npz}")
        return 1
    return report(lambda: convert(args.model_onnx, args.calibration_npz, args.out_tflite, args.io_dtype,
                                  args.edgetpu))


def report(conversion) -> int:
    """Run ``conversion()`` and print its result as the ``RESULT {json}`` line; the exit status."""
    try:
        info = conversion()
    except Exception as exc:
        import traceback

        traceback.print_exc(file=sys.stderr)
        log(f"error: {type(exc).__name__}: {exc}")
        return 1
    print("RESULT " + json.dumps(info), flush=True)
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
