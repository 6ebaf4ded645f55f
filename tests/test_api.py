"""The CodeProject.AI-compatible API against real models on real photos, in-process."""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from litestar.testing import TestClient
from PIL import Image

from edgewatch.backends.registry import BACKENDS, order, probe_all
from edgewatch.daemon.app import create_app
from edgewatch.daemon.config import load_settings
from edgewatch.daemon.modules.detection import MODULE_ID
from edgewatch.models.store import ModelStore

ENVELOPE = {"success", "message", "predictions", "count", "inferenceMs", "processMs", "moduleId", "moduleName",
            "command", "executionProvider", "canUseGPU", "analysisRoundTripMs"}


def make_client(data_dir: Path, cache_dir: Path, **overrides) -> TestClient:
    config = load_settings(data_dir=data_dir, cache_dir=cache_dir, **overrides)
    return TestClient(create_app(config))


@pytest.fixture()
def client(data_dir: Path, cache_dir: Path):
    with make_client(data_dir, cache_dir, server={"max_body_bytes": 2_000_000, "max_image_pixels": 5_000_000}) as c:
        yield c


def _multipart(parts: list[tuple[str, str | None, str | None, bytes]], boundary: str = "XyZ123") -> tuple[bytes, str]:
    """A body built by hand, to control filename/content-type presence exactly as clients do."""
    out = b""
    for name, filename, ctype, data in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        out += f"--{boundary}\r\nContent-Disposition: {disp}\r\n".encode()
        if ctype:
            out += f"Content-Type: {ctype}\r\n".encode()
        out += b"\r\n" + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return out, f"multipart/form-data; boundary={boundary}"


def post_raw(client: TestClient, path: str, parts, **kw):
    body, ctype = _multipart(parts)
    return client.post(path, content=body, headers={"content-type": ctype}, **kw)


def expected_backend(data_dir: Path, notes: list[str], model: str = "nanodet") -> str:
    """The backend the registry's rules pick for ``model`` on this machine, whatever it is (a PC, an
    RK3588, a Pi with a Coral): the first in probe order that probes available here, has a variant
    of the model and did not fail to load (the daemon notes each one it skipped, and why)."""
    probes, manifest = probe_all(), ModelStore(data_dir / "models").get(model)
    return next(cls.type_key for cls in order("auto", manifest)
                if probes[cls.type_key].available and cls().pick_variant(manifest) is not None
                and not any(n.startswith(f"{cls.type_key} failed to load") for n in notes))


def check_inference_summary(summary: dict, data_dir: Path) -> None:
    """What the daemon says about backends is what the probe says here, and it runs the one the
    registry's rules pick, reporting that backend's execution provider."""
    probes = probe_all()
    assert [b["type"] for b in summary["backends"]] == list(probes) == list(BACKENDS)
    assert {b["type"]: (b["available"], b["reason"]) for b in summary["backends"]} == {
        k: (p.available, p.reason) for k, p in probes.items()}
    assert summary["active"] == expected_backend(data_dir, summary["notes"], summary["model"]), summary
    assert summary["executionProvider"] == BACKENDS[summary["active"]]().execution_provider


