import json
from pathlib import Path

import pytest

from edgewatch.models.files import sha256_file
from edgewatch.models.manifest import InputSpec, ModelManifest, Preprocessing, Source, Variant
from edgewatch.models.store import ModelNotFound, ModelStore, StoreError


def _manifest(name: str, f: Path) -> ModelManifest:
    return ModelManifest(
        name=name, labels=("a",), input=InputSpec(shape=(1, 3, 8, 8), layout="nchw"),
        preprocessing=Preprocessing(), postprocessing="yolov8",
        source=Source(registry="local", package="x", version="1"), license="MIT",
        variants={"fp32": Variant(file="", sha256=sha256_file(f), precision="fp32", size_bytes=f.stat().st_size)},
        default_variant="fp32")


def test_commit_list_verify_remove(tmp_path: Path) -> None:
    src = tmp_path / "m.onnx"
    src.write_bytes(b"model-bytes")
    store = ModelStore(tmp_path / "models")
    m = store.commit(_manifest("mine", src), {"fp32": src})
    assert [x.name for x in store.list()] == ["mine"]
    assert store.path(m).read_bytes() == b"model-bytes" and store.verify(m) == []
    store.path(m).write_bytes(b"tampered")
    assert "sha256 mismatch" in store.verify(m)[0]
    store.remove("mine")
    assert store.list() == [] and not store.has("mine")
    with pytest.raises(ModelNotFound, match="edgewatch models install"):
        store.get("mine")


def test_half_installed_model_is_never_listed(tmp_path: Path) -> None:
    """A kill -9 mid-install leaves files without a manifest: the store must not see a model."""
    store = ModelStore(tmp_path / "models")
    d = tmp_path / "models" / "partial"
    d.mkdir(parents=True)
    (d / ".incoming-fp32.onnx").write_bytes(b"half")
    assert store.list() == [] and not store.has("partial")


def test_reinstall_replaces_and_cleans_old_files(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    a.write_bytes(b"v1"); b.write_bytes(b"v2")
    store.commit(_manifest("m", a), {"fp32": a})
    m2 = store.commit(_manifest("m", b), {"fp32": b})
    files = sorted(p.name for p in (tmp_path / "models" / "m").iterdir())
    assert files == sorted(["manifest.json", m2.default.file])
    assert store.path(m2).read_bytes() == b"v2"


def test_a_failed_commit_leaves_the_store_as_it_was(tmp_path: Path) -> None:
    """A commit that fails after writing some files (here the second variant's source changed; a full
    disk does the same) removes what it wrote: the installed model stays whole, a new one leaves no folder."""
    store = ModelStore(tmp_path / "models")
    a, b, c = tmp_path / "a.onnx", tmp_path / "b.onnx", tmp_path / "c.onnx"
    a.write_bytes(b"v1"); b.write_bytes(b"v2"); c.write_bytes(b"int8")

    def two_variants(name: str, fp32: Path) -> ModelManifest:
        m = _manifest(name, fp32)
        wrong = m.default.model_copy(update={"sha256": "0" * 64, "precision": "int8"})
        return m.model_copy(update={"variants": {**m.variants, "int8": wrong}})

    installed = store.commit(_manifest("m", a), {"fp32": a})
    before = sorted(p.name for p in (tmp_path / "models" / "m").iterdir())
    with pytest.raises(StoreError, match="changed while installing"):
        store.commit(two_variants("m", b), {"fp32": b, "int8": c})
    assert sorted(p.name for p in (tmp_path / "models" / "m").iterdir()) == before
    assert store.verify(store.get("m")) == [] and store.path(installed).read_bytes() == b"v1"
    with pytest.raises(StoreError, match="changed while installing"):
        store.commit(two_variants("fresh", b), {"fp32": b, "int8": c})
    assert not (tmp_path / "models" / "fresh").exists() and [m.name for m in store.list()] == ["m"]


def test_damaged_manifest_says_how_to_fix(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    d = tmp_path / "models" / "broken"
    d.mkdir(parents=True)
    (d / "manifest.json").write_text(json.dumps({"name": "broken"}))
    with pytest.raises(StoreError, match="models remove broken"):
        store.get("broken")
    assert store.list() == []


@pytest.mark.parametrize("bad", ["../etc", "a/b", "..", "", "UPPER", "a" * 65, ".hidden"])
def test_unsafe_names_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="invalid model name"):
        ModelStore(tmp_path).get(bad)


def test_stored_files_are_readable_by_other_users(tmp_path: Path) -> None:
    """A model installed by root must be readable by the service user (umask 022 → 0644)."""
    import os

    src = tmp_path / "m.onnx"
    src.write_bytes(b"x")
    old = os.umask(0o022)
    try:
        m = ModelStore(tmp_path / "models").commit(_manifest("perm", src), {"fp32": src})
    finally:
        os.umask(old)
    assert (tmp_path / "models" / "perm" / "manifest.json").stat().st_mode & 0o777 == 0o644
    assert ModelStore(tmp_path / "models").path(m).stat().st_mode & 0o777 == 0o644


def test_add_variant_keeps_the_others_and_replaces_its_own_file(tmp_path: Path) -> None:
    src, conv1, conv2 = (tmp_path / n for n in ("m.onnx", "a.tflite", "b.tflite"))
    src.write_bytes(b"onnx"); conv1.write_bytes(b"tflite-1"); conv2.write_bytes(b"tflite-2")
    store = ModelStore(tmp_path / "models")
    store.commit(_manifest("m", src), {"fp32": src})
    v = lambda f: Variant(file="", sha256=sha256_file(f), precision="int8", size_bytes=f.stat().st_size, runtime="tflite")  # noqa: E731
    store.add_variant("m", "tflite-int8", v(conv1), conv1)
    m = store.add_variant("m", "tflite-int8", v(conv2), conv2)
    assert set(m.variants) == {"fp32", "tflite-int8"} and store.verify(m) == []
    assert store.path(m, "tflite-int8").read_bytes() == b"tflite-2"
    assert len(list((tmp_path / "models" / "m").iterdir())) == 3  # manifest, onnx, the newest tflite
