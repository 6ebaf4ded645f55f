"""The face models on an NPU or a Coral: converted at a fixed shape, judged by the face gate,
chosen by `auto`, and fed the way the device is fed (one face at a time; uint8 NHWC normalised
on the NPU, int8 on the TPU).

The fakes are at the vendor module boundary only (rknnlite, tflite_runtime's load_delegate); the
conversions are real (onnx2tf here; rknn-toolkit2 and the recognition quality on its PC
simulator where its venv exists, see test_conversion.py).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from test_conversion import need_rknn_toolkit, rknn_test
from test_vendor_backends import coral_board, rk3588  # noqa: F401  (rk3588: an Orange Pi 5, fake rknnlite)

from edgewatch.backends.onnxruntime_cpu import OnnxRuntimeCpuBackend
from edgewatch.backends.registry import load_backend
from edgewatch.models import installer
from edgewatch.models.conversion import rknn as rknn_conversion
from edgewatch.models.face_convert import fixed_input
from edgewatch.models.face_eval import labelled_crops, verification
from edgewatch.models.face_quantize import LANDMARK_DRIFT, face_tensors
from edgewatch.models.files import sha256_file
from edgewatch.models.manifest import Variant
from edgewatch.models.quantize import iou
from edgewatch.models.photos import FACE_PHOTOS, ensure_face_photos
from edgewatch.models.runtime.faces import align, detect_faces, embed
from edgewatch.models.store import ModelStore
from scratch import scratch_dir

FACE_MODELS = ("centerface", "mobilefacenet")


@pytest.fixture(scope="module")
def face_store_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    root = scratch_dir(request, tmp_path_factory, "faces-npu") / "models"
    store = ModelStore(root)
    for name in FACE_MODELS:
        installer.install(name, store, cache_dir)
    return root


@pytest.fixture(scope="module")
def images(cache_dir: Path) -> dict[str, np.ndarray]:
    return {name: cv2.imread(str(path), cv2.IMREAD_COLOR) for name, path in ensure_face_photos(cache_dir).items()}


def _with_fake_rknn(store: ModelStore, name: str, tmp: Path, faithful: bool = True) -> None:
    """Add the rk3588 variant face_convert would add, as a fake .rknn that normalises on the "device"."""
    from rknnlite.api import fake_rknn

    m = store.get(name)
    pre = m.preprocessing
    path = tmp / f"{name}.rknn"
    path.write_bytes(fake_rknn(store.path(m, "fp32").read_bytes(), pre.mean, pre.std))
    variant = Variant(file="", sha256=sha256_file(path), precision="int8" if m.task == "face_detection" else "fp16",
                      size_bytes=path.stat().st_size, runtime="rknn", platform="rk3588", toolkit="fake",
                      input=rknn_conversion.runtime_input_spec(fixed_input(m.input)), device_normalises=True,
                      faithful_to_fp32=faithful, fidelity="measured by the fake")
    store.add_variant(name, "rknn-rk3588", variant, path)


@pytest.fixture()
def npu_store(face_store_dir: Path, tmp_path: Path, rk3588) -> ModelStore:  # noqa: F811
    store = ModelStore(tmp_path / "models")
    shutil.copytree(face_store_dir, store.root)
    for name in FACE_MODELS:
        _with_fake_rknn(store, name, tmp_path)
    return store


def _cpu(store: ModelStore, name: str) -> OnnxRuntimeCpuBackend:
    m = store.get(name)
    backend = OnnxRuntimeCpuBackend()
    backend.load(store.path(m), m)
    return backend


def _same_faces(device, cpu_det, det_m, images) -> None:
    """The device finds the faces the CPU finds on every face photo, landmarks within the face gate."""
    drifts: list[float] = []
    ious: list[float] = []
    for name in FACE_PHOTOS:
        on_device, cpu = detect_faces(device, det_m, images[name]), detect_faces(cpu_det, det_m, images[name])
        # The device's input is padded to 640x640, the CPU's to the next multiple of 32, at the same scale.
        assert len(on_device.scores) == len(cpu.scores), name
        for box, marks in zip(cpu.boxes, cpu.landmarks):
            overlap = iou(box, on_device.boxes)
            j = int(np.argmax(overlap))
            ious.append(float(overlap[j]))
            drifts.append(float(np.linalg.norm(on_device.landmarks[j] - marks, axis=1).mean() / (box[2] - box[0])))
    # The padding is in the receptive field of the deep layers, so boxes and landmarks move a
    # little (measured in fp32: IoU 0.81-0.99, landmark drift median 1.8 % of the face width):
    # within the face gate every conversion must pass (models.face_quantize).
    assert len(drifts) >= 20 and min(ious) > 0.5 and np.median(drifts) < LANDMARK_DRIFT, (ious, drifts)


def test_faces_run_on_the_npu_as_they_run_on_the_cpu(npu_store: ModelStore, images) -> None:
    from rknnlite.api import FakeNpu

    det_m, emb_m = npu_store.get("centerface"), npu_store.get("mobilefacenet")
    det, emb = load_backend("auto", npu_store, det_m).backend, load_backend("auto", npu_store, emb_m).backend
    cpu_det, cpu_emb = _cpu(npu_store, "centerface"), _cpu(npu_store, "mobilefacenet")
    try:
        assert (det.type_key, emb.type_key) == ("rknn", "rknn")
        assert det.input_format()[0].shape == (1, 640, 640, 3) and det.input_format()[0].dtype == "uint8"
        _same_faces(det, cpu_det, det_m, images)
        group = next(n for n, p in FACE_PHOTOS.items() if len(p.faces) >= 3)
        crops = [align(images[group], marks) for marks in detect_faces(cpu_det, det_m, images[group]).landmarks]
        before = sum(FakeNpu.calls_per_core.values())
        on_npu, on_cpu = embed(emb, emb_m, crops), embed(cpu_emb, emb_m, crops)
        assert sum(FakeNpu.calls_per_core.values()) - before == len(crops)  # batch 1: one run per face
        assert on_npu.shape == on_cpu.shape and np.min(np.sum(on_npu * on_cpu, axis=1)) > 0.999
    finally:
        for backend in (det, emb, cpu_det, cpu_emb):
            backend.close()


def test_a_face_conversion_that_failed_its_gate_never_runs(face_store_dir: Path, tmp_path: Path,
                                                           rk3588) -> None:  # noqa: F811
    store = ModelStore(tmp_path / "models")
    shutil.copytree(face_store_dir, store.root)
    _with_fake_rknn(store, "centerface", tmp_path, faithful=False)
    m = store.get("centerface")
    assert not m.faithful("rknn-rk3588")
    chosen = load_backend("auto", store, m)
    try:
        assert chosen.backend.type_key != "rknn"
        assert any("rknn" in n and "failed its gate" in n for n in chosen.notes), chosen.notes
    finally:
        chosen.backend.close()


@pytest.fixture()
def coral_box(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, face_store_dir: Path) -> ModelStore:
    """A Raspberry Pi with a Coral USB (tflite-runtime's load_delegate faked) and the face models."""
    coral_board(tmp_path, monkeypatch)
    store = ModelStore(tmp_path / "models")
    shutil.copytree(face_store_dir, store.root)
    return store


def test_centerface_converts_for_the_edge_tpu_and_runs_there(coral_box: ModelStore, cache_dir: Path, images,
                                                             tmp_path: Path) -> None:
    from edgewatch.models.convert import ConvertError, convert

    manifest, line = convert("centerface", "edgetpu", coral_box, cache_dir)  # real onnx2tf, cached
    assert "edgetpu-int8" not in manifest.variants and "edgetpu_compiler" in line
    made = Path(re.search(r"^  (/\S+_for_edgetpu\.tflite)$", line, re.M).group(1))
    compiled = tmp_path / f"{made.stem}_edgetpu.tflite"
    shutil.copy(made, compiled)  # what edgetpu_compiler would bring back; the fake delegate runs it on the CPU
    manifest, line = convert("centerface", "edgetpu", coral_box, cache_dir, compiled=compiled)
    variant = manifest.variants["edgetpu-int8"]
    assert variant.faithful_to_fp32 and variant.input.shape == (1, 640, 640, 3), line
    chosen = load_backend("auto", coral_box, manifest)
    tpu, cpu = chosen.backend, _cpu(coral_box, "centerface")
    try:
        assert tpu.type_key == "edgetpu", chosen.notes
        assert tpu.input_format()[0].dtype == "int8"
        _same_faces(tpu, cpu, manifest, images)
    finally:
        tpu.close()
        cpu.close()
    # MobileFaceNet's int8 failed the face gate on the CPU: the TPU runs int8 only, so it stays on the CPU.
    with pytest.raises(ConvertError, match="runs int8 only: its int8 model is not faithful"):
        convert("mobilefacenet", "edgetpu", coral_box, cache_dir)


@rknn_test
def test_face_models_convert_for_rknn_and_recognise_on_the_simulator(face_store_dir: Path, cache_dir: Path,
                                                                      images, tmp_path: Path) -> None:
    """The real conversion (cached by source sha256), then the face evaluation of the README run
    entirely on rknn-toolkit2's PC simulator: every labelled face found and every pair told apart."""
    need_rknn_toolkit(cache_dir)
    from edgewatch.daemon.testing.rknn_simulator import RknnSimulatorBackend
    from edgewatch.models.convert import convert
    from edgewatch.models.face_convert import _raw

    store = ModelStore(tmp_path / "models")
    shutil.copytree(face_store_dir, store.root)
    photos = ensure_face_photos(cache_dir)
    backends = {}
    try:
        for name in FACE_MODELS:
            manifest, line = convert(name, "rknn", store, cache_dir)
            variant = manifest.variants["rknn-rk3588"]
            assert variant.faithful_to_fp32 and manifest.faithful("rknn-rk3588"), line
            assert variant.input.multiple_of is None and variant.input.shape[0] == 1 and variant.device_normalises
            w, h = variant.input.size
            build = rknn_conversion.Build(samples=face_tensors(manifest.task, variant.input, _raw(manifest.preprocessing),
                                                               photos),
                                          input_shape=(1, 3, h, w), fp16=variant.precision == "fp16")
            sim = RknnSimulatorBackend(cache_dir, [], build=build)
            sim.load(store.path(manifest, "fp32"), manifest, "rknn-rk3588")  # the simulator builds from the ONNX
            backends[name] = (sim, manifest)
        (det, det_m), (emb, emb_m) = backends["centerface"], backends["mobilefacenet"]
        crops = labelled_crops(det, det_m, images)  # ValueError if a labelled face is missed
        result = verification(embed(emb, emb_m, [c for _, _, c in crops]), crops)
        assert (len(result.same), len(result.diff)) == (10, 168)
        print(f"on the simulator: same person min {min(result.same):.3f}, different people max {max(result.diff):.3f}")
        assert result.accuracy(0.55) == 1.0 and min(result.same) > max(result.diff) + 0.1
    finally:
        for sim, _ in backends.values():
            sim.close()
