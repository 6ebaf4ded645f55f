"""`edgewatch models convert`: real conversions where the converter toolchains exist here."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgewatch.models.conversion import rknn as rknn_conversion
from edgewatch.models.convert import convert
from edgewatch.models.store import ModelStore


def test_tensorrt_needs_no_conversion(data_dir: Path, cache_dir: Path) -> None:
    _, line = convert("nanodet", "tensorrt", ModelStore(data_dir / "models"), cache_dir)
    assert "built on the Jetson" in line


def test_rknn_conversion_validated_on_the_pc_simulator(data_dir: Path, cache_dir: Path) -> None:
    """rknn-toolkit2 (5.6 GB) is never installed by the tests or CI; this runs where a developer
    has built its venv with `edgewatch models convert … --target rknn`."""
    if not rknn_conversion.env_ready(cache_dir):
        pytest.skip("rknn-toolkit2 venv not built on this machine (edgewatch models convert --target rknn builds it)")
    store = ModelStore(data_dir / "models")
    manifest, line = convert("nanodet", "rknn", store, cache_dir, platform="rk3588")
    variant = manifest.variants["rknn-rk3588"]
    assert variant.runtime == "rknn" and variant.platform == "rk3588" and variant.precision == "int8"
    assert variant.agreement >= 0.95, line
    assert variant.device_normalises and variant.input.layout == "nhwc" and variant.input.dtype == "uint8"
    assert variant.source_sha256 == manifest.variants["fp32"].sha256 and "rknn-toolkit2 2.5.0" == variant.toolkit
    assert store.verify(manifest) == []
