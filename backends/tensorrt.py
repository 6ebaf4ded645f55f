"""NVIDIA Jetson through the ``tensorrt`` Python API."""

from __future__ import annotations

from edgewatch.backends.base import DetectOnlyBackend, ProbeResult
from edgewatch.backends.devices import importable, jetson_release


class TensorRtBackend(DetectOnlyBackend):
    type_key = "tensorrt"
    title = "NVIDIA TensorRT (Jetson)"
    can_use_gpu = True

    @classmethod
    def probe(cls) -> ProbeResult:
        release = jetson_release()
        if not release:
            return ProbeResult(False, "no Jetson found (no /etc/nv_tegra_release, no tegra in the device tree)")
        if not importable("tensorrt"):
            return ProbeResult(False, f"{release} found but tensorrt not importable: install JetPack's "
                                      "python3-libnvinfer and use a venv with --system-site-packages")
        return ProbeResult(False, f"{release} with tensorrt importable, but {cls.not_built}")