def by_label(preds: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for p in preds:
        out.setdefault(p["label"], []).append(p)
    return out


def test_bus_photo_real_detections(client: TestClient, photo_bytes: dict[str, bytes], data_dir: Path) -> None:
    r = client.post("/v1/vision/detection", files={"image": ("bus.jpg", photo_bytes["bus"], "image/jpeg")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert ENVELOPE <= body.keys() and body["success"] is True
    assert body["command"] == "detect" and body["moduleId"] == MODULE_ID
    summary = client.get("/v1/status/version").json()["inference"]
    active = expected_backend(data_dir, summary["notes"], summary["model"])
    assert body["executionProvider"] == BACKENDS[active]().execution_provider  # what really ran it
    assert body["count"] == len(body["predictions"]) > 0
    labels = by_label(body["predictions"])
    # bus.jpg (810x1080): a bus across the middle, people standing in front of it on the left
    bus = labels["bus"][0]
    assert bus["x_min"] < 60 and bus["x_max"] > 760 and 180 < bus["y_min"] < 280 and 700 < bus["y_max"] < 800
    assert len(labels["person"]) >= 2
    left = min(labels["person"], key=lambda p: p["x_min"])
    assert left["x_min"] < 80 and left["y_min"] > 350 and left["y_max"] > 850
    for p in body["predictions"]:
        assert all(isinstance(p[k], int) for k in ("x_min", "y_min", "x_max", "y_max"))
        assert 0 <= p["x_min"] < p["x_max"] <= 809 and 0 <= p["y_min"] < p["y_max"] <= 1079
        assert 0.4 <= p["confidence"] <= 1
    confs = [p["confidence"] for p in body["predictions"]]
    assert confs == sorted(confs, reverse=True)
    assert body["inferenceMs"] <= body["processMs"] <= body["analysisRoundTripMs"] + 1


@pytest.mark.parametrize("photo, label", [("astronaut", "person"), ("chelsea", "cat"), ("motorcycle", "motorcycle")])
def test_other_photos(client: TestClient, photo_bytes: dict[str, bytes], photo: str, label: str) -> None:
    r = client.post("/v1/vision/detection", files={"image": (f"{photo}.png", photo_bytes[photo], "image/png")})
    assert r.status_code == 200
    assert r.json()["predictions"][0]["label"] == label


def test_clients_as_they_really_post(client: TestClient, photo_bytes: dict[str, bytes]) -> None:
    """Frigate/requests: filename 'image', no content type, api_key field first; HA: min_confidence as text."""
    jpeg = photo_bytes["bus"]
    frigate = post_raw(client, "/v1/vision/detection", [("api_key", None, None, b""), ("image", "image", None, jpeg)])
    no_name = post_raw(client, "/v1/vision/detection", [("image", None, None, jpeg)])
    ha = post_raw(client, "/v1/vision/detection", [("image", "image", None, jpeg), ("api_key", None, None, b"k"),
                                                    ("min_confidence", None, None, b"0.1")])
    other_name = post_raw(client, "/v1/vision/detection", [("upload", "snap.jpg", "image/jpeg", jpeg)])
    for r in (frigate, no_name, ha, other_name):
        assert r.status_code == 200, r.text
        assert r.json()["success"] is True and r.json()["count"] > 0
    assert ha.json()["count"] >= frigate.json()["count"]
    assert min(p["confidence"] for p in ha.json()["predictions"]) < 0.4  # 0.1 honoured


def test_min_confidence_from_query_and_threshold(client: TestClient, photo_bytes: dict[str, bytes]) -> None:
    high = client.post("/v1/vision/detection?min_confidence=0.8", files={"image": photo_bytes["bus"]}).json()
    assert all(p["confidence"] >= 0.8 for p in high["predictions"])
    low = client.post("/v1/vision/detection", data={"min_confidence": "0.2"}, files={"image": photo_bytes["bus"]}).json()
    assert low["count"] > high["count"]


def test_legacy_label_setting_and_persistence(data_dir: Path, cache_dir: Path, photo_bytes) -> None:
    with make_client(data_dir, cache_dir) as c:
        r = c.post(f"/v1/settings/{MODULE_ID}", data={"name": "label_style", "value": "legacy"})
        assert r.status_code == 200 and r.json()["settings"]["label_style"] == "legacy"
        labels = [p["label"] for p in c.post("/v1/vision/detection", files={"image": photo_bytes["motorcycle"]}).json()["predictions"]]
        assert "motorbike" in labels and "motorcycle" not in labels
        c.post(f"/v1/settings/{MODULE_ID}", data={"name": "min_confidence", "value": "0.7"})
    with make_client(data_dir, cache_dir) as c:  # a restart keeps both
        s = c.get(f"/v1/settings/{MODULE_ID}").json()["settings"]
        assert s["label_style"] == "legacy" and s["min_confidence"] == 0.7
        preds = c.post("/v1/vision/detection", files={"image": photo_bytes["bus"]}).json()["predictions"]
        assert all(p["confidence"] >= 0.7 for p in preds)


def test_settings_change_model_reloads_without_restart(client: TestClient, photo_bytes) -> None:
    r = client.post(f"/v1/settings/{MODULE_ID}", json={"model": "centernet"})
    assert r.status_code == 200, r.text
    coffee = client.post("/v1/vision/detection", files={"image": photo_bytes["coffee"]}).json()
    assert coffee["predictions"][0]["label"] == "cup"  # CenterNet sees the cup NanoDet calls a table
    for bad, status in ((("model", "nope"), 404), (("min_confidence", "2"), 400), (("colour", "red"), 400),
                        (("backend", "npu"), 400)):
        r = client.post(f"/v1/settings/{MODULE_ID}", data={"name": bad[0], "value": bad[1]})
        assert r.status_code == status and r.json()["success"] is False and r.json()["error"]
    assert client.get("/v1/settings/NoSuchModule").status_code == 404


def test_custom_models_list_and_presets(client: TestClient, photo_bytes) -> None:
    listing = client.post("/v1/vision/custom/list").json()
    assert listing["success"] and {"nanodet", "centernet", "ipcam-general", "ipcam-animal",
                                   "ipcam-dark", "ipcam-combined"} <= set(listing["models"])
    animal = client.post("/v1/vision/custom/ipcam-animal", files={"image": photo_bytes["bus"]}).json()
    assert animal["success"] and animal["command"] == "custom"
    assert all(p["label"] in {"bird", "cat", "dog", "horse", "sheep", "cow", "bear"} for p in animal["predictions"])
    general = client.post("/v1/vision/custom/ipcam-general", files={"image": photo_bytes["bus"]}).json()
    assert {"person", "bus"} <= {p["label"] for p in general["predictions"]}
    cn = client.post("/v1/vision/custom/centernet", files={"image": photo_bytes["coffee"]}).json()
    assert cn["predictions"][0]["label"] == "cup"


def _png_bytes(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (w, h)).save(buf, "PNG")
    return buf.getvalue()


BAD_INPUTS = [
    ("no image field", lambda p: [("min_confidence", None, None, b"0.5")], 400, "no 'image'"),
    ("empty file", lambda p: [("image", "a.jpg", "image/jpeg", b"")], 400, "empty"),
    ("not an image", lambda p: [("image", "a.jpg", "image/jpeg", b"GIF? no, plain text " * 20)], 400, "not an image"),
    ("truncated jpeg", lambda p: [("image", "a.jpg", "image/jpeg", p["bus"][: len(p["bus"]) // 2])], 400, "truncated"),
    ("decompression bomb", lambda p: [("image", "b.png", "image/png", _png_bytes(3000, 2000))], 400, "over the limit"),
    ("confidence not a number", lambda p: [("image", "a.jpg", None, p["bus"]), ("min_confidence", None, None, b"high")], 400, "min_confidence"),
    ("confidence above 1", lambda p: [("image", "a.jpg", None, p["bus"]), ("min_confidence", None, None, b"1.5")], 400, "between 0 and 1"),
    ("confidence NaN", lambda p: [("image", "a.jpg", None, p["bus"]), ("min_confidence", None, None, b"nan")], 400, "between 0 and 1"),
]


@pytest.mark.parametrize("case, parts, status, words", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_clear_json_error_and_still_serving(client: TestClient, photo_bytes, case, parts, status, words) -> None:
    r = post_raw(client, "/v1/vision/detection", parts(photo_bytes))
    assert r.status_code == status, r.text
    body = r.json()
    assert body["success"] is False and words in body["error"] and body["predictions"] == [] and body["count"] == 0
    ok = client.post("/v1/vision/detection", files={"image": photo_bytes["chelsea"]})
    assert ok.status_code == 200 and ok.json()["success"]


def test_body_over_limit_is_413(client: TestClient) -> None:
    r = post_raw(client, "/v1/vision/detection", [("image", "big.jpg", "image/jpeg", b"\xff" * 2_100_000)])
    assert r.status_code == 413 and r.json()["success"] is False and "too large" in r.json()["error"]


def test_not_multipart_and_malformed_multipart(client: TestClient) -> None:
    r = client.post("/v1/vision/detection", content=b"raw", headers={"content-type": "application/octet-stream"})
    assert r.status_code == 400 and "no 'image'" in r.json()["error"]
    r = client.post("/v1/vision/detection", content=b"--zz\r\ngarbage", headers={"content-type": "multipart/form-data; boundary=zz"})
    assert r.status_code == 400 and r.json()["success"] is False


@pytest.mark.parametrize("name, status", [("nosuchmodel", 404), ("a..b", 400), ("UPPER", 400),
                                          ("%2e%2e", 400), ("..%2Fetc", 404)])
def test_custom_model_names(client: TestClient, photo_bytes, name: str, status: int) -> None:
    r = client.post(f"/v1/vision/custom/{name}", files={"image": photo_bytes["chelsea"]})
    assert r.status_code == status, r.text
    assert r.json()["success"] is False and r.json()["error"]


def test_queue_full_is_503_with_retry_after(data_dir: Path, cache_dir: Path, photo_bytes,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """One worker, one place in the queue: while a request is inside the inference, the next one is
    refused by the queue's own admission check with 503 and Retry-After, and served once it is free."""
    with make_client(data_dir, cache_dir, inference={"workers": 1, "queue_size": 1},
                     detection={"model": "nanodet"}) as client:
        backend = client.app.state.services.modules[MODULE_ID].detector("nanodet").backend  # loaded at start-up
        inside, release = threading.Event(), threading.Event()
        real_infer = backend.infer

        def held_infer(batch):  # the real inference, held until the test lets it go
            inside.set()
            assert release.wait(60), "the test never released the inference"
            return real_infer(batch)

        monkeypatch.setattr(backend, "infer", held_infer)
        image = {"image": photo_bytes["chelsea"]}
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(client.post, "/v1/vision/detection", files=image)
            try:
                assert inside.wait(30), "the first request never reached the inference"
                refused = client.post("/v1/vision/detection", files=image)
            finally:
                release.set()
            served = first.result(60)
        assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 1, refused.text
        assert refused.json()["success"] is False and "retry" in refused.json()["error"]
        assert served.status_code == 200 and served.json()["success"] is True
        assert served.json()["predictions"][0]["label"] == "cat"
        inside.clear()  # the queue has room again: the next request is served at once
        again = client.post("/v1/vision/detection", files=image)
        assert again.status_code == 200 and inside.is_set()


def test_status_log_and_schema(client: TestClient, data_dir: Path) -> None:
    assert client.get("/v1/status/ping").json()["success"] is True
    v = client.get("/v1/status/version").json()
    assert v["success"] and {"major", "minor", "patch"} <= v["version"].keys()
    check_inference_summary(v["inference"], data_dir)
    assert client.get(f"/v1/settings/{MODULE_ID}").json()["inference"] == v["inference"]
    u = client.get("/v1/status/updateavailable").json()
    assert u["success"] is True and u["updateAvailable"] is False and "cannot check" in u["message"]
    b = client.get("/v1/status/backends").json()
    assert b["success"] and {k: b[k] for k in v["inference"]} == v["inference"]
    entries = client.get("/v1/log/list?count=5").json()["entries"]
    assert entries and len(entries) <= 5 and any("backend" in e["entry"] or "loaded" in e["entry"] for e in entries)
    later = client.get(f"/v1/log/list?last_id={entries[0]['id']}&count=1000").json()["entries"]
    assert all(e["id"] > entries[0]["id"] for e in later)
    bad = client.get("/v1/log/list?count=lots")
    assert bad.status_code == 400 and bad.json()["success"] is False
    schema = client.get("/schema/openapi.json").json()
    assert "/v1/vision/detection" in schema["paths"]
    assert "image" in schema["paths"]["/v1/vision/detection"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    nf = client.get("/v1/nothing")
    assert nf.status_code == 404 and nf.json()["success"] is False


def test_swagger_ui_works_offline(client: TestClient) -> None:
    """The docs page loads Swagger UI from the daemon itself, never from a CDN the box cannot reach."""
    import re

    page = client.get("/schema/swagger")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    urls = re.findall(r"""(?:src|href)=["']([^"']+)""", page.text)
    assert not re.findall(r"https?://", page.text.split("SwaggerUIBundle(")[0]), "the page head loads from the internet"
    assert any(u.endswith("swagger-ui-bundle.js") for u in urls), urls
    for url in urls:
        assert url.startswith("/"), f"{url} is not served by the daemon"
        asset = client.get(url)
        assert asset.status_code == 200 and len(asset.content) > 100, url
    assert client.get("/").json()["docs"] == "/schema/swagger"


def test_training_routes_answer_501_with_what_to_do(tmp_path: Path, cache_dir: Path) -> None:
    with make_client(tmp_path, cache_dir) as client:
        for command in ("create_dataset", "train_model", "status", "cancel", "resume_training", "model_info",
                        "dataset_info"):
            response = client.post(f"/v1/train/{command}", data={"name": "mymodel"})
            body = response.json()
            assert response.status_code == 501 and body["success"] is False and body["code"] == 501
            assert "edgewatch models add" in body["error"] and "PyTorch" in body["error"]
        assert client.get("/v1/status/ping").status_code == 200
