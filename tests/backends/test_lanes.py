"""CPU backends: overlapping requests get lane runtimes of their own, with the same results,
and a lone request after a quiet spell gets the wide runtime again."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from edgewatch.backends.lanes import SPLIT_HOLD_S
from edgewatch.backends.onnxruntime_cpu import OnnxRuntimeConfig, OnnxRuntimeCpuBackend
from edgewatch.backends.tflite import TfliteConfig, TfliteCpuBackend
from edgewatch.models.runtime.preprocess import letterbox

pytestmark = pytest.mark.slow

BACKENDS = {
    "onnxruntime": (OnnxRuntimeCpuBackend, OnnxRuntimeConfig, "int8"),
    "tflite": (TfliteCpuBackend, TfliteConfig, "tflite-int8"),
}


@pytest.fixture(params=list(BACKENDS))
def make(request, converted_store, photos):
    cls, config, variant = BACKENDS[request.param]
    nanodet = converted_store.get("nanodet")
    loaded = []

    def factory(**settings):
        backend = cls(config(**({"threads": 2} | settings)))
        backend.load(converted_store.path(nanodet, variant), nanodet, variant)
        loaded.append(backend)
        spec, pre = backend.input_format()
        return backend, letterbox(cv2.imread(str(photos["bus"])), spec, pre)[0]

    yield factory
    for backend in loaded:
        backend.close()


def hammer(backend, tensor: np.ndarray, callers: int = 3, runs: int = 6) -> list[list[np.ndarray]]:
    results: list[list[np.ndarray]] = []
    lock = threading.Lock()

    def caller() -> None:
        for _ in range(runs):
            out = backend.infer(tensor)
            with lock:
                results.append(out)

    threads = [threading.Thread(target=caller) for _ in range(callers)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    return results


def test_overlapping_requests_split_and_agree(make) -> None:
    backend, tensor = make()
    alone = backend.infer(tensor)
    assert backend.lanes.made == 0, "a lone request must run on the wide runtime"
    results = hammer(backend, tensor)
    assert 1 <= backend.lanes.made <= 2, "overlapping requests get at most one one-thread lane per thread"
    assert len(results) == 18
    for out in results:
        for got, want in zip(out, alone):
            np.testing.assert_allclose(got, want, atol=1e-4)
    time.sleep(SPLIT_HOLD_S + 0.1)
    assert not backend.lanes.splitting, "a quiet spell hands a lone request the wide runtime again"


def test_share_mode_never_splits(make) -> None:
    backend, tensor = make(overlap="share")
    assert len(hammer(backend, tensor)) == 18
    assert backend.lanes.made == 0 and not backend.lanes.splitting


def test_lanes_fit_in_the_threads(make) -> None:
    backend, tensor = make(threads=4, split_threads=2)
    assert backend.lanes.max_lanes == 2
    assert len(hammer(backend, tensor, callers=4, runs=3)) == 12
    assert 1 <= backend.lanes.made <= 2, "four callers on four threads get two two-thread lanes at most"
