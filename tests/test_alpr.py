"""/v1/vision/alpr and /v1/image/alpr on real plate photos and on plates rendered onto them, through
the daemon's app: every real plate found and read, many rendered texts and sizes read, no plates
where there are none, CodeProject.AI's answer shape, settings, bad input; and the pieces
(the CTC decoder, two-row plates, normalisation) on their own."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from litestar.testing import TestClient
from rapidfuzz.distance import Levenshtein

from edgewatch.daemon.app import create_app
from edgewatch.daemon.config import load_settings
from edgewatch.daemon.testing.plate_scene import rendered_plates, score
from edgewatch.models import installer
from edgewatch.models.photos import FACE_PHOTOS, PLATE_PHOTOS, ensure_face_photos, ensure_photos, ensure_plate_photos
from edgewatch.models.runtime.heads import decode_ctc
from edgewatch.models.runtime.plates import normalise_plate, plate_lines
from edgewatch.models.store import ModelStore
from scratch import scratch_dir

MODULE = "ALPREdgewatch"
MODELS = ("plate-detector", "ppocr-rec")


def iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def box(p: dict) -> tuple[int, int, int, int]:
    return p["x_min"], p["y_min"], p["x_max"], p["y_max"]


@pytest.fixture(scope="module")
def client(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, cache_dir: Path):
    data = scratch_dir(request, tmp_path_factory, "alpr-data")
    store = ModelStore(data / "models")
    for name in MODELS:
        installer.install(name, store, cache_dir)
    with TestClient(create_app(load_settings(data_dir=data, cache_dir=cache_dir))) as c:
        yield c


def read(client: TestClient, image: bytes, route: str = "/v1/vision/alpr", **data: str) -> dict:
    body = client.post(route, files={"upload": image}, data=data).json()
    assert body["success"], body
    return body


@pytest.mark.slow
def test_every_real_plate_is_found_and_read(client: TestClient, cache_dir: Path) -> None:
    distances = []
    for name, path in ensure_plate_photos(cache_dir).items():
        body = read(client, path.read_bytes())
        assert body["moduleId"] == MODULE and body["command"] == "alpr" and body["code"] == 200
        assert body["count"] == len(body["predictions"]) == len(PLATE_PHOTOS[name].plates), body
        assert 0 < body["inferenceMs"] <= body["processMs"]
        for truth in PLATE_PHOTOS[name].plates:
            match = max(body["predictions"], key=lambda p: iou(box(p), truth.box))
            assert iou(box(match), truth.box) >= 0.6, (truth, match)
            assert match["label"] == f"Plate: {match['plate']}" and 0.7 <= match["confidence"] <= 1
            assert match["confidence"] == match["ocr_confidence"] and 0.1 <= match["plate_confidence"] <= 1
            distances.append((Levenshtein.distance(match["plate"], truth.text), truth.text, match["plate"]))
    # measured: three exact, the scooter's small two-row plate MH12SW5901 read MH12SH5901
    assert sum(d == 0 for d, *_ in distances) >= 3 and max(d for d, *_ in distances) <= 1, distances
    legacy = read(client, ensure_plate_photos(cache_dir)["two_cars"].read_bytes(), route="/v1/image/alpr")
    assert sorted(p["plate"] for p in legacy["predictions"]) == ["MLB803", "NO23456"]
    assert legacy["message"].startswith("Found 2 plates: ")


@pytest.mark.slow
def test_rendered_plates_of_many_texts_and_sizes_are_read(client: TestClient, cache_dir: Path) -> None:
    module = client.app.state.services.modules[MODULE]
    cases = rendered_plates(cache_dir, 48, seed=7) + rendered_plates(cache_dir, 48, seed=8)
    answers = []
    for image, _ in cases:
        plates, _ = module.read(image)
        answers.append([(p.text, p.box) for p in plates if module.accepted(p, module.settings.min_confidence)])
    result = score(answers, [truth for _, truth in cases])
    # measured here: found 91 of 96, 80 of them exact, 98 % of characters right; the misses are
    # the smallest plates (under ~50 px wide), the wrong readings mostly one character (B/8, O/0)
    assert result.found >= 0.8 * result.plates, result
    assert result.exact >= 0.75 * result.found and result.char_accuracy >= 0.93, result


@pytest.mark.slow
def test_no_plates_where_there_are_none(client: TestClient, cache_dir: Path) -> None:
    photos = {**ensure_photos(cache_dir), **ensure_face_photos(cache_dir)}
    assert len(photos) == 6 + len(FACE_PHOTOS)
    for name, path in photos.items():
        body = read(client, path.read_bytes())
        assert body["predictions"] == [] and body["count"] == 0 and body["message"].startswith("No plates found"), (
            name, body["predictions"])


@pytest.mark.slow
def test_settings_and_min_confidence_decide_what_is_answered(client: TestClient, cache_dir: Path) -> None:
    settings = f"/v1/settings/{MODULE}"
    bus = ensure_photos(cache_dir, ["bus"])["bus"].read_bytes()
    cars = ensure_plate_photos(cache_dir)["two_cars"].read_bytes()
    try:
        # the bus's "cero emisiones" lettering looks like a plate and reads well, but has no digit
        assert read(client, bus)["count"] == 0
        assert client.post(settings, data={"name": "require_digit", "value": "false"}).status_code == 200
        assert [p["plate"] for p in read(client, bus)["predictions"]] == ["EMISIONES"]
        # the parked car's plates read at about 0.96, the two cars' rendered ones at 0.99: a threshold between
        parked = ensure_plate_photos(cache_dir)["parked_car"].read_bytes()
        lower = max(p["confidence"] for p in read(client, parked)["predictions"])
        upper = min(p["confidence"] for p in read(client, cars)["predictions"])
        assert lower < upper, (lower, upper)
        between = str((lower + upper) / 2)
        assert read(client, cars, min_confidence=between)["count"] == 2
        sure = read(client, parked, min_confidence=between)
        assert sure["count"] == 0 and "(2 more plate-like regions not read with confidence)" in sure["message"]
        # a detector working at 640 px no longer sees the scooter's small plate (38 px high at 1280)
        assert client.post(settings, data={"name": "max_side", "value": "640"}).status_code == 200
        (big,) = read(client, parked)["predictions"]
        assert iou(box(big), PLATE_PHOTOS["parked_car"].plates[0].box) >= 0.6
        assert client.post(settings, data={"name": "max_side", "value": "100"}).status_code == 400
        wrong = client.post(settings, data={"name": "ocr", "value": "plate-detector"})
        assert wrong.status_code == 404 and "not a text_recognition model" in wrong.json()["error"]
        missing = client.post(settings, data={"name": "detector", "value": "nosuchmodel"})
        assert missing.status_code == 404 and "edgewatch models install nosuchmodel" in missing.json()["error"]
    finally:
        for name, value in (("require_digit", "true"), ("max_side", "1280")):
            client.post(settings, data={"name": name, "value": value})
    assert read(client, cars)["count"] == 2


@pytest.mark.slow
def test_bad_input_gets_a_clear_4xx_and_the_daemon_keeps_serving(client: TestClient, cache_dir: Path) -> None:
    from test_background import oversized_png

    cars = ensure_plate_photos(cache_dir)["two_cars"].read_bytes()
    cases = [
        ({"data": {"min_confidence": "0.5"}}, 400, "no 'upload' file"),
        ({"files": {"upload": ("notes.txt", b"not an image at all", "text/plain")}}, 400, "not an image format"),
        ({"files": {"upload": ("huge.png", oversized_png(10_000, 5_000), "image/png")}}, 400, "over the limit"),
        ({"files": {"upload": cars}, "data": {"min_confidence": "high"}}, 400, "min_confidence must be a number"),
        ({"files": {"upload": cars}, "data": {"min_confidence": "1.5"}}, 400, "min_confidence must be between"),
        ({"content": cars, "headers": {"content-type": "image/jpeg"}}, 415, "multipart/form-data"),
    ]
    for route in ("/v1/vision/alpr", "/v1/image/alpr"):
        for kwargs, status, words in cases:
            response = client.post(route, **kwargs)
            body = response.json()
            assert response.status_code == status and body["code"] == status, (words, body)
            assert body["success"] is False and body["moduleId"] == MODULE and words in body["error"], body["error"]
            assert body["predictions"] == [] and body["count"] == 0
    # a client that names the part "image" (as for detection) is read too
    assert client.post("/v1/vision/alpr", files={"image": cars}).json()["count"] == 2


def test_without_the_models_the_answer_says_what_to_install(tmp_path: Path, cache_dir: Path) -> None:
    with TestClient(create_app(load_settings(data_dir=tmp_path, cache_dir=cache_dir))) as client:
        _, jpeg = cv2.imencode(".jpg", np.full((64, 64, 3), 128, np.uint8))
        response = client.post("/v1/vision/alpr", files={"upload": jpeg.tobytes()})
        body = response.json()
        assert response.status_code == 503 and body["success"] is False
        assert "edgewatch models install plate-detector" in body["error"]
        (status,) = [m for m in client.get("/v1/status/version").json()["modules"] if m["moduleId"] == MODULE]
        assert status["ready"] is False and "edgewatch models install plate-detector ppocr-rec" in status["summary"]


def test_ctc_decoding_merges_repeats_and_drops_blanks() -> None:
    steps = [0, 3, 3, 0, 3, 5, 5, 0, 0, 2]  # "a a b c" with blanks between the two a's
    probs = np.full((1, len(steps), 6), 0.01, np.float32)
    probs[0, np.arange(len(steps)), steps] = np.linspace(0.6, 0.95, len(steps))
    (indices, p), = decode_ctc([probs])
    assert indices.tolist() == [3, 3, 5, 2]
    assert p.tolist() == pytest.approx([probs[0, 1, 3], probs[0, 4, 3], probs[0, 5, 5], probs[0, 9, 2]])


def test_plate_text_is_normalised_to_letters_and_digits() -> None:
    assert normalise_plate("mh 14-cs·1938") == "MH14CS1938"
    assert normalise_plate("苏E05EV8") == "E05EV8"  # a Chinese province character is dropped
    assert normalise_plate("ＡＢ１２") == "AB12"   # full-width forms folded
    assert normalise_plate("") == ""


def test_a_two_row_plate_is_read_as_two_lines_top_first() -> None:
    plate = np.full((200, 220, 3), 255, np.uint8)
    cv2.putText(plate, "AB12", (10, 85), cv2.FONT_HERSHEY_DUPLEX, 2.5, (0, 0, 0), 5)
    cv2.putText(plate, "C345", (10, 185), cv2.FONT_HERSHEY_DUPLEX, 2.5, (0, 0, 0), 5)
    square = np.float32([[0, 0], [219, 0], [219, 199], [0, 199]])
    top, bottom = plate_lines(plate, square)
    assert top.shape[0] == bottom.shape[0] == 48
    ink = lambda strip: (strip < 128).mean()  # noqa: E731
    assert ink(top) > 0.05 and ink(bottom) > 0.05
    wide = np.float32([[0, 0], [219, 0], [219, 59], [0, 59]])
    (line,) = plate_lines(plate, wide)
    assert line.shape[0] == 48 and line.shape[1] > 3 * 48


@pytest.mark.slow
def test_mqtt_jobs_read_plates(client: TestClient, cache_dir: Path) -> None:
    """edgewatch/jobs/alpr: the image as payload, min_confidence a user property, the answer the same
    envelope as REST (the broker side of the link is tested with mosquitto in tests/mqtt)."""
    import asyncio
    import json

    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from edgewatch.daemon.mqtt.link import MqttLink

    services = client.app.state.services
    link = MqttLink(services.config, services.modules, services.queue, asyncio.new_event_loop())
    assert "$share/edgewatch/edgewatch/jobs/alpr" in {topic for topic, _ in link._subscriptions}
    published: list[tuple[str, dict]] = []
    link.client.publish = lambda topic, body, **kw: published.append((topic, json.loads(body)))

    def job(payload: bytes, **user: str) -> dict:
        msg = mqtt.MQTTMessage(topic=b"edgewatch/jobs/alpr")
        msg.payload = payload
        msg.properties = Properties(PacketTypes.PUBLISH)
        msg.properties.ResponseTopic = "replies/plates"
        msg.properties.UserProperty = list(user.items())
        asyncio.run(link._job("alpr", msg))
        return [body for topic, body in published if topic == "replies/plates"][-1]

    cars = ensure_plate_photos(cache_dir)["two_cars"].read_bytes()
    found = job(cars)
    assert found["success"] and found["command"] == "alpr" and sorted(p["plate"] for p in found["predictions"]) == [
        "MLB803", "NO23456"]
    assert job(cars, min_confidence="1.5")["code"] == 400
    bad = job(b"not an image")
    assert bad["success"] is False and bad["code"] == 400 and bad["moduleId"] == MODULE
