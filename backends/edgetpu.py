"""Coral EdgeTPU through the TFLite interpreter's ``load_delegate('libedgetpu.so.1')``.

Uses ai-edge-litert or tflite-runtime; the PyPI package named ``pycoral`` is unrelated to
Google's Coral library and is never used.
"""

from __future__ import annotations

from edgewatch.backends.base import DetectOnlyBackend, ProbeResult
from edgewatch.backends.devices import coral_devices, importable, libedgetpu_present


class EdgeTpuBackend(DetectOnlyBackend):
    type_key = "edgetpu"
    title = "Coral EdgeTPU (TFLite delegate)"

    @classmethod
    def probe(cls) -> ProbeResult:
        devices = coral_devices()
        if not devices:
            return ProbeResult(False, "no EdgeTPU device found (no USB 1a6e:089a / 18d1:9302, no /dev/apex_*)")
        found = f"EdgeTPU found ({', '.join(devices)})"
        if not (importable("ai_edge_litert") or importable("tflite_runtime")):
            return ProbeResult(False, f"{found} but no TFLite interpreter importable: pip install ai-edge-litert")
        if not libedgetpu_present():
            return ProbeResult(False, f"{found} but libedgetpu.so.1 missing: apt-get install libedgetpu1-std")
        return ProbeResult(False, f"{found}, interpreter and libedgetpu present, but {cls.not_built}")
