"""Coral EdgeTPU through the TFLite interpreter's ``load_delegate('libedgetpu.so.1')``.

Uses ai-edge-litert or tflite-runtime; the PyPI package named ``pycoral`` is unrelated to
Google's Coral library and is never used. Only ``*_edgetpu.tflite`` variants (compiled by
``edgetpu_compiler``) run on the TPU.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from pydantic import Field

from edgewatch.backends.base import BackendConfig, BackendError, ProbeResult
from edgewatch.backends.devices import coral_devices, libedgetpu_present
from edgewatch.backends.tflite import TfliteCpuBackend, interpreter_module

EDGETPU_LIB = "libedgetpu.so.1"


class EdgeTpuConfig(BackendConfig):
    device: str | None = Field(None, description="which TPU: 'usb', 'usb:0', 'pci:0'; default the first found")


class EdgeTpuBackend(TfliteCpuBackend):
    type_key = "edgetpu"
    title = "Coral EdgeTPU (TFLite delegate)"
    runtime = "edgetpu"
    config_model = EdgeTpuConfig
    cpu = False  # an accelerator: `auto` tries it before the CPU runtimes (not inherited from TFLite's)

    @classmethod
    def probe(cls) -> ProbeResult:
        devices = coral_devices()
        if not devices:
            return ProbeResult(False, "no EdgeTPU device found (no USB 1a6e:089a / 18d1:9302, no /dev/apex_*)",
                               hardware=False)
        found = f"EdgeTPU found ({', '.join(devices)})"
        module = interpreter_module()
        if module is None:
            return ProbeResult(False, f"{found} but no TFLite interpreter importable: pip install ai-edge-litert",
                               hardware=True)
        if not libedgetpu_present():
            return ProbeResult(False, f"{found} but {EDGETPU_LIB} missing: install libedgetpu1-std from "
                                      "Coral's apt repository", hardware=True)
        return ProbeResult(True, f"{found}, {module.__name__.split('.')[0]} interpreter, {EDGETPU_LIB} present",
                           hardware=True)

    @property
    def execution_provider(self) -> str:
        return "TPU"

    @property
    def threads(self) -> int:
        return 1  # the TPU runs the model, so no lanes: requests take turns on its one interpreter

    def _make_interpreter(self, module: ModuleType, model_path: Path, threads: int):
        options = {"device": self.config.device} if self.config.device else {}
        try:
            delegate = module.load_delegate(EDGETPU_LIB, options)
        except OSError as exc:  # the library is missing or cannot be loaded
            raise BackendError(f"{EDGETPU_LIB} could not be loaded ({exc}): install libedgetpu1-std") from exc
        except ValueError as exc:  # the library loaded but the TPU did not initialise
            raise BackendError(f"the EdgeTPU failed to initialise ({exc}): check it is plugged in "
                               "(lsusb shows 18d1:9302 or 1a6e:089a) and that this user may access it") from exc
        return module.Interpreter(model_path=str(model_path), experimental_delegates=[delegate])
