"""Sharing a CPU's cores between requests: one wide runtime for a lone request, narrow lanes
side by side when requests overlap.

A CPU runtime with one thread per core gives a lone request the lowest latency. When
requests overlap, running them one after another on that runtime wastes the cores (its
threads wait on each other at every layer), and running them at once on it makes them fight
over one thread pool. Lanes, runtimes with fewer threads each, side by side, get more done:
measured on 2 cores with nanodet int8, two one-thread ONNX Runtime sessions did 1.4× the
requests of one two-thread session.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Generic, Iterator, Literal, TypeVar

from pydantic import BaseModel, Field

from edgewatch.backends.base import BackendError

R = TypeVar("R")

SPLIT_HOLD_S = 0.25  # after requests last overlapped, keep to lanes this long


class LaneSettings(BaseModel):
    """The config keys of a CPU backend that can split its cores between overlapping requests."""

    overlap: Literal["split", "share"] = Field(
        "split",
        description="when requests overlap: 'split' runs each on a runtime of its own with "
                    "split_threads threads, so the cores are shared out between requests; 'share' "
                    "runs them one at a time on the one runtime")
    split_threads: int = Field(
        0, ge=0, le=64,
        description="threads of each runtime that overlapping requests run on; 0 = threads ÷ "
                    "inference.workers (the daemon fills it in), at least 1")


def split_threads(threads: int, configured: int) -> int:
    """Threads of one lane: as configured, else half the cores (two lanes), at least 1."""
    return min(threads, configured or max(1, threads // 2))


class Lanes(Generic[R]):
    """Hands out the wide runtime to a request that runs alone, a lane to one that overlaps.

    Once requests overlap, every request for the next SPLIT_HOLD_S runs on a lane, even one
    that happens to start alone: under load the requests' decode and pre/postprocessing leave
    gaps, and a wide run started in such a gap would fight the lanes for the cores. Lanes are
    made on first need by ``make_lane``, at most ``max_lanes``; a request finding all of them
    busy waits for one rather than crowd the cores. With ``max_lanes`` 0 every request gets
    the wide runtime, one at a time (so a runtime that is not thread-safe may be used).
    """

    def __init__(self, wide: R, make_lane: Callable[[], R], max_lanes: int) -> None:
        self._wide: R | None = wide
        self._make_lane = make_lane
        self.max_lanes = max_lanes
        self._lock = threading.Lock()
        self._wide_lock = threading.Lock()
        self._running = 0
        self._split_until = 0.0
        self._idle: queue.SimpleQueue[R] = queue.SimpleQueue()
        self._made = 0

    @property
    def made(self) -> int:
        """How many lanes overlapping requests have needed so far."""
        return self._made

    @property
    def splitting(self) -> bool:
        """Whether a request starting now would get a lane."""
        return self.max_lanes > 0 and (self._running > 0 or time.monotonic() < self._split_until)

    @contextmanager
    def runtime(self) -> Iterator[R]:
        """The runtime to run one request on, for the duration of the ``with`` block."""
        with self._lock:
            wide = self._wide
            if wide is None:
                raise BackendError("no model loaded")
            self._running += 1
            now = time.monotonic()
            if self._running > 1:
                self._split_until = now + SPLIT_HOLD_S
            use_wide = self.max_lanes == 0 or (self._running == 1 and now >= self._split_until)
        try:
            if use_wide:
                with self._wide_lock:
                    yield wide
                return
            lane = self._take_lane()
            try:
                yield lane
            finally:
                with self._lock:
                    if self._wide is not None:
                        self._idle.put(lane)
        finally:
            with self._lock:
                self._running -= 1

    def _take_lane(self) -> R:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            make = self._made < self.max_lanes
            if make:
                self._made += 1
        if make:
            try:
                return self._make_lane()
            except Exception:
                with self._lock:
                    self._made -= 1
                raise
        while True:
            try:
                return self._idle.get(timeout=0.1)
            except queue.Empty:
                if self._wide is None:
                    raise BackendError("the model was unloaded (settings reload or shutdown); "
                                       "send the request again") from None

    def close(self) -> None:
        """Drop every runtime; requests still running finish on theirs."""
        with self._lock:
            self._wide = None
            while not self._idle.empty():
                self._idle.get_nowait()
            self._made = 0


class LaneBackendMixin:
    """For a CPU backend whose config has ``threads`` and :class:`LaneSettings`: builds its
    :class:`Lanes` from the wide runtime and a factory of runtimes with N threads."""

    _lanes: Lanes | None = None
    config: BaseModel

    @property
    def threads(self) -> int:
        return getattr(self.config, "threads", 0) or (os.cpu_count() or 1)

    @classmethod
    def complete_config(cls, config: BaseModel, cache_dir: Path, workers: int) -> BaseModel:
        """Overlapping requests share the cores out evenly: ``split_threads`` 0 becomes threads ÷ workers."""
        if not isinstance(config, LaneSettings) or config.split_threads:
            return config
        threads = getattr(config, "threads", 0) or (os.cpu_count() or 1)
        return config.model_copy(update={"split_threads": max(1, threads // workers)})

    @property
    def lanes(self) -> Lanes | None:
        """The runtimes requests run on (None before load)."""
        return self._lanes

    def _max_lanes(self, lane_threads: int) -> int:
        """Lanes that fit in the threads; 0 when requests take turns on the wide runtime."""
        if getattr(self.config, "overlap", "share") == "share" or self.threads == 1:
            return 0
        return max(1, self.threads // lane_threads)

    def _start_lanes(self, wide: R, make: Callable[[int], R]) -> None:
        lane_threads = split_threads(self.threads, getattr(self.config, "split_threads", 0))
        self._lanes = Lanes(wide, lambda: make(lane_threads), self._max_lanes(lane_threads))

    def _close_lanes(self) -> None:
        if self._lanes is not None:
            self._lanes.close()
        self._lanes = None
