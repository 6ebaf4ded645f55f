"""CameraReader: one thread per camera that keeps only the newest frame, at most ``fps`` a second.

The thread opens the source, grabs every frame a live source sends (so no backlog builds up in
sockets or decoders), decodes and publishes only as many as the fps cap allows, and on any error
closes the source and reopens it after a capped exponential backoff (reset after a good read).
Consumers poll :meth:`CameraReader.latest` or block in :meth:`CameraReader.wait` with the last
sequence number they saw; they get the newest frame or nothing, never a queue of old ones.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from edgewatch.daemon.cameras.config import CameraConfig
from edgewatch.daemon.cameras.sources import FrameSource, SourceError, open_source
from edgewatch.daemon.redaction import redact

log = logging.getLogger(__name__)

_DRAIN_MAX_S = 2.0  # after opening, skip buffered frames for at most this long

Frame = tuple[int, np.ndarray, float]
"""(seq, frame, timestamp): seq counts up from 1 per reader; frame is BGR uint8, read-only
(copy it to draw on it); timestamp is wall-clock ``time.time()`` when the frame was read."""


@dataclass(frozen=True)
class CameraState:
    """A snapshot of a reader's state."""

    name: str
    kind: str                     # rtsp, snapshot, mjpeg, file, v4l2 (http until first opened)
    running: bool                 # the thread is alive
    connected: bool               # opened and frames are arriving
    fps_in: float                 # frames read from the source per second (last 2 s)
    fps_out: float                # frames handed out per second (last 2 s, or 10 / fps s if longer)
    frames_out: int               # frames handed out so far (= the newest seq)
    last_frame_age_s: float | None  # since the newest frame was handed out; None before the first
    last_error: str | None        # why the last open or read failed; cleared by the next good frame
    reconnects: int               # open attempts after the first one
    retry_in_s: float | None      # while disconnected: the current backoff delay
    open_time_s: float | None     # how long the last successful open took
    width: int | None
    height: int | None


class Backoff:
    """Capped exponential backoff: initial, initial*factor, ... up to maximum; reset() starts over."""

    def __init__(self, initial_s: float = 0.5, maximum_s: float = 30.0, factor: float = 2.0) -> None:
        if not 0 < initial_s <= maximum_s or factor < 1:
            raise ValueError("need 0 < initial_s <= maximum_s and factor >= 1")
        self.initial_s, self.maximum_s, self.factor = float(initial_s), float(maximum_s), float(factor)
        self._next = self.initial_s

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * self.factor, self.maximum_s)
        return delay

    def reset(self) -> None:
        self._next = self.initial_s


class RateMeter:
    """Events per second over a sliding window: (n - 1) / (last - first) of the events in it, so a
    steady stream reads exactly; after the events stop it falls to 0 within the window."""

    def __init__(self, window_s: float = 2.0) -> None:
        self.window_s = window_s
        self._times: deque[float] = deque()

    def tick(self, now: float) -> None:
        self._times.append(now)
        self._trim(now)

    def rate(self, now: float) -> float:
        self._trim(now)
        if len(self._times) < 2:
            return 0.0
        return (len(self._times) - 1) / max(self._times[-1] - self._times[0], 1e-6)

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] <= now - self.window_s:
            self._times.popleft()


