"""Tencent's ncnn on the CPU (Vulkan off): runs ``.ncnn.zip`` variants, the image-to-image models
(Real-ESRGAN) that ship only as ncnn ``.param``/``.bin`` pairs. No detector has an ncnn variant,
so it is probed after the other CPU runtimes and never takes a detection model.

The store keeps one file per variant: an uncompressed zip of ``model.param`` and ``model.bin``
(written by models.superresolution_install). Zip's CRC-32 is checked as the members are read, so a
damaged file is refused here; ncnn itself loads truncated weights without a word.

Input: an N×H×W×C uint8 image batch in the manifest's colour order, fed through
``ncnn.Mat.from_pixels`` and normalised by the manifest's mean and std (Real-ESRGAN: 1/255); a Mat
built from a float array directly gave garbage on x86. Output: the model's one output, N×C×H'×W'
float32. One ``ncnn.Net`` serves every thread: each inference gets its own Extractor.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from edgewatch.backends.base import Backend, BackendConfig, BackendError, ProbeResult
from edgewatch.backends.devices import importable
from edgewatch.models.manifest import ModelManifest

PARAM, WEIGHTS = "model.param", "model.bin"  # the two members of a stored .ncnn.zip
INSTALL = "pip install ncnn (wheels for Linux x86_64 and aarch64, CPython 3.11-3.13)"


def _ncnn():
    """The ncnn module. Its bundled OpenMP is told to sleep, not spin, at barriers (unless
    OMP_WAIT_POLICY is set): on 2 cores shared with another busy process, spinning made a 96x64
    Real-ESRGAN run take 100-730 ms instead of 35-43 ms. Read once, when ncnn is first imported."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import ncnn

    return ncnn


class NcnnConfig(BackendConfig):
    threads: int = Field(0, ge=0, le=64, description=(
        "threads of one inference; 0 = ncnn's default, one per big core (an RK3588's four A76s)"))


class NcnnCpuBackend(Backend):
    type_key = "ncnn"
    title = "ncnn (CPU)"
    runtime = "ncnn"
    cpu = True
    config_model = NcnnConfig
    convert_target = False  # its variants come from packages that ship ncnn files (models install)
    max_batch = None        # a batch is run image by image

    def __init__(self, config: NcnnConfig | None = None) -> None:
        super().__init__(config)
        # (net, weights, input blob, output blob); ncnn may use the weights in place, so they live as long
        # as the net. An inference holds the tuple until it ends: close() never frees a net in use.
        self._loaded: tuple[Any, bytes, str, str] | None = None

    @classmethod
    def probe(cls) -> ProbeResult:
        if not importable("ncnn"):
            return ProbeResult(False, f"ncnn not importable: {INSTALL}; only super-resolution needs it")
        ncnn = _ncnn()
        return ProbeResult(True, f"ncnn {ncnn.__version__}, CPU (Vulkan off), {os.cpu_count()} cores")

    @property
    def execution_provider(self) -> str:
        return "CPU"

    def _open(self, model_path: Path, manifest: ModelManifest) -> None:
        if not importable("ncnn"):
            raise BackendError(f"ncnn not importable: {INSTALL}")
        ncnn = _ncnn()
        reinstall = (f"reinstall the model: edgewatch models remove {manifest.name}; "
                     f"edgewatch models install {manifest.name}")
        try:
            with zipfile.ZipFile(model_path) as zf:
                param, weights = zf.read(PARAM).decode("utf-8"), zf.read(WEIGHTS)  # CRC-checked
        except (OSError, KeyError, UnicodeDecodeError, zipfile.BadZipFile) as exc:
            raise BackendError(f"{model_path.name} is not a sound ncnn model file ({exc}); {reinstall}") from exc
        net = ncnn.Net()
        net.opt.use_vulkan_compute = False
        if self.config.threads:
            net.opt.num_threads = self.config.threads
        if net.load_param_mem(param) != 0:
            raise BackendError(f"ncnn cannot read {model_path.name}'s {PARAM}; {reinstall}")
        net.load_model_mem(weights)
        inputs, outputs = list(net.input_names()), list(net.output_names())
        if len(inputs) != 1 or len(outputs) != 1:
            raise BackendError(f"{manifest.name} has inputs {inputs} and outputs {outputs}; the ncnn backend runs "
                               "models with one image input and one output")
        self._loaded = (net, weights, inputs[0], outputs[0])

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        """``batch``: N×H×W×C uint8 (C = 3, in the manifest's colour order) → [N×C'×H'×W' float32]."""
        loaded, manifest = self._loaded, self.manifest
        if loaded is None or manifest is None:
            raise BackendError("no model loaded")
        ncnn = _ncnn()
        net, _weights, blob_in, blob_out = loaded
        if batch.ndim != 4 or batch.shape[-1] != 3 or batch.dtype != np.uint8:
            raise BackendError(f"the ncnn backend takes N×H×W×3 uint8 images, not {batch.dtype} {batch.shape}")
        pre = manifest.preprocessing
        norm = [1.0 / s for s in pre.std]
        pixels = ncnn.Mat.PixelType.PIXEL_RGB if pre.color == "rgb" else ncnn.Mat.PixelType.PIXEL_BGR
        out = []
        for image in batch:
            h, w = image.shape[:2]
            mat = ncnn.Mat.from_pixels(np.ascontiguousarray(image), pixels, w, h)
            mat.substract_mean_normalize(list(pre.mean), norm)
            extractor = net.create_extractor()
            extractor.input(blob_in, mat)
            status, result = extractor.extract(blob_out)
            if status != 0:
                raise BackendError(f"ncnn failed to run {manifest.name} on a {w}x{h} image (status {status})")
            out.append(np.array(result, dtype=np.float32))
        return [np.stack(out)]

    def close(self) -> None:
        self._loaded = None  # the net is freed when the last inference running on it returns
        super().close()
