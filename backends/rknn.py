"""Rockchip NPU (RK3588/RK3566/RK3568/RK3576) through rknn-toolkit-lite2's ``rknnlite``.

On the RK3588 the three NPU cores run one runtime each (``core_mode: per-core``, the default)
and requests are spread over them; ``all-cores`` instead runs one runtime on the 0_1_2 mask.
Runs ``.rknn`` variants converted for this board's SoC.
"""

from __future__ import annotations

import queue
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from edgewatch.backends.base import Backend, BackendConfig, BackendError, ProbeResult
from edgewatch.backends.devices import importable, npu_family, rknpu_nodes, rockchip_soc
from edgewatch.models.manifest import ModelManifest

NPU_CORES = {"rk3588": 3, "rk3576": 2}


class RknnConfig(BackendConfig):
    core_mode: Literal["per-core", "all-cores", "auto"] = Field(
        "per-core", description="per-core: one runtime per NPU core; all-cores: one runtime on every core; "
                                "auto: let the driver choose")


class RknnBackend(Backend):
    type_key = "rknn"
    title = "Rockchip NPU (rknnlite)"
    runtime = "rknn"
    config_model = RknnConfig

    def __init__(self, config: BackendConfig | None = None) -> None:
        super().__init__(config)
        self._pool: queue.SimpleQueue = queue.SimpleQueue()
        self._runtimes: list = []
        self._layout = "nchw"

    @classmethod
    def probe(cls) -> ProbeResult:
        soc, nodes = rockchip_soc(), rknpu_nodes()
        if not soc and not nodes:
            return ProbeResult(False, "no Rockchip NPU found (no /dev/rknpu*, no rknpu driver, device tree is not rockchip)",
                               hardware=False)
        found = f"Rockchip {soc or 'SoC'} NPU ({', '.join(nodes) or 'no rknpu driver node'})"
        if not importable("rknnlite"):
            return ProbeResult(False, f"{found} but rknnlite not importable: pip install rknn-toolkit-lite2 "
                                      "(aarch64 wheels) and make sure librknnrt.so is in /usr/lib", hardware=True)
        return ProbeResult(True, f"{found}, rknnlite importable", hardware=True)

    def pick_variant(self, manifest: ModelManifest) -> str | None:
        npu = npu_family(rockchip_soc())
        usable = [k for k, v in manifest.variants.items()
                  if v.runtime == "rknn" and (v.platform is None or npu_family(v.platform) == npu)
                  and manifest.faithful(k)]  # a conversion that failed its gate never runs
        return usable[0] if usable else None

    def unusable_reason(self, manifest: ModelManifest) -> str:
        soc = rockchip_soc()
        built = sorted({v.platform for v in manifest.variants.values() if v.runtime == "rknn" and v.platform})
        if built and npu_family(soc) not in {npu_family(b) for b in built}:
            target = npu_family(soc) or "rk3588"
            how = (f"convert it for this board: `edgewatch models convert {manifest.name} --target rknn "
                   f"--platform {target}`" if any(v.runtime == "onnx" for v in manifest.variants.values()) else
                   f"bring an .rknn compiled for {target} (rknn-toolkit2's `rknn.config(target_platform="
                   f"'{target}')`, or rknn_model_zoo's convert.py with `{target}`) and `edgewatch models add` it")
            return (f"{manifest.name}'s .rknn file is built for {', '.join(built)} and this board is "
                    f"{soc or 'another Rockchip SoC'}: an .rknn runs only on the SoC it was compiled for; {how}")
        return super().unusable_reason(manifest)

    @property
    def execution_provider(self) -> str:
        return "NPU"

    def _core_masks(self, api) -> list[int]:
        cores = NPU_CORES.get(npu_family(rockchip_soc()) or "", 1)
        if self.config.core_mode == "per-core" and cores > 1:
            return [getattr(api, f"NPU_CORE_{i}") for i in range(cores)]
        if self.config.core_mode == "all-cores" and cores == 3:
            return [api.NPU_CORE_0_1_2]
        if self.config.core_mode == "all-cores" and cores == 2:
            return [api.NPU_CORE_0_1]
        return [api.NPU_CORE_AUTO]

    def _open(self, model_path: Path, manifest: ModelManifest) -> None:
        try:
            from rknnlite.api import RKNNLite
        except ImportError as exc:
            raise BackendError(f"rknnlite not importable ({exc}): pip install rknn-toolkit-lite2") from exc
        try:
            for mask in self._core_masks(RKNNLite):
                runtime = RKNNLite(verbose=False)
                self._runtimes.append(runtime)
                if runtime.load_rknn(str(model_path)) != 0:
                    raise BackendError(f"rknnlite could not load {model_path.name}: convert it again for this board "
                                       f"with `edgewatch models convert {manifest.name} --target rknn "
                                       f"--platform {npu_family(rockchip_soc()) or 'rk3588'}`")
                if runtime.init_runtime(core_mask=mask) != 0:
                    raise BackendError("the RKNN runtime did not start on the NPU (core mask "
                                       f"{mask}): check that librknnrt.so matches rknn-toolkit-lite2's version "
                                       "and that the rknpu driver is loaded (dmesg | grep -i rknpu)")
                self._pool.put(runtime)
        except BackendError:
            self.close()
            raise

    def load(self, model_path: Path, manifest: ModelManifest, variant: str | None = None) -> None:
        super().load(model_path, manifest, variant)
        self._layout = self.input_format()[0].layout

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        if not self._runtimes:
            raise BackendError("no model loaded")
        runtime = self._pool.get()  # one request per NPU core at a time
        try:
            outputs = runtime.inference(inputs=[batch], data_format=self._layout)
        finally:
            self._pool.put(runtime)
        if outputs is None:
            raise BackendError("the NPU returned no result (rknnlite inference failed; see the log above)")
        return [np.asarray(o, dtype=np.float32) for o in outputs]

    def close(self) -> None:
        for runtime in self._runtimes:
            try:
                runtime.release()
            except Exception:  # releasing a half-initialised runtime may fail; nothing to do then
                pass
        self._runtimes = []
        self._pool = queue.SimpleQueue()
        super().close()
