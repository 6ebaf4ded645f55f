"""The TensorRT backend on the dynamic-shape face models (CenterFace: N, H, W symbolic;
MobileFaceNet: batch symbolic), with the fake vendor modules: one optimisation profile from the
manifest's input spec, per-run input shapes, and the same faces and embeddings as ONNX Runtime."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_vendor_backends import jetson as fake_jetson  # noqa: F401  (an Orin, fake tensorrt and cuda-python)

from edgewatch.backends import tensorrt as trt_backend
from edgewatch.backends.base import BackendError
from edgewatch.backends.onnxruntime_cpu import OnnxRuntimeCpuBackend
from edgewatch.backends.tensorrt import TensorRtBackend, TensorRtConfig
from edgewatch.models import installer
from edgewatch.models.photos import ensure_face_photos
from edgewatch.models.runtime.faces import EMBED_BATCH, align, detect_faces, embed
from edgewatch.models.runtime.preprocess import fit_pad
from edgewatch.models.store import ModelStore
from scratch import scratch_dir

pytestmark = pytest.mark.slow  # installs the face models (cached after the first run)

CENTERFACE_PROFILE = ((1, 3, 32, 32), (1, 3, 640, 640), (1, 3, 640, 640))
MOBILEFACENET_PROFILE = ((1, 112, 112, 3), (1, 112, 112, 3), (EMBED_BATCH, 112, 112, 3))


@pytest.fixture()
def jetson(fake_jetson):  # noqa: F811  (the imported fixture, by name)
    """The fake Jetson, its vendor modules unloaded afterwards: left in sys.modules they would
    make later probes (test_vendor_backends) see tensorrt and cuda-python as installed."""
    yield fake_jetson
    for mod in [m for m in sys.modules if m.split(".")[0] in ("tensorrt", "cuda")]:
        del sys.modules[mod]


@pytest.fixture(scope="module")
def face_store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> ModelStore:
    store = ModelStore(scratch_dir(request, tmp_path_factory, "faces") / "models")
    for name in ("centerface", "mobilefacenet"):
        installer.install(name, store, cache_dir)
    return store


@pytest.fixture(scope="module")
def images(cache_dir: Path) -> dict[str, np.ndarray]:
    paths = ensure_face_photos(cache_dir)
    return {name: cv2.imread(str(paths[name]), cv2.IMREAD_COLOR) for name in ("obama", "group5")}


@pytest.fixture(scope="module")
def cpu(face_store: ModelStore):
    """ONNX Runtime on each face model's fp32 ONNX: the reference."""
    backends = {}
    for name in ("centerface", "mobilefacenet"):
        manifest = face_store.get(name)
        backends[name] = OnnxRuntimeCpuBackend()
        backends[name].load(face_store.path(manifest, "fp32"), manifest, "fp32")
    yield backends
    for backend in backends.values():
        backend.close()


def _trt(face_store: ModelStore, name: str, engines: Path) -> TensorRtBackend:
    backend = TensorRtBackend(TensorRtConfig(engine_dir=engines))
    manifest = face_store.get(name)
    variant = backend.pick_variant(manifest)
    assert variant == "fp32"
    backend.load(face_store.path(manifest, variant), manifest, variant)
    return backend


def _fed_shapes(backend) -> list[tuple[int, ...]]:
    """Record the shape of every batch ``backend`` runs."""
    shapes, infer = [], backend.infer
    backend.infer = lambda batch: shapes.append(batch.shape) or infer(batch)
    return shapes


def test_the_profile_follows_the_manifest_input(face_store: ModelStore, store: ModelStore, nanodet) -> None:
    def profile(manifest, path, batch=1):
        return trt_backend.profile_for(trt_backend._onnx_inputs(path), manifest.input, batch)

    cf, mfn = face_store.get("centerface"), face_store.get("mobilefacenet")
    assert profile(cf, face_store.path(cf, "fp32")) == {"input.1": CENTERFACE_PROFILE}
    assert profile(mfn, face_store.path(mfn, "fp32"), EMBED_BATCH) == {"img_inputs:0": MOBILEFACENET_PROFILE}
    assert profile(nanodet, store.path(nanodet, "fp32")) == {}  # fixed shape: built as before, no profile


