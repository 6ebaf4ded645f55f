"""Convert one ONNX model to an int8 .rknn for a Rockchip NPU, and run it on the PC simulator.

Standalone script, run with the python of the rknn-toolkit2 virtual environment that
``rknn.ensure_rknn_env`` builds (rknn-toolkit2, onnx, onnxruntime, opencv-python, numpy 1.26)::

    python rknn_worker.py ONNX OUT_RKNN --platform rk3588 --dataset CALIB \\
        [--input-mode uint8|float] [--mean B G R --std B G R] [--color bgr|rgb] [--pad-value 114]
        [--test-inputs TEST.npz --test-outputs OUT.npz] [--meta-out META.json]

It imports nothing from edgewatch.

``CALIB`` is either an ``.npz`` of ready tensors (one array per calibration sample, in exactly
the form the runtime is fed, see below) or a text file with one path per line: ``.npy``
files (ready tensors) or images, which are letterboxed here (keep aspect ratio, pad with
``--pad-value``, centred; the same rule as ``edgewatch.models.runtime.preprocess.letterbox``), each
image also mirrored.

Input modes (how the runtime feeds the model):

* ``uint8`` (default): mean/std go into ``rknn.config(mean_values, std_values)`` so the NPU
  normalises; the runtime feeds the letterboxed image as uint8 NHWC ``[1, H, W, 3]`` in the
  model's colour order, ``inference(inputs=[x], data_format="nhwc")``.
* ``float``: normalisation stays on the host; the runtime feeds the same float32 NCHW tensor as
  the ONNX model, ``inference(inputs=[x], data_format="nchw")``.

Before conversion the ONNX graph is cleaned, in memory (the input file is never changed):
nodes computed only from constants are folded (NanoDet's ScatterND/Add reshape-shape
computation), and zero ``Pad`` nodes in front of ``Conv`` (and ``-inf`` pads in front of
``MaxPool``) are folded into the consumer's ``pads``. The toolkit's own pad-fusion rule crashes
on these models ("assignment destination is read-only") otherwise.

The toolkit's PC simulator only runs a model built in the same process (a ``load_rknn``'ed
file cannot be simulated), so ``--test-inputs`` runs the model just built; its outputs are saved
to ``--test-outputs`` as ``t{i}_o{j}`` (test sample i, output j, ONNX output order).

OUT_RKNN is written atomically (temporary file ``.NAME.*.tmp`` in the same folder, fsync, rename). Progress goes
to stderr as ``[rknn-worker ...]`` lines, mixed with the toolkit's own log. Exit status 0 on
success, 1 on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import sys
import tempfile
import time

# The sibling worker_io.py, run by file path: this script runs isolated (-I) in another venv without
# edgewatch, and putting its folder on sys.path would let our rknn.py/tflite.py shadow the real
# packages of those names (rknn-toolkit2's rknn is a namespace package: any module wins).
_WORKER_IO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker_io.py")
fsync_dir = runpy.run_path(_WORKER_IO)["fsync_dir"]

PLATFORMS = ("rk3588", "rk3576", "rk3568", "rk3566")  # the ones verified with this script
QUANT_DTYPE = "asymmetric_quantized-8"

_T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[rknn-worker {time.monotonic() - _T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------- graph fixes

def _attr(node, name, default=None):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def fold_constants(model) -> int:
    """Replace every node whose inputs are all constants by initializers holding its outputs.

    Evaluated with onnxruntime on a small model made of just those nodes. Returns how many
    nodes were folded.
    """
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    const = {i.name for i in graph.initializer}
    graph_inputs = {i.name for i in graph.input} - const
    foldable = []
    for node in graph.node:  # ONNX graphs are topologically sorted
        if node.op_type in ("RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial"):
            continue
        ins = [i for i in node.input if i]
        if node.op_type == "Constant" or (ins and all(i in const for i in ins) and not (set(ins) & graph_inputs)):
            foldable.append(node)
            const.update(o for o in node.output if o)
    if not foldable:
        return 0
    produced = {o for n in foldable for o in n.output if o}
    used_later = set()
    foldable_ids = {id(n) for n in foldable}
    for node in graph.node:
        if id(node) not in foldable_ids:
            used_later.update(i for i in node.input if i in produced)
    used_later.update(o.name for o in graph.output if o.name in produced)
    if not used_later:
        return 0

    import onnxruntime as ort

    needed_inits = {i for n in foldable for i in n.input if i and i not in produced}
    sub = helper.make_graph(
        list(foldable), "fold",
        inputs=[],
        outputs=[helper.make_empty_tensor_value_info(name) for name in sorted(used_later)],
        initializer=[i for i in graph.initializer if i.name in needed_inits],
    )
    sub_model = helper.make_model(sub, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(sub_model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    values = sess.run(names, {})
    for node in foldable:
        graph.node.remove(node)
    for name, value in zip(names, values):
        graph.initializer.append(numpy_helper.from_array(np.array(value), name))
    # initializers no longer referenced by any node or output
    referenced = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    for init in [i for i in graph.initializer if i.name not in referenced]:
        graph.initializer.remove(init)
    onnx.checker.check_model(model)
    return len(foldable)


def fold_pads(model) -> int:
    """Fold ``Pad`` (constant mode, spatial only) into the ``pads`` of the Conv / MaxPool that reads it.

    Zero padding folds into Conv; ``-inf`` padding folds into MaxPool (whose own padding never
    wins the max). Only when every consumer of the Pad is such a node. Returns how many folded.
    """
    import numpy as np
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    consumers: dict = {}
    for node in graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    outputs = {o.name for o in graph.output}
    folded = 0
    for pad in list(graph.node):
        if pad.op_type != "Pad" or pad.output[0] in outputs:
            continue
        mode = _attr(pad, "mode", b"constant")
        if isinstance(mode, bytes):
            mode = mode.decode()
        if mode != "constant" or len(pad.input) < 2 or pad.input[1] not in inits:
            continue
        if len(pad.input) > 3 and pad.input[3]:
            continue  # 'axes' input: not handled
        pads = numpy_helper.to_array(inits[pad.input[1]]).astype(np.int64).tolist()
        value = 0.0
        if len(pad.input) > 2 and pad.input[2]:
            if pad.input[2] not in inits:
                continue
            value = float(numpy_helper.to_array(inits[pad.input[2]]).reshape(-1)[0])
        rank = len(pads) // 2
        if rank < 3 or any(p < 0 for p in pads) or any(pads[d] or pads[rank + d] for d in (0, 1)):
            continue
        users = consumers.get(pad.output[0], [])
        if not users:
            continue
        ok = all(
            u.input[0] == pad.output[0]
            and ((u.op_type == "Conv" and value == 0.0) or (u.op_type == "MaxPool" and value == float("-inf")))
            and (_attr(u, "auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET"))
            for u in users)
        if not ok:
            continue
        spatial_begin, spatial_end = pads[2:rank], pads[rank + 2:]
        for u in users:
            old = list(_attr(u, "pads", [0] * (2 * (rank - 2))))
            new = [a + b for a, b in zip(old, spatial_begin + spatial_end)]
            for a in [a for a in u.attribute if a.name == "pads"]:
                u.attribute.remove(a)
            u.attribute.append(helper.make_attribute("pads", new))
            u.input[0] = pad.input[0]
        graph.node.remove(pad)
        folded += 1
    referenced = {i for n in graph.node for i in n.input}
    for init in [i for i in graph.initializer if i.name not in referenced]:
        graph.initializer.remove(init)
    return folded


def prepare_onnx(src: str, dst: str, fixed_nchw: list[int] | None = None) -> dict:
    """Write a cleaned copy of ``src`` to ``dst``; return what was changed and the I/O signature.
    ``fixed_nchw`` (N, C, H, W) fixes the input's symbolic dimensions (the toolkit needs a fixed shape)."""
    import onnx

    model = onnx.load(src)
    inputs = [i for i in model.graph.input if i.name not in {x.name for x in model.graph.initializer}]
    if len(inputs) != 1:
        raise SystemExit(f"the model has {len(inputs)} inputs; only single-input models are supported")
    inp = inputs[0]
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in inp.type.tensor_type.shape.dim]
    if fixed_nchw is not None and -1 in dims:
        dims = fix_dims(model, inp, dims, fixed_nchw)
    transposed = len(dims) == 4 and dims[3] == 3 and dims[1] != 3
    if transposed:
        dims = nchw_input(model, inp, dims)
    folded = fold_constants(model)
    pads = fold_pads(model)
    onnx.checker.check_model(model)
    onnx.save(model, dst)
    return {"constant_nodes_folded": folded, "pads_folded": pads, "input_name": inp.name, "input_shape": dims,
            "output_names": [o.name for o in model.graph.output], "nhwc_input_transposed": transposed}


