"""Full-integer (int8) TensorFlow Lite conversion of the store's ONNX models.

The daemon never imports TensorFlow: conversion runs ``tflite_worker.py`` with the python of a
dedicated venv (tensorflow-cpu, tf-keras, onnx2tf, onnx, onnxruntime, onnxsim, ai-edge-litert)
at pinned versions, at ``cache_dir / "venvs" / "tflite-converter-<hash>"``; the hash covers the
pinned lists and the Python version, so changing either builds a fresh venv beside the old.

The path is ONNX -> onnx2tf (graph rebuilt in TensorFlow, activations NHWC) -> TFLiteConverter
with a representative dataset (the real-photo calibration tensors) and builtin int8 ops only:
int8 weights and activations, int8 (or uint8) input and output. The result runs on the TFLite
CPU interpreter with XNNPACK (``ai-edge-litert``), and is a valid input for ``edgetpu_compiler``.

Image inputs change layout: an ONNX input [1, 3, H, W] (NCHW) becomes [1, H, W, 3] (NHWC) in
the .tflite; ``convert_onnx_to_tflite`` reports it as ``input_layout``. Outputs keep the ONNX
model's shapes but not necessarily its order: pick them by shape (or name) from the metadata.

Building the venv is idempotent and safe if interrupted (marker file written last, after an
import check; a venv folder without it is removed and rebuilt); a lock file serialises
concurrent builders. Outputs are written atomically; a failed conversion leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from edgewatch.models.conversion.worker_io import fsync_dir
from edgewatch.models.conversion.tool_env import (
    ConversionError,
    ModelNotConvertible,
    Progress,
    ToolEnv,
    run_streaming,
    tail_text,
)


# Exact pins, verified together on CPython 3.11 / Linux x86_64 (int8 conversion of nanodet,
# 100 % detection agreement with the fp32 ONNX on the calibration photos). Installed in two
# pip runs, both with --only-binary :all:
#
# 1. PINNED_REQUIREMENTS, with dependency resolution. The ones that matter:
#    tensorflow-cpu 2.19.0 : CPU-only build (the TFLiteConverter); the TF version onnx2tf 1.29 targets;
#                            accepts numpy 2 (<2.2) and protobuf 5 (<6).
#    onnx 1.19.1           : the ONNX version onnx2tf 1.29.24 pins; accepts numpy 2 and protobuf 5.
#    onnxruntime 1.23.0    : onnx2tf runs the ONNX model to check its ops and settle axes (its pin).
#    onnxsim 0.4.36        : onnx2tf simplifies (constant-folds) the graph with it (its pin).
#    onnx_graphsurgeon 0.5.8, sng4onnx / sne4onnx 2.0.1 : graph tools onnx2tf imports.
#    ai-edge-litert 2.1.0  : onnx2tf imports its Interpreter; the worker uses it to check the
#                            result loads with XNNPACK (onnx2tf's pin).
#    numpy 2.1.3           : newest numpy TensorFlow 2.19 accepts (onnx2tf pins 1.26.4 but works with 2.1).
#    protobuf 5.29.5       : newest protobuf TensorFlow 2.19 accepts (<6).
#    The rest is the rest of the resolved set at the time of testing, pinned so a later release
#    of a dependency cannot change the environment.
# 2. NO_DEPS_REQUIREMENTS, with --no-deps: onnx2tf pins ``tensorflow==2.19.0`` (the full,
#    GPU-capable build, ~600 MB more) and tf-keras requires ``tensorflow``: with their
#    dependencies they would install a second TensorFlow over tensorflow-cpu. Everything they
#    import is in the first list.
PINNED_REQUIREMENTS: tuple[str, ...] = (
    "tensorflow-cpu==2.19.0",
    "onnx==1.19.1",
    "onnxruntime==1.23.0",
    "onnxsim==0.4.36",
    "onnx_graphsurgeon==0.5.8",
    "sng4onnx==2.0.1",
    "sne4onnx==2.0.1",
    "ai-edge-litert==2.1.0",
    "numpy==2.1.3",
    "protobuf==5.29.5",
    "psutil==7.2.2",
    "absl-py==2.5.1",
    "astunparse==1.6.3",
    "backports.strenum==1.2.8",
    "certifi==2026.10.18",
    "charset-normalizer==3.5.2",
    "coloredlogs==15.0.1",
    "flatbuffers==25.12.19",
    "gast==0.7.0",
    "google-pasta==0.2.0",
    "grpcio==1.85.1",
    "h5py==3.16.0",
    "humanfriendly==10.0",
    "idna==3.20",
    "keras==3.15.1",
    "libclang==18.1.1",
    "Markdown==3.11.3",
    "markdown-it-py==4.3.0",
    "MarkupSafe==3.0.4",
    "mdurl==0.1.2",
    "ml_dtypes==0.6.0",
    "mpmath==1.3.0",
    "namex==0.1.0",
    "opt_einsum==3.4.0",
    "optree==0.20.0",
    "packaging==26.3",
    "Pygments==2.21.0",
    "requests==2.34.2",
    "rich==15.0.0",
    "six==1.17.0",
    "sympy==1.14.0",
    "tensorboard==2.19.0",
    "tensorboard-data-server==0.7.2",
    "tensorflow-io-gcs-filesystem==0.37.1",
    "termcolor==3.3.0",
    "tqdm==4.70.1",
    "typing_extensions==4.16.0",
    "urllib3==2.8.0",
    "Werkzeug==3.1.9",
    "wrapt==2.5.2",
)
NO_DEPS_REQUIREMENTS: tuple[str, ...] = (
    "onnx2tf==1.29.24",
    "tf-keras==2.19.0",
)

WORKER_SCRIPT = Path(__file__).with_name("tflite_worker.py")
TFJS_WORKER_SCRIPT = Path(__file__).with_name("tfjs_tflite_worker.py")
MIN_FREE_BYTES = 3 * 1024**3  # the venv takes about 1.7 GiB, pip needs room for wheels too
CONVERT_TIMEOUT_S = 30 * 60
RESULT_PREFIX = "RESULT "

# Operators the Edge TPU can run, as listed in Coral's "supported operations" table (TFLite
# builtin names). Advisory only: edgetpu_compiler has the final word (and extra constraints:
# shapes, sizes, op versions); ops after the first unsupported one run on the CPU.
EDGETPU_LISTED_OPS = frozenset({
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "EXPAND_DIMS",
    "FULLY_CONNECTED", "L2_NORMALIZATION", "LOGISTIC", "LSTM", "MAXIMUM", "MAX_POOL_2D", "MEAN",
    "MINIMUM", "MUL", "PACK", "PAD", "PRELU", "QUANTIZE", "REDUCE_MAX", "REDUCE_MIN", "RELU", "RELU6",
    "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "RSQRT", "SLICE",
    "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT", "SQUEEZE", "STRIDED_SLICE", "SUB", "SUM",
    "SQUARED_DIFFERENCE", "TANH", "TRANSPOSE_CONV",
})


TFLITE_ENV = ToolEnv(
    prefix="tflite-converter",
    title="TFLite converter",
    requirements=PINNED_REQUIREMENTS,
    no_deps=NO_DEPS_REQUIREMENTS,
    import_check=("import os, sys, numpy, google.protobuf, onnx, onnxruntime, onnxsim, tensorflow, tf_keras, onnx2tf, "
             "ai_edge_litert.interpreter; "
             "exe = os.path.join(os.path.dirname(sys.executable), 'onnxsim'); "
             "assert os.path.exists(exe), 'onnxsim command missing: ' + exe; "
             "print('onnx2tf', onnx2tf.__version__, 'tensorflow', tensorflow.__version__, "
             "'onnx', onnx.__version__, 'numpy', numpy.__version__)"),
    size="about 1.7 GiB",
    download="about 700 MB",
    min_free_bytes=MIN_FREE_BYTES,
    fallback="use the ONNX variants of the model instead",
)


def env_name() -> str:
    return TFLITE_ENV.name()


def env_dir(cache_dir: Path) -> Path:
    return TFLITE_ENV.dir(cache_dir)


def ensure_tflite_env(cache_dir: Path, progress: Progress | None = None) -> Path:
    """Create (once) the TFLite converter venv and return the path of its python."""
    return TFLITE_ENV.ensure(cache_dir, progress)


def _check_calibration(calibration: Sequence[np.ndarray]) -> list[np.ndarray]:
    if not calibration:
        raise ConversionError("no calibration tensors: int8 conversion needs the real-photo calibration data")
    arrays = [np.ascontiguousarray(np.asarray(t, dtype=np.float32)) for t in calibration]
    shape = arrays[0].shape
    for a in arrays:
        if a.shape != shape:
            raise ConversionError(f"calibration tensors differ in shape ({shape} and {a.shape})")
        if not np.isfinite(a).all():
            raise ConversionError("calibration tensors hold NaN or infinite values")
    return arrays


def convert_onnx_to_tflite(fp32_onnx: Path, out_tflite: Path, calibration: list[np.ndarray], cache_dir: Path,
                           progress: Progress | None = None, *, io_dtype: str = "int8", edgetpu: bool = False,
                           timeout_s: float = CONVERT_TIMEOUT_S, tfjs_model: Path | None = None) -> dict:
    """Convert an fp32 ONNX model to a full-integer TFLite model at ``out_tflite``.

    ``calibration``: float32 input tensors in the ONNX model's own layout (what the daemon's
    preprocessing produces for it, e.g. ``quantize.calibration_tensors``), used as the
    representative dataset. ``io_dtype``: "int8" (default) or "uint8" input/output tensors.
    ``edgetpu``: rewrite ops the Edge TPU lacks into equivalent ones it has (LeakyRelu -> PRelu,
    -inf Pad + MaxPool -> shift, zero Pad, MaxPool, unshift), for ``edgetpu_compiler``; the result
    also runs on XNNPACK but slower (PRelu), so leave it off for CPU use.

    The converter venv is built first if needed. ``out_tflite`` is replaced atomically; on
    failure it is left as it was and ConversionError is raised with the tail of the worker's
    output. Returns metadata: toolkit (versions), input_layout ("nhwc"/"nchw"), input_name,
    input_shape, input_dtype, input_quant [scale, zero_point], output_names, output_shapes,
    output_dtypes, output_quant (all in the interpreter's output order), ops, edgetpu_unlisted_ops,
    rewrites (graph rewrites applied), float_check_max_rel_diff (onnx2tf's float graph vs ONNX
    Runtime), size_bytes, seconds (conversion, excluding building the venv).

    ``tfjs_model``: the TF.js ``model.json`` that ``fp32_onnx`` was converted from. The TF graph is
    then converted by TensorFlow itself (``tfjs_tflite_worker.py``: no onnx2tf, the graph keeps its
    own layout), and ``fp32_onnx`` only serves as the float reference it must reproduce.
    """
    say = progress or (lambda _msg: None)
    fp32_onnx = Path(fp32_onnx)
    out_tflite = Path(out_tflite)
    if io_dtype not in ("int8", "uint8"):
        raise ValueError(f"io_dtype must be 'int8' or 'uint8', not {io_dtype!r}")
    if not fp32_onnx.is_file():
        raise ConversionError(f"ONNX model not found: {fp32_onnx}; install or convert the model again")
    arrays = _check_calibration(calibration)
    python = ensure_tflite_env(Path(cache_dir), progress)
    out_tflite.parent.mkdir(parents=True, exist_ok=True)

    # The worker writes into a private folder beside the output (same file system), which is
    # removed whatever happens: a killed worker cannot leave a partial file behind.
    staging = Path(tempfile.mkdtemp(prefix=f".{out_tflite.name}.", suffix=".staging", dir=out_tflite.parent))
    try:
        calib_npz = staging / "calibration.npz"
        np.savez(calib_npz, *arrays)
        staged = staging / "model.tflite"
        if tfjs_model is not None:
            graph_json, weights_npz = _tfjs_graph_files(Path(tfjs_model), staging)
            cmd = [str(python), "-I", str(TFJS_WORKER_SCRIPT), str(graph_json), str(weights_npz), str(fp32_onnx),
                   str(calib_npz), str(staged), "--io-dtype", io_dtype]
        else:
            cmd = [str(python), "-I", str(WORKER_SCRIPT), str(fp32_onnx), str(calib_npz), str(staged),
                   "--io-dtype", io_dtype, *(["--edgetpu"] if edgetpu else [])]
        result: dict = {}

        def on_worker_line(line: str) -> None:
            if line.startswith(RESULT_PREFIX):
                try:
                    result.update(json.loads(line[len(RESULT_PREFIX):]))
                except ValueError:
                    pass
            elif line.startswith("[tflite-worker"):
                say(line)

        say(f"converting {fp32_onnx.name} to int8 TFLite ({len(arrays)} calibration tensors)")
        t0 = time.monotonic()
        rc, lines = run_streaming(cmd, timeout_s=timeout_s, on_line=on_worker_line, cwd=staging)
        seconds = time.monotonic() - t0
        lines = [ln for ln in lines if not ln.startswith(RESULT_PREFIX)]
        if rc == -1:
            raise ConversionError(f"converting {fp32_onnx} to int8 TFLite ran past {timeout_s:.0f} s and was "
                                  f"stopped; try again on a less busy machine.\nconverter output:\n{tail_text(lines)}")
        if rc != 0:
            why = f"exit {rc}"
            raise ModelNotConvertible(
                f"converting {fp32_onnx} to int8 TFLite failed ({why}). If the ONNX file is damaged, convert or "
                f"install the model again; otherwise use its ONNX variants instead.\n"
                f"converter output:\n{tail_text(lines)}")
        if not staged.is_file() or staged.stat().st_size == 0 or not result:
            raise ConversionError(
                f"the TFLite converter reported success but wrote no model (or no description of it).\n"
                f"converter output:\n{tail_text(lines)}")
        size = staged.stat().st_size
        os.replace(staged, out_tflite)
        fsync_dir(str(out_tflite.parent))
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    inp = result["inputs"][0]
    outs = result["outputs"]
    ops = result.get("ops", [])
    layout = result.get("input_layout", "nhwc")
    if layout == "graph":  # the TF.js graph's own layout, as its ONNX conversion has it
        layout = "nhwc" if len(inp["shape"]) == 4 and inp["shape"][-1] in (1, 3, 4) else "nchw"
    meta = {
        "toolkit": result.get("toolkit", ""),
        "input_layout": layout,
        "input_name": inp["name"],
        "input_shape": inp["shape"],
        "input_dtype": inp["dtype"],
        "input_quant": inp["quant"],
        "output_names": [o["name"] for o in outs],
        "output_shapes": [o["shape"] for o in outs],
        "output_dtypes": [o["dtype"] for o in outs],
        "output_quant": [o["quant"] for o in outs],
        "ops": ops,
        "edgetpu_unlisted_ops": sorted(set(ops) - EDGETPU_LISTED_OPS),
        "size_bytes": size,
        "seconds": round(seconds, 1),
    }
    meta["rewrites"] = result.get("rewrites", {})
    if "float_check_max_rel_diff" in result:
        meta["float_check_max_rel_diff"] = result["float_check_max_rel_diff"]
    say(f"converted {fp32_onnx.name} to int8 TFLite in {seconds:.1f} s ({size} bytes)")
    return meta


def _tfjs_graph_files(model_json: Path, folder: Path) -> tuple[Path, Path]:
    """The TF.js graph as the worker reads it: nodes plus input/output names in the ONNX model's
    order (graph.json), and the weights read and dequantised here (weights.npz)."""
    from edgewatch.models.conversion import tfjs_direct

    model, gzipped = tfjs_direct.load_model_json(model_json)
    weights = tfjs_direct.read_weights(model, model_json.parent, gzipped)
    inputs, outputs = tfjs_direct.graph_io(model)
    names = list(weights)
    graph = {"nodes": model["modelTopology"]["node"], "versions": model["modelTopology"].get("versions") or {},
             "inputs": inputs, "outputs": outputs, "weight_names": names}
    graph_json, weights_npz = folder / "graph.json", folder / "weights.npz"
    graph_json.write_text(json.dumps(graph))
    np.savez(weights_npz, *[weights[n] for n in names])
    return graph_json, weights_npz
