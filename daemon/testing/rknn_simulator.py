"""rknn-toolkit2's PC simulator presented as a Backend, so the conformance suite can run on it.

The simulator only runs a model built in its own process, so "loading" starts the converter
worker in the rknn venv with --serve: it builds the int8 model from the fp32 ONNX (calibrated on
the photos, or built as ``build`` says: the face models' own samples, fixed shape, float16),
starts the simulator and answers inference requests over a pipe. With ``out_rknn`` the worker
also writes the model it built there before serving, so the simulated model is exactly that file
(the simulator cannot run a ``.rknn`` loaded from disk).
"""

from __future__ import annotations

import io
import subprocess
import threading
from pathlib import Path

import numpy as np

from edgewatch.backends.base import Backend, BackendError, ProbeResult
from edgewatch.models.conversion import rknn as rknn_conversion
from edgewatch.models.conversion.tool_env import child_env
from edgewatch.models.manifest import ModelManifest


class RknnSimulatorBackend(Backend):
    type_key = "rknn-simulator"
    title = "rknn-toolkit2 PC simulator"
    runtime = "rknn"

    def __init__(self, cache_dir: Path, photos: list[Path], platform: str = "rk3588",
                 build: rknn_conversion.Build = rknn_conversion.Build(), out_rknn: Path | None = None) -> None:
        super().__init__()
        self.cache_dir, self.photos, self.platform, self.build = cache_dir, photos, platform, build
        self.out_rknn = out_rknn
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    @classmethod
    def probe(cls) -> ProbeResult:
        return ProbeResult(True, "PC simulator")

    @property
    def execution_provider(self) -> str:
        return "NPU (simulated)"

    def _open(self, model_path: Path, manifest: ModelManifest) -> None:
        """``model_path`` is the fp32 ONNX the simulator builds from."""
        python = rknn_conversion.env_python(self.cache_dir)
        if python is None:
            raise BackendError("rknn-toolkit2 venv not built")
        if self.build.samples is not None:
            listing = self.cache_dir / "rknn-sim-dataset.npz"
            np.savez(listing, *[np.asarray(x) for x in self.build.samples])
        else:
            listing = self.cache_dir / "rknn-sim-dataset.txt"
            listing.write_text("\n".join(str(p) for p in self.photos) + "\n")
        pre = manifest.preprocessing
        cmd = [str(python), "-I", str(rknn_conversion.WORKER_SCRIPT), str(model_path),
               str(Path(self.out_rknn).resolve()) if self.out_rknn is not None else "-",
               "--platform", self.platform, "--dataset", str(listing), "--input-mode", "uint8",
               "--mean", *map(str, pre.mean), "--std", *map(str, pre.std), "--color", pre.color,
               "--pad-value", str(pre.pad_value), "--serve"]
        if self.build.input_shape is not None:
            cmd += ["--input-shape", *map(str, self.build.input_shape)]
        if self.build.fp16:
            cmd.append("--fp16")
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      env=child_env())
        ready = self._proc.stdout.read(8)
        if len(ready) < 8:
            err = self._proc.stderr.read().decode(errors="replace")[-800:]
            self._proc.wait()
            self._proc = None
            raise BackendError(f"the RKNN simulator did not start: {err}")

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        if self._proc is None:
            raise BackendError("no model loaded")
        buf = io.BytesIO()
        np.save(buf, batch)
        with self._lock:
            self._proc.stdin.write(len(buf.getvalue()).to_bytes(8, "big") + buf.getvalue())
            self._proc.stdin.flush()
            size = int.from_bytes(self._proc.stdout.read(8), "big")
            data = self._proc.stdout.read(size)
        if not size:
            raise BackendError("the simulator's inference failed")
        with np.load(io.BytesIO(data)) as npz:
            return [npz[k] for k in sorted(npz.files, key=lambda k: int(k.split("_")[1]))]

    def close(self) -> None:
        if self._proc is not None:
            try:
                self._proc.stdin.write((0).to_bytes(8, "big"))
                self._proc.stdin.close()
                self._proc.wait(60)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()
            for stream in (self._proc.stdout, self._proc.stderr):
                stream.close()
            self._proc = None
        super().close()