def fix_dims(model, inp, dims: list[int], nchw: list[int]) -> list[int]:
    """Give the input's symbolic dimensions the values of ``nchw`` (read as N, H, W, C for an NHWC
    input); shapes inferred inside the graph from the symbolic ones are dropped, to be inferred again."""
    n, c, h, w = nchw
    wanted = (n, h, w, c) if len(dims) == 4 and dims[3] == 3 and dims[1] != 3 else (n, c, h, w)
    fixed = [want if d == -1 else d for d, want in zip(dims, wanted)]
    if fixed != list(wanted):
        raise SystemExit(f"input shape {dims} does not fit the fixed shape asked for ({list(wanted)})")
    for d, value in zip(inp.type.tensor_type.shape.dim, fixed):
        d.dim_value = value
    del model.graph.value_info[:]
    return fixed


def nchw_input(model, inp, dims: list[int]) -> list[int]:
    """Give an NHWC image input (a graph exported from TensorFlow) an NCHW face, as rknn-toolkit2
    wants: the input becomes [N, 3, H, W] and a Transpose restores NHWC for the graph. The NPU
    runtime is fed NHWC uint8 either way; the toolkit moves the layout."""
    from onnx import helper

    inner = f"{inp.name}__nhwc"
    for node in model.graph.node:
        node.input[:] = [inner if name == inp.name else name for name in node.input]
    model.graph.node.insert(0, helper.make_node("Transpose", [inp.name], [inner], perm=[0, 2, 3, 1],
                                                name=f"{inp.name}__to_nhwc"))
    n, h, w, c = dims
    for d, value in zip(inp.type.tensor_type.shape.dim, (n, c, h, w)):
        d.dim_value = value
    _pad_in_nchw(model, inner)
    return [n, c, h, w]


