"""The face endpoints (CodeProject.AI's /v1/vision/face API) on real photos, through the daemon's
app: detect, match, register (image and image1..N), recognize, list, delete, and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from litestar.testing import TestClient

from edgewatch.daemon.app import create_app
from edgewatch.daemon.config import load_settings
from edgewatch.models import installer
from edgewatch.models.photos import ensure_face_photos, ensure_photos
from edgewatch.models.store import ModelStore
from scratch import scratch_dir

pytestmark = pytest.mark.slow

FACES = "FaceProcessingEdgewatch"


@pytest.fixture(scope="module")
def faces_data_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    data = scratch_dir(request, tmp_path_factory, "faces-data")
    store = ModelStore(data / "models")
    for name in ("centerface", "mobilefacenet"):
        installer.install(name, store, cache_dir)
    return data


@pytest.fixture(scope="module")
def photos(cache_dir: Path) -> dict[str, bytes]:
    faces = {n: p.read_bytes() for n, p in ensure_face_photos(cache_dir).items()}
    return faces | {n: p.read_bytes() for n, p in ensure_photos(cache_dir, ["bus", "coffee"]).items()}


@pytest.fixture()
def client(faces_data_dir: Path, cache_dir: Path, tmp_path: Path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(faces_data_dir, data)
    with TestClient(create_app(load_settings(data_dir=data, cache_dir=cache_dir))) as c:
        yield c


def post(client: TestClient, command: str, files=None, data=None):
    return client.post(f"/v1/vision/face/{command}" if command else "/v1/vision/face", files=files, data=data)


def test_detect_finds_every_face_of_a_group_photo(client: TestClient, photos) -> None:
    body = post(client, "", files={"image": photos["group5"]}).json()
    assert body["success"] and body["moduleId"] == FACES and body["command"] == "detect"
    assert body["count"] == len(body["predictions"]) == 5 and {p["label"] for p in body["predictions"]} == {"face"}
    assert all(0 < p["confidence"] <= 1 and p["x_min"] < p["x_max"] and p["y_min"] < p["y_max"]
               for p in body["predictions"])
    none = post(client, "", files={"image": photos["coffee"]}).json()  # a cup of coffee: no face
    assert none["success"] and none["predictions"] == [] and none["message"] == "No faces found"


def test_register_then_recognize_the_same_person_from_another_photo(client: TestClient, photos) -> None:
    r = post(client, "register", files={"image": photos["obama"]}, data={"userid": "Barack"})
    assert r.status_code == 200, r.text
    assert r.json()["success"] and "1 face(s) registered for 'Barack'" in r.json()["message"]
    # image1..imageN as well as image
    r = post(client, "register", files={"image1": photos["biden"]}, data={"userid": "Joe 🇺🇸"})
    assert r.json()["success"]
    assert post(client, "list").json()["faces"] == ["Barack", "Joe 🇺🇸"]
    for photo in ("obama2", "obama3"):
        got = post(client, "recognize", files={"image": photos[photo]}).json()
        assert got["success"] and [p["userid"] for p in got["predictions"]] == ["Barack"], got
    # someone never registered comes back unknown
    group = post(client, "recognize", files={"image": photos["group1"]}).json()
    assert group["predictions"] and {p["userid"] for p in group["predictions"]} == {"unknown"}
    assert post(client, "delete", data={"userid": "Barack"}).json()["success"]
    assert post(client, "list").json()["faces"] == ["Joe 🇺🇸"]
    gone = post(client, "recognize", files={"image": photos["obama2"]}).json()
    assert [p["userid"] for p in gone["predictions"]] == ["unknown"]


def test_match_is_high_for_one_person_and_low_for_two(client: TestClient, photos) -> None:
    same = post(client, "match", files={"image1": photos["obama"], "image2": photos["obama3"]}).json()
    other = post(client, "match", files={"image1": photos["obama"], "image2": photos["biden"]}).json()
    assert same["success"] and other["success"] and same["command"] == "match"
    assert same["similarity"] > 0.55 > other["similarity"]


@pytest.mark.parametrize("command, files, data, status, words", [
    ("register", {"image": "obama"}, {}, 400, "non-empty 'userid'"),
    ("register", {"image": "obama"}, {"userid": "x" * 300}, 400, "at most 256"),
    ("register", {}, {"userid": "nobody"}, 400, "no image to register"),
    ("register", {"image": "coffee"}, {"userid": "nobody"}, 400, "no face found in image 1"),
    ("delete", None, {"userid": "nobody"}, 404, "no registered user 'nobody'"),
    ("delete", None, {}, 400, "send the 'userid'"),
    ("match", {"image1": "obama"}, {}, 400, "missing: image2"),
    ("recognize", {"image": "truncated"}, {}, 400, "truncated"),
])
def test_bad_input_gets_a_clear_error_and_nothing_is_stored(client: TestClient, photos, command, files, data,
                                                           status, words) -> None:
    blobs = {**photos, "truncated": photos["obama"][: len(photos["obama"]) // 2]}
    r = post(client, command, files={k: blobs[v] for k, v in (files or {}).items()} or None, data=data)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["success"] is False and words in body["error"] and body["moduleId"] == FACES
    assert post(client, "list").json()["faces"] == []


def test_a_photo_with_several_faces_registers_the_largest(client: TestClient, photos) -> None:
    r = post(client, "register", files={"image": photos["group5"]}, data={"userid": "someone"})
    assert r.status_code == 200 and "1 face(s) registered" in r.json()["message"]


def test_settings_and_status_of_the_faces_module(client: TestClient) -> None:
    modules = {m["moduleId"]: m for m in client.get("/v1/status/version").json()["modules"]}
    assert modules[FACES]["ready"] and "centerface + mobilefacenet" in modules[FACES]["summary"]
    r = client.post(f"/v1/settings/{FACES}", data={"name": "recognition_threshold", "value": "0.6"})
    assert r.status_code == 200 and r.json()["settings"]["recognition_threshold"] == 0.6
    assert client.post(f"/v1/settings/{FACES}", data={"name": "detector", "value": "nope"}).status_code == 404


def test_without_face_models_the_endpoints_say_what_to_install(data_dir: Path, cache_dir: Path, photos) -> None:
    with TestClient(create_app(load_settings(data_dir=data_dir, cache_dir=cache_dir))) as client:
        r = post(client, "", files={"image": photos["obama"]})
        assert r.status_code == 503 and "edgewatch models install centerface" in r.json()["error"]
        status = {m["moduleId"]: m for m in client.get("/v1/status/version").json()["modules"]}[FACES]
        assert not status["ready"] and "centerface mobilefacenet" in status["summary"]
        assert client.post("/v1/vision/detection", files={"image": photos["bus"]}).json()["success"]


def test_no_acknowledged_registration_is_lost_when_the_daemon_is_killed(faces_data_dir: Path, cache_dir: Path,
                                                                        tmp_path: Path, photos) -> None:
    """Register through the real daemon while SIGKILLing it at random moments, five times: every
    registration it answered 200 for is in the store afterwards, and the store is consistent."""
    import random
    import shutil
    import threading
    import time

    import httpx

    from edgewatch.daemon.modules.faces.store import FaceStore
    from edgewatch.daemon.testing.daemon_process import DaemonProcess

    data = tmp_path / "data"
    shutil.copytree(faces_data_dir, data)
    acknowledged: list[str] = []
    rng = random.Random(15)
    for round_ in range(5):
        daemon = DaemonProcess(data, cache_dir)
        daemon.start(timeout=60)

        def register_until_killed() -> None:
            with httpx.Client(base_url=daemon.url, timeout=30) as client:
                for i in range(10_000):
                    userid = f"r{round_}-{i}"
                    try:
                        r = client.post("/v1/vision/face/register", files={"image": photos["obama"]},
                                        data={"userid": userid})
                    except httpx.TransportError:
                        return  # killed mid-request: not acknowledged
                    if r.status_code == 200:
                        acknowledged.append(userid)
                        registering.set()

        registering = threading.Event()
        writer = threading.Thread(target=register_until_killed)
        writer.start()
        registering.wait(60)  # the clock starts at the first registration, however slow the box
        time.sleep(rng.uniform(0.8, 2.5))
        daemon.kill()
        writer.join(30)
        store = FaceStore(data / "faces.db")
        stored, check = set(store.userids()), store.check()
        store.close()
        assert check["integrity"] == "ok" and check["orphan_faces"] == 0
        lost = [u for u in acknowledged if u not in stored]
        assert not lost, f"round {round_}: answered 200 but not stored: {lost[:5]}"
    assert len(acknowledged) >= 10  # the daemon really registered between the kills


def test_mqtt_jobs_detect_and_recognize_faces(client: TestClient, photos) -> None:
    """edgewatch/jobs/face and edgewatch/jobs/face/recognize: the image as payload, the answer the
    same envelope as REST (the broker side of the link is tested with mosquitto in tests/mqtt)."""
    import asyncio
    import json

    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from edgewatch.daemon.mqtt.link import MqttLink

    assert post(client, "register", files={"image": photos["obama"]}, data={"userid": "Barack"}).json()["success"]
    services = client.app.state.services
    link = MqttLink(services.config, services.modules, services.queue, asyncio.new_event_loop())
    topics = {topic for topic, _ in link._subscriptions}
    assert {"$share/edgewatch/edgewatch/jobs/face", "$share/edgewatch/edgewatch/jobs/face/recognize"} <= topics
    published: list[tuple[str, dict]] = []
    link.client.publish = lambda topic, body, **kw: published.append((topic, json.loads(body)))

    def job(command: str, payload: bytes) -> dict:
        msg = mqtt.MQTTMessage(topic=f"edgewatch/jobs/{command}".encode())
        msg.payload = payload
        msg.properties = Properties(PacketTypes.PUBLISH)
        msg.properties.ResponseTopic = "replies/faces"
        asyncio.run(link._job(command, msg))
        return [body for topic, body in published if topic == "replies/faces"][-1]

    found = job("face", photos["group5"])
    assert found["success"] and found["command"] == "detect" and found["count"] == 5
    who = job("face/recognize", photos["obama2"])
    assert who["success"] and who["command"] == "recognize" and [p["userid"] for p in who["predictions"]] == ["Barack"]
    bad = job("face/recognize", b"not an image")
    assert bad["success"] is False and bad["code"] == 400 and bad["moduleId"] == FACES
