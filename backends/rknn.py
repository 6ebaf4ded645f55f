"""Rockchip NPU (RK3588/RK3566/RK3568/RK3576) through rknn-toolkit-lite2's ``rknnlite``."""

from __future__ import annotations

from edgewatch.backends.base import DetectOnlyBackend, ProbeResult
from edgewatch.backends.devices import importable, rknpu_nodes, rockchip_soc


class RknnBackend(DetectOnlyBackend):
    type_key = "rknn"
    title = "Rockchip NPU (rknnlite)"

    @classmethod
    def probe(cls) -> ProbeResult:
        soc, nodes = rockchip_soc(), rknpu_nodes()
        if not soc and not nodes:
            return ProbeResult(False, "no Rockchip NPU found (no /dev/rknpu*, no rknpu driver, device tree is not rockchip)")
        found = f"Rockchip {soc or 'SoC'} NPU ({', '.join(nodes) or 'no rknpu driver node'})"
        if not importable("rknnlite"):
            return ProbeResult(False, f"{found} but rknnlite not importable: pip install rknn-toolkit-lite2 "
                                      "(aarch64 wheels) and make sure librknnrt.so is in /usr/lib")
        return ProbeResult(False, f"{found}, rknnlite importable, but {cls.not_built}")