def _pad_in_nchw(model, nhwc: str) -> None:
    """NCHW input → Transpose → Pad (NHWC pads) → Transpose back → …: pad the NCHW input directly
    and drop both transposes, so the Pad can fold into the convolution after it (the toolkit's own
    pad fusion fails on such a Pad: 'assignment destination is read-only')."""
    from onnx import numpy_helper

    nodes = list(model.graph.node)
    to_nhwc = nodes[0]
    pads = [n for n in nodes if list(n.input[:1]) == [nhwc]]
    if len(pads) != 1 or pads[0].op_type != "Pad":
        return
    pad = pads[0]
    back = [n for n in nodes if pad.output[0] in n.input]
    perm = lambda n: [a.ints for a in n.attribute if a.name == "perm"][0]  # noqa: E731
    if len(back) != 1 or back[0].op_type != "Transpose" or list(perm(back[0])) != [0, 3, 1, 2]:
        return
    inits = {i.name: i for i in model.graph.initializer}
    if len(pad.input) < 2 or pad.input[1] not in inits or \
            sum(1 for n in nodes for i in n.input if i == pad.input[1]) != 1:
        return
    p = numpy_helper.to_array(inits[pad.input[1]]).copy()  # [n0,h0,w0,c0, n1,h1,w1,c1]
    nchw = p[[0, 3, 1, 2, 4, 7, 5, 6]]
    inits[pad.input[1]].CopyFrom(numpy_helper.from_array(nchw, pad.input[1]))
    pad.input[0] = to_nhwc.input[0]
    for n in nodes:
        n.input[:] = [pad.output[0] if name == back[0].output[0] else name for name in n.input]
    model.graph.node.remove(back[0])
    model.graph.node.remove(to_nhwc)


def onnx_output_shapes(path: str, input_name: str, shape: list[int]) -> list[list[int]]:
    """Output shapes of the (fixed-size) ONNX model, found by running it once on zeros."""
    import numpy as np
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    outs = sess.run(None, {input_name: np.zeros(shape, np.float32)})
    return [list(o.shape) for o in outs]


# ------------------------------------------------------------------------------ calibration data

