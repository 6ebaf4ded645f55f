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
