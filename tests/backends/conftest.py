"""Fixtures for the backend conformance suite: the installed nanodet and its fp32 reference."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgewatch.backends.onnxruntime_cpu import OnnxRuntimeCpuBackend
from edgewatch.models.store import ModelStore


@pytest.fixture(scope="session")
def store(installed_data_dir: Path) -> ModelStore:
    return ModelStore(installed_data_dir / "models")


@pytest.fixture(scope="session")
def nanodet(store: ModelStore):
    return store.get("nanodet")


@pytest.fixture(scope="session")
def reference(store: ModelStore, nanodet):
    """ONNX Runtime on the fp32 ONNX: what every backend is compared with."""
    backend = OnnxRuntimeCpuBackend()
    backend.load(store.path(nanodet, "fp32"), nanodet, "fp32")
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def converted_data_dir(tmp_path_factory: pytest.TempPathFactory, installed_data_dir: Path, cache_dir: Path) -> Path:
    """The installed data dir plus nanodet's int8 TFLite (converted once; cached by source sha256)."""
    import shutil

    from edgewatch.models.convert import convert

    data = tmp_path_factory.mktemp("converted")
    shutil.copytree(installed_data_dir, data, dirs_exist_ok=True)
    convert("nanodet", "tflite", ModelStore(data / "models"), cache_dir)
    return data


@pytest.fixture(scope="session")
def converted_store(converted_data_dir: Path) -> ModelStore:
    return ModelStore(converted_data_dir / "models")