class CameraReader:
    """Reads one camera in its own thread. Use ``start()``/``stop()`` or ``with CameraReader(cfg):``.

    A disabled camera (``enabled: false``) does not start. ``stop()`` returns within about
    ``open_timeout_s + read_timeout_s`` even when the source hangs (a blocked FFmpeg call cannot be
    interrupted before its own timeout); the thread is a daemon thread either way.
    """

    def __init__(self, config: CameraConfig, *, backoff_initial_s: float = 0.5,
                 backoff_max_s: float = 30.0) -> None:
        self.config = config
        self._backoff = Backoff(backoff_initial_s, backoff_max_s)
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._frame: Frame | None = None
        self._frame_mono: float | None = None
        # fps_out over 10 periods of the cap at least: the cap lets single frames through up to 20 %
        # early (jitter), which a window of only a few frames would show as a rate above the cap
        self._in, self._out = RateMeter(), RateMeter(max(2.0, 10.0 / config.fps))
        self._kind = config.resolved_kind
        self._connected = False
        self._error: str | None = None
        self._reconnects = 0
        self._retry_in: float | None = None
        self._open_time: float | None = None
        self._size: tuple[int, int] | None = None

    # ---- public API -------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def _log(self) -> logging.LoggerAdapter:
        return logging.LoggerAdapter(log, {"camera": self.config.name})

    def start(self) -> CameraReader:
        if self._thread is not None:
            raise RuntimeError(f"camera {self.name}: already started")
        if not self.config.enabled:
            self._log.info("camera %s is disabled; not reading it", self.name)
            return self
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> bool:
        """Stop the thread and wait for it; True when it has ended."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        thread = self._thread
        if thread is None:
            return True
        if timeout is None:
            timeout = self.config.open_timeout_s + self.config.read_timeout_s + 2
        thread.join(timeout)
        if thread.is_alive():
            self._log.warning("camera %s: reader thread still blocked in the source after %.1f s", self.name, timeout)
            return False
        return True

    def latest(self, after_seq: int = 0) -> Frame | None:
        """The newest frame if its seq is greater than ``after_seq``, else None. Never copies."""
        with self._cond:
            frame = self._frame
        return frame if frame is not None and frame[0] > after_seq else None

    def wait(self, after_seq: int = 0, timeout: float | None = None) -> Frame | None:
        """Like :meth:`latest`, but blocks up to ``timeout`` seconds for a newer frame."""
        with self._cond:
            self._cond.wait_for(
                lambda: (self._frame is not None and self._frame[0] > after_seq) or self._stop.is_set(),
                timeout,
            )
        return self.latest(after_seq)

    def state(self) -> CameraState:
        now = time.monotonic()
        with self._cond:
            return CameraState(
                name=self.name,
                kind=self._kind,
                running=self._thread is not None and self._thread.is_alive(),
                connected=self._connected,
                fps_in=round(self._in.rate(now), 2),
                fps_out=round(self._out.rate(now), 2),
                frames_out=self._frame[0] if self._frame else 0,
                last_frame_age_s=None if self._frame_mono is None else round(now - self._frame_mono, 3),
                last_error=self._error,
                reconnects=self._reconnects,
                retry_in_s=self._retry_in,
                open_time_s=self._open_time,
                width=self._size[0] if self._size else None,
                height=self._size[1] if self._size else None,
            )

    def __enter__(self) -> CameraReader:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        first = True
        try:
            while not self._stop.is_set():
                if not first:
                    with self._cond:
                        self._reconnects += 1
                first = False
                source = open_source(self.config)
                try:
                    started = time.monotonic()
                    source.open()
                    with self._cond:
                        self._open_time = round(time.monotonic() - started, 3)
                        self._kind = getattr(source, "kind", self._kind)
                        self._retry_in = None
                    self._log.debug("camera %s: opened %s in %.2f s", self.name, source.description, self._open_time)
                    self._pump(source)
                except Exception as e:  # noqa: BLE001 - any failure means: close, back off, reopen
                    self._failed(e)
                finally:
                    source.close()
                if self._stop.is_set():
                    break
                delay = self._backoff.next()
                with self._cond:
                    self._retry_in = delay
                self._log.debug("camera %s: reconnecting in %.1f s", self.name, delay)
                self._stop.wait(delay)
        finally:
            with self._cond:
                was = self._connected
                self._connected = False
                self._retry_in = None
                self._cond.notify_all()
            self._log.info("camera %s: stopped%s", self.name, " (was connected)" if was else "")

    def _pump(self, source: FrameSource) -> None:
        period = 1.0 / self.config.fps
        slack = 0.2 * period  # tolerate jitter of a source that runs at exactly the cap
        next_due = 0.0        # earliest time (minus slack) to hand out the next frame
        next_grab = time.monotonic()
        # A live source hands over at once what it buffered while opening (FFmpeg keeps the
        # packets it probed: about a second's worth). Skip those: while a grab returns in under
        # 40 % of the frame interval, and no more frames than the open could have buffered.
        interval = source.frame_interval_s
        drain = 1 + int((self._open_time or 0) / interval) if interval else 0
        drain_until = time.monotonic() + _DRAIN_MAX_S
        first = True
        while not self._stop.is_set():
            pace = source.pace_s
            if pace:  # files and snapshots: the reader sets the pace
                if self._stop.wait(max(0.0, next_grab - time.monotonic())):
                    return
                next_grab = max(next_grab, time.monotonic()) + pace
            before = time.monotonic()
            source.grab()
            now = time.monotonic()
            with self._cond:
                self._in.tick(now)
            if first:
                self._backoff.reset()
                if drain > 0 and now - before < 0.4 * interval and now < drain_until:
                    drain -= 1
                    continue  # a stale buffered frame
            if not (pace and pace >= period * 0.999) and now + slack < next_due:
                continue  # over the cap: this frame was read (so nothing queues) but is dropped
            frame = source.retrieve()
            frame.flags.writeable = False
            stamp = time.time()
            next_due = max(next_due + period, now + period - slack)
            with self._cond:
                seq = self._frame[0] + 1 if self._frame else 1
                self._frame = (seq, frame, stamp)
                self._frame_mono = now
                self._out.tick(now)
                size = (frame.shape[1], frame.shape[0])
                if first:
                    error, self._error = self._error, None
                    self._connected = True
                    self._size = size
                self._cond.notify_all()
            if first:
                self._log.info("camera %s: connected to %s, %dx%d, opened in %.2f s%s", self.name,
                         source.description, size[0], size[1], self._open_time or 0,
                         f" (after: {error})" if error else "")
                first = False
            elif size != self._size:
                self._log.info("camera %s: frame size changed to %dx%d", self.name, *size)
                with self._cond:
                    self._size = size

    def _failed(self, e: Exception) -> None:
        message = redact(str(e) if isinstance(e, SourceError) else f"{type(e).__name__}: {e}")
        with self._cond:
            was_connected, previous = self._connected, self._error
            self._connected = False
            self._error = message
            self._cond.notify_all()
        if was_connected:
            self._log.warning("camera %s: disconnected: %s", self.name, message)
        elif message != previous:
            self._log.warning("camera %s: %s", self.name, message)
        else:
            self._log.debug("camera %s: %s", self.name, message)
        if not isinstance(e, SourceError):
            self._log.debug("camera %s: unexpected error", self.name, exc_info=e)