def test_centerface_on_tensorrt_finds_the_same_faces_at_two_input_sizes(jetson, face_store, cpu, images,
                                                                        tmp_path: Path) -> None:
    backend = _trt(face_store, "centerface", tmp_path / "engines")
    manifest = face_store.get("centerface")
    assert jetson.profiles == [{"input.1": list(CENTERFACE_PROFILE)}]
    fed = _fed_shapes(backend)
    for name in ("obama", "group5", "obama"):  # 640x512, then 480x640, then back, on one engine
        got = detect_faces(backend, manifest, images[name])
        want = detect_faces(cpu["centerface"], manifest, images[name])
        assert len(got.scores) == len(want.scores) >= 1
        np.testing.assert_allclose(got.boxes, want.boxes, atol=0.05)
        np.testing.assert_allclose(got.scores, want.scores, atol=1e-4)
        np.testing.assert_allclose(got.landmarks, want.landmarks, atol=0.05)
    assert fed == [(1, 3, 640, 512), (1, 3, 480, 640), (1, 3, 640, 512)]
    assert len(detect_faces(backend, manifest, images["group5"]).scores) == 5
    backend.close()
    assert jetson.builds == 1


def test_mobilefacenet_on_tensorrt_embeds_one_and_five_faces_in_one_run(jetson, face_store, cpu, images,
                                                                        tmp_path: Path) -> None:
    manifest = face_store.get("mobilefacenet")
    found = detect_faces(cpu["centerface"], face_store.get("centerface"), images["group5"])
    crops = [align(images["group5"], points) for points in found.landmarks]
    assert len(crops) == 5
    backend = _trt(face_store, "mobilefacenet", tmp_path / "engines")
    assert backend.max_batch == EMBED_BATCH
    fed = _fed_shapes(backend)
    for faces in (crops[:1], crops, crops[2:3]):
        got, want = embed(backend, manifest, faces), embed(cpu["mobilefacenet"], manifest, faces)
        assert got.shape == want.shape == (len(faces), 192)
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert [shape[0] for shape in fed] == [1, 5, 1]  # five faces in one run, not five
    backend.close()


def test_the_engine_cache_is_reused_and_keyed_by_the_profile(jetson, face_store, tmp_path: Path) -> None:
    from cuda.bindings.runtime import live_allocations

    engines = tmp_path / "engines"
    engines.mkdir()
    for name in ("centerface", "mobilefacenet"):
        _trt(face_store, name, engines).close()
    assert jetson.builds == 2
    names = sorted(p.name for p in engines.glob("*.engine"))
    assert len(names) == 2 and all("_dyn" in n and n.endswith("_fp16.engine") for n in names)
    for name in ("centerface", "mobilefacenet"):
        _trt(face_store, name, engines).close()
    assert jetson.builds == 2 and live_allocations() == 0  # deserialised from the cache, every buffer freed
    # An engine cached under the key without a profile (a fixed-shape build) is never picked up.
    for path in engines.glob("*.engine"):
        path.rename(engines / (path.name.split("_dyn")[0] + "_fp16.engine"))
    _trt(face_store, "centerface", engines).close()
    assert jetson.builds == 3


def test_an_input_outside_the_profile_is_refused_saying_what_fits(jetson, face_store, tmp_path: Path) -> None:
    detector = _trt(face_store, "centerface", tmp_path / "engines")
    with pytest.raises(BackendError, match=r"from \(1, 3, 32, 32\) to \(1, 3, 640, 640\)"):
        detector.infer(np.zeros((1, 3, 672, 640), np.float32))
    spec, pre = detector.input_format()
    tensor, _ = fit_pad(np.full((100, 200, 3), 128, np.uint8), spec, pre)
    assert tensor.shape == (1, 3, 128, 224) and len(detector.infer(tensor)) == 4  # still runs after the refusal
    detector.close()
    embedder = _trt(face_store, "mobilefacenet", tmp_path / "engines")
    with pytest.raises(BackendError, match=f"at most {EMBED_BATCH} samples per run"):
        embedder.infer(np.zeros((EMBED_BATCH + 1, 112, 112, 3), np.float32))
    assert embedder.infer(np.zeros((EMBED_BATCH, 112, 112, 3), np.float32))[0].shape == (EMBED_BATCH, 192)
    embedder.close()


def test_a_dynamic_model_without_a_profile_does_not_build(jetson, face_store, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """What TensorRT itself does without a profile, so the fake cannot pass a backend that forgets it."""
    monkeypatch.setattr(trt_backend, "profile_for", lambda inputs, spec, max_batch: {})
    with pytest.raises(BackendError, match="could not build an engine"):
        _trt(face_store, "centerface", tmp_path / "engines")
    assert jetson.builds == 0
