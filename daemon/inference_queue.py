"""A bounded pool that runs blocking inference work off the event loop.

When ``queue_size`` requests are already waiting or running, new ones are refused at once
with :class:`QueueFull` (the API answers 503 with Retry-After) instead of piling up.
"""

from __future__ import annotations

import asyncio
import math
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

T = TypeVar("T")


class QueueFull(RuntimeError):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the inference queue is full; retry in {retry_after} s")
        self.retry_after = retry_after


class InferenceQueue:
    def __init__(self, workers: int, queue_size: int) -> None:
        self.workers = workers
        self.queue_size = max(queue_size, workers)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inference")
        self._pending = 0
        self._avg_s = 0.05  # moving average of one job's duration, for Retry-After
        self._started: dict[int, float] = {}  # job -> when a worker began it (the watchdog reads this)
        self._next_job = 0

    @property
    def pending(self) -> int:
        return self._pending

    @property
    def busy(self) -> int:
        """Workers running a job now."""
        return len(self._started)

    def retry_after(self) -> int:
        return max(1, math.ceil(self._pending * self._avg_s / self.workers))

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        if self._pending >= self.queue_size:
            raise QueueFull(self.retry_after())
        self._pending += 1
        self._next_job += 1
        job = self._next_job
        start = time.perf_counter()

        def timed() -> T:
            self._started[job] = time.monotonic()
            try:
                return fn(*args)
            finally:
                self._started.pop(job, None)

        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, timed)
        finally:
            self._pending -= 1
            self._avg_s = 0.9 * self._avg_s + 0.1 * (time.perf_counter() - start)

    def longest_running_s(self) -> float:
        """How long the oldest job now in a worker has been running (0 when none is)."""
        started = list(self._started.values())
        return time.monotonic() - min(started) if started else 0.0

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
