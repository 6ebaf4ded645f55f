"""ONNX Runtime CPU: overlapping requests get one-thread sessions of their own, with the same results."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from edgewatch.backends.onnxruntime_cpu import SPLIT_HOLD_S, OnnxRuntimeConfig, OnnxRuntimeCpuBackend
from edgewatch.models.preprocess import letterbox

pytestmark = pytest.mark.slow


@pytest.fixture()
def tensor(nanodet, photos):
    return letterbox(cv2.imread(str(photos["bus"])), nanodet.input, nanodet.preprocessing)[0]


def loaded(store, nanodet, **config) -> OnnxRuntimeCpuBackend:
    backend = OnnxRuntimeCpuBackend(OnnxRuntimeConfig(**({"threads": 2} | config)))
    backend.load(store.path(nanodet), nanodet)
    return backend


def hammer(backend: OnnxRuntimeCpuBackend, tensor: np.ndarray, callers: int = 3, runs: int = 6) -> list[list[np.ndarray]]:
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


def test_overlapping_requests_split_and_agree(store, nanodet, tensor) -> None:
    backend = loaded(store, nanodet)
    try:
        alone = backend.infer(tensor)
        assert backend.lane_sessions == 0, "a lone request must run on the multi-thread session"
        results = hammer(backend, tensor)
        assert 1 <= backend.lane_sessions <= 2, "overlapping requests get at most one session per thread"
        assert len(results) == 18
        for out in results:
            for got, want in zip(out, alone):
                np.testing.assert_allclose(got, want, atol=1e-4)
        time.sleep(SPLIT_HOLD_S + 0.1)
        assert not backend.splitting, "a quiet spell hands a lone request the multi-thread session again"
    finally:
        backend.close()


def test_share_mode_never_splits(store, nanodet, tensor) -> None:
    backend = loaded(store, nanodet, overlap="share", spin=False)
    try:
        assert len(hammer(backend, tensor)) == 18
        assert backend.lane_sessions == 0 and not backend.splitting
    finally:
        backend.close()


def test_lanes_fit_in_the_threads(store, nanodet, tensor) -> None:
    backend = loaded(store, nanodet, threads=4, split_threads=2)
    try:
        assert backend.max_lanes == 2
        assert len(hammer(backend, tensor, callers=4, runs=3)) == 12
        assert 1 <= backend.lane_sessions <= 2, "four callers on four threads get two two-thread lanes at most"
    finally:
        backend.close()
