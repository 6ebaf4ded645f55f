"""The one list of backends: their type keys, config sections, convert targets and probe order,
and choosing one that actually loads.

Adding an accelerator: a module in this package with a :class:`Backend` subclass (``type_key``,
``config_model``, a ``probe`` that imports its vendor runtime lazily), and its class in
:data:`PROBE_ORDER`. The config's ``backend`` choices and ``backends:`` section, the CLI's
``--target`` choices and ``edgewatch probe`` follow from that list.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

from edgewatch.backends.base import Backend, BackendConfig, BackendError, ProbeResult
from edgewatch.backends.edgetpu import EdgeTpuBackend
from edgewatch.backends.ncnn import NcnnCpuBackend
from edgewatch.backends.onnxruntime_cpu import OnnxRuntimeCpuBackend
from edgewatch.backends.rknn import RknnBackend
from edgewatch.backends.tensorrt import TensorRtBackend
from edgewatch.backends.tflite import TfliteCpuBackend
from edgewatch.models.manifest import ModelManifest
from edgewatch.models.store import ModelStore

log = logging.getLogger(__name__)

# Accelerators first, the CPU last: the first one that probes available and loads wins.
# ncnn last: it runs only models that ship as ncnn files (super-resolution), never a detector.
PROBE_ORDER: tuple[type[Backend], ...] = (RknnBackend, EdgeTpuBackend, TensorRtBackend, TfliteCpuBackend,
                                         OnnxRuntimeCpuBackend, NcnnCpuBackend)
BACKENDS: dict[str, type[Backend]] = {cls.type_key: cls for cls in PROBE_ORDER}
BACKEND_CHOICES = ("auto", *BACKENDS)
BackendChoice = Literal[BACKEND_CHOICES]  # type: ignore[valid-type]
CONVERT_TARGETS = tuple(key for key, cls in BACKENDS.items() if cls.convert_target)  # `models convert --target`


def probe_all() -> dict[str, ProbeResult]:
    """Probe every backend; a probe that crashes is reported, never raised."""
    results = {}
    for cls in PROBE_ORDER:
        try:
            results[cls.type_key] = cls.probe()
        except Exception as exc:  # a broken vendor install must not stop the daemon
            results[cls.type_key] = ProbeResult(False, f"probe failed: {exc!r}")
    return results


@dataclass
class Selection:
    backend: Backend
    notes: list[str] = field(default_factory=list)  # why earlier candidates were skipped


def order(preferred: str, manifest: ModelManifest) -> list[type[Backend]]:
    """Accelerators in probe order, then the CPU runtimes, the one that runs the model's default
    variant (the fastest faithful one measured at install) first; ``preferred`` before all."""
    if preferred != "auto" and preferred not in BACKENDS:
        raise BackendError(f"unknown backend {preferred!r}; expected one of {', '.join(BACKEND_CHOICES)}")
    default_runtime = manifest.variants[manifest.default_variant].runtime
    order = sorted(PROBE_ORDER, key=lambda cls: (cls.cpu, cls.cpu and cls.runtime != default_runtime))
    if preferred != "auto":
        order.remove(BACKENDS[preferred])
        order.insert(0, BACKENDS[preferred])
    return order


def plan(preferred: str, manifest: ModelManifest, configs: dict[str, BackendConfig] | None = None
         ) -> tuple[Backend, str] | None:
    """The (unloaded) backend and variant key :func:`load_backend` would try first, without loading
    anything; None when no available backend has a variant of the model."""
    configs = configs or {}
    for cls in order(preferred, manifest):
        if not cls.probe().available:
            continue
        backend = cls(configs.get(cls.type_key))
        variant = backend.pick_variant(manifest)
        if variant is not None:
            return backend, variant
    return None


def load_backend(preferred: str, store: ModelStore, manifest: ModelManifest,
                 configs: dict[str, BackendConfig] | None = None) -> Selection:
    """Load ``manifest``'s model on ``preferred`` (or the probe order for ``auto``), falling back in order.

    Each backend runs its own variant of the model (ONNX, TFLite, EdgeTPU TFLite, RKNN); a
    model without a variant for a backend skips it with a note saying how to convert.
    """
    configs = configs or {}
    notes: list[str] = []
    missing: list[str] = []  # accelerators a variant of the model is built for, not found here
    for cls in order(preferred, manifest):
        probe = cls.probe()
        if not probe.available:
            if cls.type_key == preferred:
                notes.append(f"{cls.type_key} was asked for but is unavailable: {probe.reason}")
            elif not cls.cpu and any(v.runtime == cls.runtime for v in manifest.variants.values()):
                missing.append(f"its {cls.runtime} variant needs the {cls.title}, not usable here: {probe.reason}")
            continue
        backend = cls(configs.get(cls.type_key))
        variant = backend.pick_variant(manifest)
        if variant is None:
            notes.append(f"{cls.type_key} is available but {backend.unusable_reason(manifest)}")
            continue
        try:
            backend.load(store.path(manifest, variant), manifest, variant)
        except BackendError as exc:
            notes.append(f"{cls.type_key} failed to load {manifest.name}: {exc}")
            backend.close()
            continue
        for note in notes:
            log.warning("%s; using %s", note, cls.type_key)
        return Selection(backend, notes)
    notes += missing  # said only when nothing could run it: a catalogue model's NPU file is no news on a CPU box
    raise BackendError("no backend could load " + manifest.name + ": " + "; ".join(notes or ["none available"]))
