"""How fast a loaded backend runs its model here: what `detection.model: auto` and the install-time
choice of the default variant compare."""

from __future__ import annotations

import statistics
import time

import numpy as np

from edgewatch.backends.base import Backend

WARM_RUNS = 2
TIMED_RUNS = 9
MAX_TIMING_S = 5.0  # a slow model on a slow box stops early: a few runs already say it misses a 100 ms budget


def measure_p50_ms(backend: Backend) -> float:
    """p50 of ``backend.infer`` on a blank input of the loaded variant's shape, after warm-up runs."""
    spec, _ = backend.input_format()
    x = np.zeros(spec.shape, np.uint8 if spec.dtype == "uint8" else np.float32)
    for _ in range(WARM_RUNS):
        backend.infer(x)
    times: list[float] = []
    until = time.perf_counter() + MAX_TIMING_S
    while len(times) < TIMED_RUNS and (len(times) < 3 or time.perf_counter() < until):
        t0 = time.perf_counter()
        backend.infer(x)
        times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 2)
