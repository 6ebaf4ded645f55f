"""The accelerator backends' own code paths, with a fake only at the vendor module boundary."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from edgewatch.backends import devices
from edgewatch.backends.base import BackendError
from edgewatch.backends.conformance import Conformance
from edgewatch.backends.registry import load_backend, order, probe_all
from edgewatch.backends.rknn import RknnBackend, RknnConfig
from edgewatch.models.manifest import Variant
from edgewatch.models.store import ModelStore

FAKES = Path(__file__).parent / "fakes"


def unload(*packages: str) -> None:
    """Forget the fake vendor modules a test imported, so later tests' probes see them absent again."""
    for mod in [m for m in sys.modules if m.split(".")[0] in packages]:
        del sys.modules[mod]


def fake_board(root: Path, compatible: str, nodes: list[str] = (), files: dict[str, str] | None = None) -> Path:
    (root / "proc/device-tree").mkdir(parents=True)
    (root / "proc/device-tree/compatible").write_bytes(compatible.encode().replace(b",,", b"\0"))
    for node in nodes:
        (root / node).parent.mkdir(parents=True, exist_ok=True)
        (root / node).touch()
    for rel, text in (files or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


@pytest.fixture()
def rk3588(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An Orange Pi 5 as the probe sees it, with the fake rknnlite importable."""
    root = fake_board(tmp_path / "board", "xunlong,orangepi-5,,rockchip,rk3588", ["dev/rknpu"])
    monkeypatch.setattr(devices, "SYSROOT", root)
    monkeypatch.syspath_prepend(str(FAKES))
    for mod in [m for m in sys.modules if m.startswith("rknnlite")]:
        monkeypatch.delitem(sys.modules, mod)
    from rknnlite.api import FakeNpu

    FakeNpu.reset()
    yield FakeNpu
    FakeNpu.reset()
    unload("rknnlite")


@pytest.fixture()
def store_with_rknn(tmp_path: Path, installed_data_dir: Path, rk3588) -> tuple[ModelStore, str]:
    """A store whose nanodet has an rk3588 variant (a fake .rknn wrapping the fp32 ONNX)."""
    import shutil

    from rknnlite.api import FAKE_MAGIC

    from edgewatch.models.files import sha256_file

    data = tmp_path / "data"
    shutil.copytree(installed_data_dir, data)
    store = ModelStore(data / "models")
    m = store.get("nanodet")
    rknn = tmp_path / "nanodet.rknn"
    rknn.write_bytes(FAKE_MAGIC + store.path(m, "fp32").read_bytes())
    variant = Variant(file="", sha256=sha256_file(rknn), precision="int8", size_bytes=rknn.stat().st_size,
                      runtime="rknn", platform="rk3588", toolkit="fake")
    manifest = m.model_copy(update={"variants": {**m.variants, "rknn-rk3588": variant}})
    files = {k: store.path(m, k) for k in m.variants} | {"rknn-rk3588": rknn}
    store.commit(manifest, files)
    return store, "rknn-rk3588"


def test_probe_reports_each_missing_piece(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = fake_board(tmp_path / "b", "rockchip,rk3588", ["dev/rknpu"],
                      files={"etc/nv_tegra_release": "# R36 (release), REVISION: 4.0"})
    monkeypatch.setattr(devices, "SYSROOT", root)
    results = probe_all()
    assert "Rockchip rk3588 NPU" in results["rknn"].reason and "rknnlite not importable" in results["rknn"].reason
    assert "R36" in results["tensorrt"].reason and not results["tensorrt"].available
    usb = root / "sys/bus/usb/devices/1-1"
    usb.mkdir(parents=True)
    (usb / "idVendor").write_text("18d1\n")
    (usb / "idProduct").write_text("9302\n")
    assert "EdgeTPU found (usb 18d1:9302)" in probe_all()["edgetpu"].reason


def test_rknn_conforms_with_fake_npu(store_with_rknn, photos, reference, tmp_path: Path) -> None:
    store, variant = store_with_rknn
    m = store.get("nanodet")
    suite = Conformance(RknnBackend, store.path(m, variant), m, variant, reference, photos)
    for result in suite.run_all(tmp_path):
        assert result.passed, f"{result.name}: {result.detail}"


def test_rknn_spreads_requests_over_the_three_cores(store_with_rknn, photos) -> None:
    store, variant = store_with_rknn
    m = store.get("nanodet")
    backend = RknnBackend(RknnConfig(core_mode="per-core"))
    backend.load(store.path(m, variant), m, variant)
    x = np.zeros((1, 3, 416, 416), np.float32)
    threads = [threading.Thread(target=lambda: [backend.infer(x) for _ in range(6)]) for _ in range(6)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    backend.close()
    from rknnlite.api import FakeNpu

    assert set(FakeNpu.calls_per_core) == {1, 2, 4} and sum(FakeNpu.calls_per_core.values()) == 36
    single = RknnBackend(RknnConfig(core_mode="all-cores"))
    single.load(store.path(m, variant), m, variant)
    single.infer(x)
    single.close()
    assert 7 in FakeNpu.calls_per_core


def test_auto_picks_the_npu_and_falls_back_when_it_fails(store_with_rknn) -> None:
    store, _ = store_with_rknn
    m = store.get("nanodet")
    chosen = load_backend("auto", store, m)
    assert chosen.backend.type_key == "rknn" and chosen.backend.execution_provider == "NPU"
    chosen.backend.close()
    from rknnlite.api import FakeNpu

    FakeNpu.init_fails = True  # e.g. librknnrt.so does not match the toolkit that built the model
    fallback = load_backend("auto", store, m)
    assert fallback.backend.type_key != "rknn"
    assert any("rknn failed to load" in n and "librknnrt.so" in n for n in fallback.notes)
    fallback.backend.close()


def test_rknn_inference_failure_is_a_backend_error(store_with_rknn) -> None:
    store, variant = store_with_rknn
    m = store.get("nanodet")
    backend = RknnBackend()
    backend.load(store.path(m, variant), m, variant)
    from rknnlite.api import FakeNpu

    FakeNpu.inference_fails = True
    with pytest.raises(BackendError, match="NPU returned no result"):
        backend.infer(np.zeros((1, 3, 416, 416), np.float32))
    backend.close()


def test_npu_present_but_model_not_converted_says_how(rk3588, installed_data_dir: Path) -> None:
    store = ModelStore(installed_data_dir / "models")
    chosen = load_backend("rknn", store, store.get("nanodet"))
    assert chosen.backend.type_key != "rknn"
    assert any("models convert nanodet --target rknn" in n for n in chosen.notes)
    chosen.backend.close()


def _rknn_only(store: ModelStore, fake_rknn: Path, platform: str):
    """``store``'s nanodet as a user's .rknn file alone (no ONNX to convert from), built for ``platform``."""
    from edgewatch.models.files import sha256_file

    m = store.get("nanodet")
    variant = Variant(file="", sha256=sha256_file(fake_rknn), precision="int8", size_bytes=fake_rknn.stat().st_size,
                      runtime="rknn", platform=platform, toolkit="fake")
    manifest = m.model_copy(update={"name": "zoo-model", "variants": {"rknn": variant}, "default_variant": "rknn"})
    return store.commit(manifest, {"rknn": fake_rknn})


def test_an_rknn_built_for_another_soc_is_refused_naming_both(store_with_rknn, tmp_path: Path) -> None:
    store, variant = store_with_rknn
    m = _rknn_only(store, store.path(store.get("nanodet"), variant), "rk3566")
    with pytest.raises(BackendError) as err:
        load_backend("auto", store, m)
    message = str(err.value)
    assert "built for rk3566 and this board is rk3588" in message, message
    assert "compiled for rk3588" in message and "models add" in message, message  # no ONNX to convert: bring one
    with_onnx = store.get("nanodet")
    theirs = with_onnx.variants[variant].model_copy(update={"platform": "rk3566"})
    mixed = with_onnx.model_copy(update={"variants": {**with_onnx.variants, variant: theirs}})
    chosen = load_backend("auto", store, mixed)  # the ONNX runs on the CPU, and the log says why not the NPU
    assert chosen.backend.type_key != "rknn"
    assert any("built for rk3566" in n and "--platform rk3588" in n for n in chosen.notes), chosen.notes
    chosen.backend.close()


def test_an_orange_pi_5_rk3588s_runs_rk3588_files_on_three_cores(store_with_rknn, monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    """The Orange Pi 5's device tree says rk3588s: the same NPU as the rk3588 its files are built for."""
    store, variant = store_with_rknn
    monkeypatch.setattr(devices, "SYSROOT", fake_board(tmp_path / "opi5", "xunlong,orangepi-5,,rockchip,rk3588s",
                                                       ["dev/rknpu"]))
    assert devices.npu_family(devices.rockchip_soc()) == "rk3588"
    chosen = load_backend("auto", store, store.get("nanodet"))
    assert chosen.backend.type_key == "rknn" and chosen.backend.variant_key == variant
    assert len(chosen.backend._runtimes) == 3  # one runtime per NPU core
    chosen.backend.close()
    assert [devices.npu_family(s) for s in ("RK3588", "rockchip,rk3568", "rk3566", "rv1103")] == [
        "rk3588", "rk3566", "rk3566", "rv1106"]


def test_an_rknn_only_model_without_the_npu_says_what_it_needs(installed_data_dir: Path, tmp_path: Path) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(installed_data_dir, data)
    store = ModelStore(data / "models")
    rknn = tmp_path / "model.rknn"
    rknn.write_bytes(b"RKNN not a real model")  # never opened: no backend here runs .rknn
    m = _rknn_only(store, rknn, "rk3588")
    with pytest.raises(BackendError) as err:
        load_backend("auto", store, m)
    message = str(err.value)
    assert "its rknn variant needs the Rockchip NPU" in message and "no Rockchip NPU found" in message, message


@pytest.fixture()
def jetson(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A Jetson Orin as the probe sees it, with fake tensorrt and cuda-python importable."""
    root = fake_board(tmp_path / "board", "nvidia,p3768-0000+p3767-0005,,nvidia,tegra234",
                      files={"etc/nv_tegra_release": "# R36 (release), REVISION: 4.0, GCID: 1"})
    monkeypatch.setattr(devices, "SYSROOT", root)
    monkeypatch.syspath_prepend(str(FAKES))
    for mod in [m for m in sys.modules if m.split(".")[0] in ("tensorrt", "cuda")]:
        monkeypatch.delitem(sys.modules, mod)
    import tensorrt

    tensorrt.FakeGpu.reset()
    yield tensorrt.FakeGpu
    unload("tensorrt", "cuda")


def test_tensorrt_conforms_and_caches_its_engine(jetson, store, nanodet, reference, photos, tmp_path: Path) -> None:
    from cuda.bindings.runtime import live_allocations

    from edgewatch.backends.tensorrt import TensorRtBackend, TensorRtConfig

    config = TensorRtConfig(engine_dir=tmp_path / "engines")
    suite = Conformance(lambda: TensorRtBackend(config), store.path(nanodet, "fp32"), nanodet, "fp32", reference, photos)
    for result in suite.run_all(tmp_path):
        assert result.passed, f"{result.name}: {result.detail}"
    assert jetson.builds == 1  # every later load deserialised the cached engine
    engines = list((tmp_path / "engines").glob("*.engine"))
    assert len(engines) == 1 and "trt10.99.0" in engines[0].name and "Orin" in engines[0].name and "fp16" in engines[0].name
    assert live_allocations() == 0  # close() freed every GPU buffer
    engines[0].write_bytes(b"stale engine from another TensorRT")
    backend = TensorRtBackend(config)
    backend.load(store.path(nanodet, "fp32"), nanodet, "fp32")
    assert jetson.builds == 2 and backend.execution_provider == "GPU (TensorRT)" and backend.can_use_gpu
    backend.close()


def test_tensorrt_auto_selection_and_build_failure_fallback(jetson, store, nanodet, tmp_path: Path) -> None:
    from edgewatch.backends.tensorrt import TensorRtConfig

    configs = {"tensorrt": TensorRtConfig(engine_dir=tmp_path / "engines")}
    chosen = load_backend("auto", store, nanodet, configs)
    assert chosen.backend.type_key == "tensorrt"
    chosen.backend.close()
    jetson.build_fails = True
    (next((tmp_path / "engines").glob("*.engine"))).unlink()
    fallback = load_backend("tensorrt", store, nanodet, configs)
    assert fallback.backend.type_key != "tensorrt"
    assert any("tensorrt failed to load" in n and "could not build an engine" in n for n in fallback.notes)
    fallback.backend.close()


@pytest.mark.parametrize("npu_fails", [False, True])
def test_api_answers_on_the_npu_or_falls_back_saying_what_runs(store_with_rknn, cache_dir, photo_bytes, npu_fails) -> None:
    from litestar.testing import TestClient
    from rknnlite.api import FakeNpu

    from edgewatch.daemon.app import create_app
    from edgewatch.daemon.config import load_settings

    store, _ = store_with_rknn
    FakeNpu.init_fails = npu_fails
    config = load_settings(data_dir=store.root.parent, cache_dir=cache_dir, detection={"model": "nanodet"})
    with TestClient(create_app(config)) as client:
        body = client.post("/v1/vision/detection", files={"image": photo_bytes["bus"]}).json()
        assert body["success"] and {"bus", "person"} <= {p["label"] for p in body["predictions"]}
        assert body["executionProvider"] == ("CPU" if npu_fails else "NPU")
        status = client.get("/v1/status/backends").json()
        nanodet = store.get("nanodet")
        cpu = next(cls.type_key for cls in order("auto", nanodet)  # the CPU runtime of its default variant
                   if cls.cpu and cls.probe().available and cls().pick_variant(nanodet))
        assert status["active"] == (cpu if npu_fails else "rknn")
        if npu_fails:
            assert any("librknnrt.so" in note for note in status["notes"])


def coral_board(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Raspberry Pi with a Coral USB as the probe sees it, tflite-runtime's interpreter (faked at
    load_delegate) the one the TFLite backends import."""
    from edgewatch.backends import tflite

    root = fake_board(tmp_path / "board", "raspberrypi,5-model-b,,brcm,bcm2712",
                      files={"sys/bus/usb/devices/2-1/idVendor": "18d1\n", "sys/bus/usb/devices/2-1/idProduct": "9302\n",
                             "usr/lib/aarch64-linux-gnu/libedgetpu.so.1": ""})
    monkeypatch.setattr(devices, "SYSROOT", root)
    monkeypatch.syspath_prepend(str(FAKES))
    monkeypatch.setattr(tflite, "INTERPRETER_MODULES", ("tflite_runtime.interpreter",))
    monkeypatch.delitem(sys.modules, "tflite_runtime.interpreter", raising=False)
    monkeypatch.delitem(sys.modules, "tflite_runtime", raising=False)


@pytest.fixture()
def coral(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, converted_store: ModelStore):
    """A Raspberry Pi with a Coral USB, tflite-runtime's interpreter faked at load_delegate, and a
    store whose nanodet has an edgetpu variant (the int8 TFLite standing in for the compiled file)."""
    import shutil

    from edgewatch.models.files import sha256_file

    coral_board(tmp_path, monkeypatch)
    from tflite_runtime.interpreter import FakeTpu

    FakeTpu.reset()
    data = tmp_path / "data"
    shutil.copytree(converted_store.root.parent, data)
    store = ModelStore(data / "models")
    m = store.get("nanodet")
    compiled = tmp_path / "nanodet_int8_edgetpu.tflite"
    shutil.copy(store.path(m, "tflite-int8"), compiled)
    variant = m.variants["tflite-int8"].model_copy(update={"runtime": "edgetpu", "sha256": sha256_file(compiled)})
    store.add_variant("nanodet", "edgetpu-int8", variant, compiled)
    yield FakeTpu, store


def test_edgetpu_probe_and_conformance(coral, reference, photos, tmp_path: Path) -> None:
    from edgewatch.backends.edgetpu import EdgeTpuBackend, EdgeTpuConfig

    fake, store = coral
    assert EdgeTpuBackend.probe().available and "usb 18d1:9302" in EdgeTpuBackend.probe().reason
    m = store.get("nanodet")
    suite = Conformance(lambda: EdgeTpuBackend(EdgeTpuConfig(device="usb")), store.path(m, "edgetpu-int8"), m,
                        "edgetpu-int8", reference, photos)
    for result in suite.run_all(tmp_path):
        assert result.passed, f"{result.name}: {result.detail}"
    assert fake.delegates and all(d.library == "libedgetpu.so.1" and d.options == {"device": "usb"}
                                  for d in fake.delegates)


def test_auto_runs_on_the_coral_before_any_cpu_runtime(coral) -> None:
    _, store = coral
    m = store.get("nanodet")
    chosen = load_backend("auto", store, m)
    try:
        assert chosen.backend.type_key == "edgetpu" and chosen.backend.execution_provider == "TPU"
    finally:
        chosen.backend.close()


@pytest.mark.parametrize("failure, words", [("library_missing", "libedgetpu1-std"), ("init_fails", "failed to initialise")])
def test_edgetpu_failures_fall_back_with_the_reason(coral, failure: str, words: str) -> None:
    from edgewatch.backends.edgetpu import EdgeTpuBackend

    fake, store = coral
    setattr(fake, failure, True)
    m = store.get("nanodet")
    with pytest.raises(BackendError, match=words):
        EdgeTpuBackend().load(store.path(m, "edgetpu-int8"), m, "edgetpu-int8")
    chosen = load_backend("edgetpu", store, m)
    assert chosen.backend.type_key != "edgetpu" and any(words in n for n in chosen.notes)
    chosen.backend.close()


def test_tensorrt_int8_builds_from_the_calibrated_qdq_onnx(jetson, store, nanodet, reference, photos, tmp_path: Path) -> None:
    from edgewatch.backends.tensorrt import TensorRtBackend, TensorRtConfig

    backend = TensorRtBackend(TensorRtConfig(precision="int8", engine_dir=tmp_path / "engines"))
    variant = backend.pick_variant(nanodet)
    assert variant == "int8"
    backend.load(store.path(nanodet, variant), nanodet, variant)
    assert jetson.flags == {"INT8", "FP16"}
    backend.close()
    suite = Conformance(lambda: TensorRtBackend(TensorRtConfig(precision="int8", engine_dir=tmp_path / "engines")),
                        store.path(nanodet, "int8"), nanodet, "int8", reference, photos)
    assert suite.check_agreement()
    assert any(p.name.endswith("_int8.engine") for p in (tmp_path / "engines").iterdir())