def letterbox_u8(image, width: int, height: int, pad_value: float):
    """Letterbox an HxWx3 uint8 image into height x width (same rule as edgewatch's letterbox)."""
    import cv2
    import numpy as np

    h, w = image.shape[:2]
    scale = min(width / w, height / h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    pad_x, pad_y = (width - new_w) // 2, (height - new_h) // 2
    interp = cv2.INTER_AREA if scale < 0.5 else cv2.INTER_LINEAR
    canvas = np.full((height, width, 3), pad_value, dtype=np.uint8)
    canvas[pad_y:pad_y + new_h, pad_x:pad_x + new_w] = cv2.resize(image, (new_w, new_h), interpolation=interp)
    return canvas


def load_samples(path: str, args, nchw_shape: list[int]) -> list:
    """Calibration samples, each in the form the runtime feeds (see the module docstring)."""
    import numpy as np

    _, _c, h, w = nchw_shape
    if path.endswith(".npz"):
        with np.load(path) as data:
            return [np.ascontiguousarray(data[k]) for k in data.files]
    import cv2

    samples = []
    with open(path) as fh:
        entries = [ln.strip() for ln in fh if ln.strip() and not ln.lstrip().startswith("#")]
    for entry in entries:
        if entry.endswith(".npy"):
            samples.append(np.load(entry))
            continue
        img = cv2.imread(entry, cv2.IMREAD_COLOR)
        if img is None:
            raise SystemExit(f"cannot read calibration image {entry}")
        for variant in (img, cv2.flip(img, 1)):
            canvas = letterbox_u8(variant, w, h, args.pad_value)
            if args.color == "rgb":
                canvas = cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)
            samples.append(to_runtime_input(canvas[None], args))
    return samples


