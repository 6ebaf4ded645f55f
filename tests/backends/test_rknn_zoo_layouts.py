"""rknn_model_zoo detectors made by the real Rockchip toolchain: compiled, read back, run on its PC simulator.

A zoo ``.rknn`` (YOLOv8/YOLO11, YOLOv5, YOLOX) is rknn-toolkit2's int8 build of an ONNX export
in the zoo's multi-output layout. Here that ONNX is NanoDet's real network wrapped into each zoo
layout (layout_exports.py, as tests/test_layouts.py uses them), added as a user model
(``add_user_model``: layout, input size and normalisation recognised from the ONNX), then:

1. compiled for rk3588 the way the zoo's ``convert.py`` does: the normalisation (mean 0, std 255
   for YOLOv5/v8; mean 0, std 1 for YOLOX, on RGB) compiled into the model, so the host sends
   letterboxed uint8 RGB pixels, NHWC; int8 calibrated on the sample photos and their mirrors (as
   every RKNN conversion here);
2. the ``.rknn`` file written by that same build is read back without the toolkit
   (``model_files.read_io``: platform, normalisation, outputs), and added with ``models add``
   itself: recognised as the same layout, stored as an rk3588 variant, with an input format equal
   to the one the simulator is fed;
3. the very model in that file (the worker writes it, then serves it: the simulator cannot run a
   ``.rknn`` loaded from disk) runs on the simulator through ``run.detect``, the daemon's run path,
   on every evaluation view of the photos (72 views, about 130 NanoDet detections), and must find
   what NanoDet finds on ONNX Runtime: same label name, IoU >= 0.85, one to one, both ways.

The int8 build of each layout is judged, and a float16 build of the YOLOv8 layout (no
quantisation: it must match every detection, median IoU 0.999 or more). float16 builds of all
three matched every detection when measured; only YOLOv8's stays in the suite, for time (the
YOLOv5 wrapper alone takes a minute to build). The int8 one, what the zoo ships, is judged by share
and by the statistics of tests/yolo_exports.py:
quantisation moves small boxes a little, so a few fall under IoU 0.85 (all are found at 0.5);
measured 94.6 % (YOLOv8), 96.1 % (YOLOv5), 91.5 % (YOLOX) against 98.4 % for NanoDet's own int8
.rknn on the same views. The wrapped graphs likely lose a little more than a real zoo export would
(not measured apart): their NPU input still goes through NanoDet's own normalisation and a channel
swap inside the graph, and YOLOX's log sizes share one int8 range with its scores.

Nothing is cached between runs: a build takes 4-30 s and the 72 views about 10 s on the simulator,
and a cached file would no longer be the model that ran. The decode time (the layout's decoder and
NMS, timed apart on the simulator's own outputs) is reported next to the simulator's inference time.

Slow set, like the other RKNN tests (tests/backends/test_conversion.py): skipped cleanly where the
rknn-toolkit2 venv is not built and the slow set may not build it.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from layout_exports import nanodet_as
from test_conversion import need_rknn_toolkit, rknn_test
from yolo_exports import Comparison, compare_detections, photo_views

from edgewatch.models.conversion import rknn as rknn_conversion
from edgewatch.models.manifest import ModelManifest, Variant
from edgewatch.models.model_files import read_io
from edgewatch.models.runtime import run
from edgewatch.models.runtime.heads import decode
from edgewatch.models.store import ModelStore
from edgewatch.models.user_models import add_user_model
from scratch import scratch_dir

PLATFORM = "rk3588"
VARIANT = f"rknn-{PLATFORM}"
# The zoo's convert.py per family: rknn.config(mean_values, std_values) on the RGB image (no
# quant_img_RGB2BGR), so the NPU takes uint8 RGB and normalises it itself.
ZOO_CONFIG = {"rknn_yolov8": ("rgb", (0.0,) * 3, (255.0,) * 3),
              "rknn_yolov5": ("rgb", (0.0,) * 3, (255.0,) * 3),
              "rknn_yolox": ("rgb", (0.0,) * 3, (1.0,) * 3)}
QUANTISATION = {"int8": "int8", "fp16": "float16"}  # read_io's facts["quantisation"]
REFERENCE_CONF, CANDIDATE_CONF, MATCH_IOU = 0.4, 0.3, 0.85

Found = dict[str, tuple[np.ndarray, np.ndarray, list[str]]]  # view -> boxes, scores, label names


@pytest.fixture(scope="module")
def views(photos: dict[str, Path]) -> dict[str, np.ndarray]:
    """Each photo twelve ways (as taken, mirrored, corner crops, shrunk): 129 NanoDet detections >= 0.4."""
    return photo_views(photos)


@pytest.fixture(scope="module")
def nanodet_found(reference, nanodet: ModelManifest, views) -> Found:
    """What NanoDet itself finds (fp32, ONNX Runtime, the same run path)."""
    out = {}
    for name, img in views.items():
        d = run.detect(reference, nanodet, img, CANDIDATE_CONF)
        out[name] = (d.boxes, d.scores, [nanodet.labels[c] for c in d.classes])
    return out


@pytest.fixture(scope="module")
def labels_file(nanodet: ModelManifest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("zoo-labels") / "coco.txt"
    path.write_text("\n".join(nanodet.labels) + "\n")
    return path


@pytest.fixture(scope="module")
def user_store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> ModelStore:
    return ModelStore(scratch_dir(request, tmp_path_factory, "zoo-user") / "models")


def matched(a: Found, b: Found, match_iou: float = MATCH_IOU) -> Comparison:
    """Each detection of ``a`` (>= REFERENCE_CONF, highest first) matched to the unused detection of ``b``
    with the same label name (>= CANDIDATE_CONF) of highest IoU, when that IoU is >= ``match_iou``."""
    return compare_detections(((view, a[view], b[view]) for view in a), REFERENCE_CONF, CANDIDATE_CONF,
                              match_iou=match_iou)


class Recording:
    """A loaded backend for run.detect that keeps each inference's outputs, so the decode can be timed
    on exactly what the simulator gave."""

    def __init__(self, backend) -> None:
        self.backend, self.last = backend, None

    def input_format(self):
        return self.backend.input_format()

    def infer(self, batch):
        self.last = self.backend.infer(batch)
        return self.last


@rknn_test
@pytest.mark.parametrize("kind, precision", [(kind, "int8") for kind in ZOO_CONFIG] + [("rknn_yolov8", "fp16")])
def test_zoo_rknn_build_is_recognised_and_finds_what_nanodet_finds(
        kind: str, precision: str, store: ModelStore, nanodet: ModelManifest, cache_dir: Path,
        photos: dict[str, Path], views, nanodet_found: Found, labels_file: Path, user_store: ModelStore,
        tmp_path: Path, record_property) -> None:
    need_rknn_toolkit(cache_dir)
    from edgewatch.daemon.testing.rknn_simulator import RknnSimulatorBackend

    # 1. The zoo-layout ONNX, added as a user model: the manifest as `models add` makes it.
    onnx_path = nanodet_as(store.path(nanodet, "fp32"), nanodet, kind, tmp_path / f"{kind}.onnx")
    added = add_user_model(onnx_path, f"zoo-{kind.replace('_', '-')}", labels_file, user_store, int8=False)
    color, mean, std = ZOO_CONFIG[kind]
    assert added.postprocessing == kind and added.labels == nanodet.labels and added.input.size == (416, 416)
    assert added.preprocessing.color == color
    np.testing.assert_allclose(added.preprocessing.mean, mean)
    np.testing.assert_allclose(added.preprocessing.std, std)

    # 2. Compiled as the zoo compiles it: normalisation in the NPU, the host sends uint8 RGB NHWC.
    out = tmp_path / f"{kind}_{PLATFORM}_{precision}.rknn"
    spec = rknn_conversion.runtime_input_spec(added.input, "uint8")
    manifest = added.model_copy(update={"variants": {**added.variants, VARIANT: Variant(  # sha256: not yet built
        file=out.name, sha256="", precision=precision, size_bytes=0, runtime="rknn", platform=PLATFORM,
        source_sha256=added.variants["fp32"].sha256, toolkit=f"rknn-toolkit2 {rknn_conversion.TOOLKIT_VERSION}",
        input=spec, device_normalises=True)}})
    sim = RknnSimulatorBackend(cache_dir, list(photos.values()), PLATFORM,
                               rknn_conversion.Build(fp16=precision == "fp16"), out_rknn=out)
    t0 = time.monotonic()
    sim.load(onnx_path, manifest, VARIANT)  # builds, writes `out`, then serves that model
    build_s = time.monotonic() - t0
    try:
        # 3. The file, read without the toolkit: platform, normalisation, outputs in the ONNX's order,
        # recognised as the same layout, fed exactly as the simulator is fed.
        inputs, outputs, facts = read_io(out)
        _, onnx_outputs, _ = read_io(onnx_path)
        assert facts["runtime"] == "rknn" and facts["platform"] == PLATFORM
        assert facts["quantisation"] == QUANTISATION[precision]
        assert facts["toolkit"] == rknn_conversion.TOOLKIT_VERSION and facts["source_framework"] == "ONNX"
        # the toolkit stores one value when all three channels are equal (mean [0] here)
        np.testing.assert_allclose(np.broadcast_to(facts["mean"], 3), mean)
        np.testing.assert_allclose(np.broadcast_to(facts["std"], 3), std)
        assert [(i.name, i.shape) for i in inputs] == [("images", (1, 3, 416, 416))]
        assert [(o.name, o.shape) for o in outputs] == [(o.name, o.shape) for o in onnx_outputs]
        # `models add` of the .rknn itself: recognised as the same layout, stored for its chip, fed
        # exactly as the simulator is fed (uint8 RGB NHWC, the normalisation in the NPU)
        zoo = add_user_model(out, f"rknn-{kind.replace('_', '-')}-{precision}", labels_file, user_store)
        assert zoo.postprocessing == kind and zoo.labels == nanodet.labels, zoo
        assert (zoo.default.runtime, zoo.default.platform, zoo.default.precision) == ("rknn", PLATFORM, precision)
        assert zoo.default.device_normalises and zoo.default_variant == f"rknn-{PLATFORM}"
        spec, pre = sim.input_format()
        assert (zoo.input.shape, zoo.input.layout, zoo.input.dtype) == (spec.shape, spec.layout, spec.dtype), zoo.input
        assert (zoo.preprocessing.color, zoo.preprocessing.pad_value) == (pre.color, pre.pad_value)

        # 4. That model on the simulator, through the daemon's run path, on every view.
        recording = Recording(sim)
        found: Found = {}
        infer_ms, decode_ms = [], []
        for name, img in views.items():
            d = run.detect(recording, manifest, img, CANDIDATE_CONF)  # type: ignore[arg-type]
            found[name] = (d.boxes, d.scores, [manifest.labels[c] for c in d.classes])
            t1 = time.perf_counter()
            decode(kind, recording.last, zoo.input.size, CANDIDATE_CONF, 0.45, 300)
            decode_ms.append((time.perf_counter() - t1) * 1000)
            infer_ms.append(d.inference_ms)
    finally:
        sim.close()

    recall, found_back = matched(nanodet_found, found), matched(found, nanodet_found)
    dec, inf = float(np.median(decode_ms)), float(np.median(infer_ms))
    line = (f"{kind} {precision} {PLATFORM} on the simulator (build {build_s:.1f} s, {out.stat().st_size} bytes): "
            f"NanoDet's found: {recall.summary()} | its own found by NanoDet: {found_back.summary()} | "
            f"decode median {dec:.2f} ms, simulator inference median {inf:.1f} ms "
            f"(decode {dec / (dec + inf):.1%} of the two)")
    print(line)
    record_property("zoo_rknn", line)
    if precision == "fp16":  # no quantisation: every detection, in place (a decoder error shows here)
        assert recall.share == found_back.share == 1.0 and np.median(recall.ious) >= 0.99, line
    recall.assert_faithful()
    found_back.assert_faithful()
