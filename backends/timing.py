"""How fast loaded backends run their models here, as a lone request finds them: what
`detection.model: auto` and the install-time choice of the default variant compare.

Each timed run starts after an idle pause, as a snapshot from an NVR or a camera frame arrives
at an idle box: thread pools that spin or sleep between runs (XNNPACK's sleep within
milliseconds, ONNX Runtime's spin) then cost what they cost in service. Back-to-back runs
would flatter a runtime whose threads only stay warm under a steady stream (measured here:
NanoDet TFLite 3.5 ms back to back, 7.6 ms after 50 ms idle; ONNX Runtime int8 4.6 and 5.7 ms).
Several backends are timed in alternation, so drifting CPU speed affects all alike.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from edgewatch.backends.base import Backend
from edgewatch.models.runtime.run import feed

WARM_RUNS = 2
TIMED_RUNS = 9
IDLE_S = 0.05        # before each timed run
MAX_TIMING_S = 5.0   # a slow model on a slow box stops early: a few runs already say it misses a 100 ms budget


def _blank(backend: Backend) -> np.ndarray | dict[str, np.ndarray]:
    """A blank input as the run path feeds it (a model with a size input, D-FINE's, gets both)."""
    spec, _ = backend.input_format()
    return feed(spec, np.zeros(spec.shape, np.dtype(spec.dtype)))


def measure_p50s(backends: dict[str, Backend]) -> dict[str, float]:
    """p50 (ms) of each loaded backend's ``infer`` on a blank input of its variant's shape, each
    run after an idle pause, the backends in alternation."""
    inputs = {key: _blank(b) for key, b in backends.items()}
    for key, b in backends.items():
        for _ in range(WARM_RUNS):
            b.infer(inputs[key])
    times: dict[str, list[float]] = {key: [] for key in backends}
    until = time.perf_counter() + MAX_TIMING_S * len(backends)
    for i in range(TIMED_RUNS):
        if i >= 3 and time.perf_counter() > until:
            break
        for key, b in backends.items():
            time.sleep(IDLE_S)
            t0 = time.perf_counter()
            b.infer(inputs[key])
            times[key].append((time.perf_counter() - t0) * 1000)
    return {key: round(statistics.median(v), 2) for key, v in times.items()}


def measure_p50_ms(backend: Backend) -> float:
    """:func:`measure_p50s` of one backend."""
    return measure_p50s({"one": backend})["one"]