def to_runtime_input(nhwc_u8, args):
    """uint8 NHWC canvas -> what the runtime feeds in this input mode."""
    import numpy as np

    if args.input_mode == "uint8":
        return np.ascontiguousarray(nhwc_u8)
    x = (nhwc_u8.astype(np.float32) - np.asarray(args.mean, np.float32)) / np.asarray(args.std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def check_sample(x, args, nchw_shape: list[int], what: str):
    import numpy as np

    _, c, h, w = nchw_shape
    if args.input_mode == "uint8":
        want, dtype = (1, h, w, c), np.uint8
    else:
        want, dtype = (1, c, h, w), np.float32
    if x.ndim == 3:
        x = x[None]
    if tuple(x.shape) != want:
        raise SystemExit(f"{what} has shape {tuple(x.shape)}; input mode {args.input_mode} needs {want}")
    return np.ascontiguousarray(x.astype(dtype, copy=False))


def write_dataset(samples: list, folder: str, args) -> str:
    """RKNN's dataset file: one .npy per sample."""
    import numpy as np

    lines = []
    for i, x in enumerate(samples):
        # rknn-toolkit2 2.5 wants dataset .npy files in the ONNX input's layout (NCHW, with the
        # batch axis), whatever the runtime feeds; mean/std (uint8 mode) are applied to them.
        arr = x.transpose(0, 3, 1, 2) if args.input_mode == "uint8" else x
        p = os.path.join(folder, f"calib_{i:04d}.npy")
        np.save(p, np.ascontiguousarray(arr))
        lines.append(p)
    ds = os.path.join(folder, "dataset.txt")
    with open(ds, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return ds


# ------------------------------------------------------------------------------------- main

def _check(ret, what: str) -> None:
    if ret != 0:
        raise SystemExit(f"rknn-toolkit2 {what} failed (returned {ret}); see the toolkit log above")


_PROTOCOL = None  # the real stdout, kept for --serve replies; fd 1 then points at stderr


def _read_frame(stream) -> bytes | None:
    head = stream.read(8)
    if len(head) < 8:
        return None
    size = int.from_bytes(head, "big")
    return stream.read(size) if size else None


def serve(rknn, fmt: str, args, shape: list[int]) -> None:
    """Answer inference requests on the simulator until stdin closes or sends length 0."""
    import io

    import numpy as np  # the worker imports numpy lazily (only inside the rknn venv)

    _check(rknn.init_runtime(), "init_runtime (simulator)")
    _PROTOCOL.write((0).to_bytes(8, "big"))  # ready
    _PROTOCOL.flush()
    log("simulator serving")
    while (frame := _read_frame(sys.stdin.buffer)) is not None:
        x = check_sample(np.load(io.BytesIO(frame)), args, shape, "request")
        outs = rknn.inference(inputs=[x], data_format=fmt)
        buf = io.BytesIO()
        if outs is not None:
            np.savez(buf, *[np.asarray(o, dtype=np.float32) for o in outs])
        data = buf.getvalue()
        _PROTOCOL.write(len(data).to_bytes(8, "big") + data)  # length 0: inference failed
        _PROTOCOL.flush()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("onnx")
    ap.add_argument("out_rknn", help="where to write the .rknn ('-' to skip writing, e.g. only simulate)")
    ap.add_argument("--platform", default="rk3588", choices=PLATFORMS)
    ap.add_argument("--dataset", required=True, help=".npz of tensors, or text file of image / .npy paths")
    ap.add_argument("--input-mode", choices=("uint8", "float"), default="uint8")
    ap.add_argument("--mean", type=float, nargs=3, default=[0.0, 0.0, 0.0])
    ap.add_argument("--std", type=float, nargs=3, default=[1.0, 1.0, 1.0])
    ap.add_argument("--color", choices=("bgr", "rgb"), default="bgr", help="colour order of the model input")
    ap.add_argument("--pad-value", type=float, default=114.0)
    ap.add_argument("--quantized-algorithm", choices=("normal", "mmse", "kl_divergence"), default="normal")
    ap.add_argument("--optimization-level", type=int, choices=(0, 1, 2, 3), default=3)
    ap.add_argument("--input-shape", type=int, nargs=4, metavar=("N", "C", "H", "W"),
                    help="fix the input's symbolic dimensions to this NCHW shape (a dynamic-size model)")
    ap.add_argument("--fp16", action="store_true",
                    help="no int8 quantisation: the NPU runs the model in float16 (calibration samples unused)")
    ap.add_argument("--test-inputs", help=".npz of runtime inputs to run on the simulator")
    ap.add_argument("--test-outputs", help=".npz to save the simulator outputs to")
    ap.add_argument("--meta-out", help="JSON file for what was done (versions, shapes, timings)")
    ap.add_argument("--verbose", action="store_true", help="the toolkit's verbose log")
    ap.add_argument("--serve", action="store_true",
                    help="after building, run the PC simulator as a server: requests on stdin, replies on stdout "
                         "(8-byte big-endian length + .npy input / .npz outputs; length 0 ends)")
    args = ap.parse_args(argv)
    if args.serve:
        global _PROTOCOL
        _PROTOCOL = os.fdopen(os.dup(1), "wb")
        os.dup2(2, 1)  # the toolkit prints to stdout; keep the protocol channel clean
    if bool(args.test_inputs) != bool(args.test_outputs):
        ap.error("--test-inputs and --test-outputs go together")
    if args.out_rknn == "-" and not args.test_inputs and not args.serve:
        ap.error("nothing to do: no output file and no test inputs")

    import numpy as np

    try:
        from importlib.metadata import version as _version
        toolkit_version = _version("rknn-toolkit2")
    except Exception:  # noqa: BLE001
        toolkit_version = "unknown"
    log(f"rknn-toolkit2 {toolkit_version}, numpy {np.__version__}, platform {args.platform}")
    from rknn.api import RKNN

    out_dir = os.path.dirname(os.path.abspath(args.out_rknn)) if args.out_rknn != "-" else None
    meta: dict = {"toolkit": "rknn-toolkit2", "toolkit_version": toolkit_version, "platform": args.platform,
                  "quantization": {"dtype": "float16"} if args.fp16 else
                  {"dtype": QUANT_DTYPE, "algorithm": args.quantized_algorithm}}
    with tempfile.TemporaryDirectory(prefix="rknn-worker-") as work:
        t_prep = time.monotonic()
        fixed = os.path.join(work, "model.onnx")
        info = prepare_onnx(args.onnx, fixed, args.input_shape)
        shape = info["input_shape"]
        if len(shape) != 4 or shape[1] != 3 or min(shape) <= 0:
            raise SystemExit(f"input {info['input_name']} has shape {shape}; a fixed NCHW [1,3,H,W] input is needed")
        if shape[0] != 1:
            raise SystemExit(f"input batch is {shape[0]}; only batch 1 is supported")
        log(f"graph fixes: {info['constant_nodes_folded']} constant nodes folded, {info['pads_folded']} Pad nodes "
            f"folded into Conv/MaxPool ({time.monotonic() - t_prep:.1f} s)")
        out_shapes = onnx_output_shapes(fixed, info["input_name"], shape)

        samples = [check_sample(x, args, shape, f"calibration sample {i}")
                   for i, x in enumerate(load_samples(args.dataset, args, shape))]
        if not samples:
            raise SystemExit("no calibration samples")
        dataset = write_dataset(samples, work, args)
        log(f"{len(samples)} calibration samples, input mode {args.input_mode}")

        rknn = RKNN(verbose=args.verbose)
        try:
            cfg = {"target_platform": args.platform, "quantized_dtype": QUANT_DTYPE,
                   "quantized_algorithm": args.quantized_algorithm, "optimization_level": args.optimization_level}
            if args.input_mode == "uint8":
                cfg.update(mean_values=[list(args.mean)], std_values=[list(args.std)])
            _check(rknn.config(**cfg), "config")
            t0 = time.monotonic()
            log("loading the ONNX model")
            _check(rknn.load_onnx(model=fixed), "load_onnx")
            if args.fp16:
                log("building (float16, no quantisation)")
                _check(rknn.build(do_quantization=False), "build")
            else:
                log("building (int8 quantisation with the calibration samples)")
                _check(rknn.build(do_quantization=True, dataset=dataset), "build")
            build_s = time.monotonic() - t0
            log(f"built in {build_s:.1f} s")

            if out_dir is not None:
                os.makedirs(out_dir, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(args.out_rknn)}.", suffix=".tmp", dir=out_dir)
                os.close(fd)
                try:
                    _check(rknn.export_rknn(tmp), "export_rknn")
                    if os.path.getsize(tmp) == 0:
                        raise SystemExit("export_rknn wrote an empty file")
                    with open(tmp, "rb+") as fh:
                        os.fsync(fh.fileno())
                    umask = os.umask(0)
                    os.umask(umask)
                    os.chmod(tmp, 0o666 & ~umask)  # mkstemp made it 0600
                    size = os.path.getsize(tmp)
                    os.replace(tmp, args.out_rknn)
                    fsync_dir(out_dir)
                finally:
                    if os.path.exists(tmp):
                        os.unlink(tmp)
                log(f"wrote {args.out_rknn} ({size} bytes)")
                meta["rknn_bytes"] = size

            if args.serve:
                serve(rknn, "nhwc" if args.input_mode == "uint8" else "nchw", args, shape)
            if args.test_inputs:
                log("starting the PC simulator")
                _check(rknn.init_runtime(), "init_runtime (simulator)")
                fmt = "nhwc" if args.input_mode == "uint8" else "nchw"
                results = {}
                with np.load(args.test_inputs) as data:
                    keys = list(data.files)
                    for i, k in enumerate(keys):
                        x = check_sample(data[k], args, shape, f"test input {k}")
                        outs = rknn.inference(inputs=[x], data_format=fmt)
                        if outs is None:
                            raise SystemExit(f"simulator inference failed on test input {k}")
                        for j, o in enumerate(outs):
                            results[f"t{i}_o{j}"] = np.asarray(o)
                sim_shapes = [list(results[f"t0_o{j}"].shape) for j in range(len(out_shapes))] if keys else []
                fd, tmp = tempfile.mkstemp(prefix=".sim-", suffix=".npz",
                                           dir=os.path.dirname(os.path.abspath(args.test_outputs)))
                os.close(fd)
                try:
                    np.savez(tmp, **results)
                    os.replace(tmp, args.test_outputs)
                finally:
                    if os.path.exists(tmp):
                        os.unlink(tmp)
                log(f"simulated {len(keys)} test inputs; output shapes {sim_shapes}")
                meta["simulator_output_shapes"] = sim_shapes
        finally:
            rknn.release()

    _, c, h, w = shape
    if args.input_mode == "uint8":
        meta["input"] = {"name": info["input_name"], "onnx_shape": shape, "layout": "nhwc", "dtype": "uint8",
                         "shape": [1, h, w, c], "color": args.color, "normalisation": "npu",
                         "mean_values": list(args.mean), "std_values": list(args.std), "data_format": "nhwc"}
    else:
        meta["input"] = {"name": info["input_name"], "onnx_shape": shape, "layout": "nchw", "dtype": "float32",
                         "shape": [1, c, h, w], "color": args.color, "normalisation": "host",
                         "mean_values": list(args.mean), "std_values": list(args.std), "data_format": "nchw"}
    meta["outputs"] = [{"name": n, "shape": s} for n, s in zip(info["output_names"], out_shapes)]
    meta["graph_fixes"] = {"constant_nodes_folded": info["constant_nodes_folded"], "pads_folded": info["pads_folded"]}
    meta["calibration_samples"] = len(samples)
    meta["build_seconds"] = round(build_s, 1)
    meta["seconds"] = round(time.monotonic() - _T0, 1)
    if args.meta_out:
        tmp = args.meta_out + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(meta, fh, indent=2)
        os.replace(tmp, args.meta_out)
    log("done")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SystemExit as exc:
        if isinstance(exc.code, str):
            log(f"error: {exc.code}")
            sys.exit(1)
        raise
    except Exception as exc:  # noqa: BLE001
        import traceback

        traceback.print_exc()
        log(f"error: {type(exc).__name__}: {exc}")
        sys.exit(1)
