"""The box's key figures on a retained MQTT topic, ``{prefix}/stats``, every ``mqtt.stats_interval_s``
(30 s by default; 0 turns it off), for Home Assistant's diagnostic sensors (``discovery.stats_entities``).

One JSON object, numbers and names only (no URL, no error text, so never a secret):

- over the interval since the previous message: ``inference_ms`` (mean backend time of the detection
  module's inferences, REST, MQTT and cameras; None when none ran), ``inferences``, ``requests``,
  ``requests_per_s``, ``errors`` (answers with status 400 or more), ``server_errors`` (500 or more),
  ``queue_full`` (503 refusals), ``mqtt_jobs`` (jobs answered), ``cpu_percent`` (100 = one core busy);
- now: ``queue_depth``, ``queue_capacity``, ``workers_busy``, ``rss_mb`` (10^6 bytes), ``open_fds``,
  ``threads``, ``uptime_s``, ``cpu_temp_c`` (°C, the hottest cpu/soc thermal zone; None where
  ``/sys/class/thermal`` has none);
- ``cameras``: per running camera ``connected``, ``fps_in``, ``fps_out`` (the reader's), and over the
  interval ``detections_per_s`` and ``motion_gated_pct`` (frames the motion gate found still, of those taken);
- ``node_id``, ``interval_s`` (the seconds really covered), ``timestamp`` and ``time`` (UTC).

The publisher is a thread of its own (started and stopped with the link): it reads /proc and
/sys and publishes off the event loop, and asks the loop only for the cameras' states.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgewatch.daemon.host_readings import THERMAL_ROOT, cpu_temperature, open_fds, proc_status
from edgewatch.daemon.modules.detection.module import MODULE_ID

if TYPE_CHECKING:
    from edgewatch.daemon.inference_queue import InferenceQueue
    from edgewatch.daemon.metrics import Metrics

log = logging.getLogger(__name__)

LOG_EVERY_S = 300.0  # a failing round is logged again at most this often
_IMPORTED = time.monotonic()


def _uptime_s() -> float:
    """Seconds since this process started (from /proc; else since this module was imported)."""
    try:
        with open("/proc/self/stat", "rb") as f:
            started_ticks = int(f.read().rsplit(b")", 1)[1].split()[19])  # field 22, starttime
        with open("/proc/uptime", "rb") as f:
            since_boot = float(f.read().split()[0])
        return max(0.0, since_boot - started_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.monotonic() - _IMPORTED


def _sum(collector: Any, suffix: str, where: Callable[[dict[str, str]], bool] = lambda labels: True) -> float:
    """The sum of a prometheus-client instrument's samples named ``*suffix`` whose labels pass ``where``."""
    return sum(s.value for family in collector.collect() for s in family.samples
               if s.name.endswith(suffix) and where(s.labels))


class StatsPublisher:
    """Every ``interval_s``, collect the figures and ``publish(topic, payload)`` them (retained);
    ``metrics`` (None outside an app) gives the counters and the cameras, ``loop`` runs the cameras'
    state reads; ``thermal_root`` is /sys/class/thermal but for tests."""

    def __init__(self, publish: Callable[[str, str], None], topic: str, node_id: str, queue: InferenceQueue,
                 metrics: Metrics | None, loop: asyncio.AbstractEventLoop | None, interval_s: float,
                 thermal_root: Path = THERMAL_ROOT) -> None:
        self.publish, self.topic, self.node_id = publish, topic, node_id
        self.queue, self.metrics, self.loop = queue, metrics, loop
        self.interval_s, self.thermal_root = interval_s, thermal_root
        self.module_id = MODULE_ID
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._logged = float("-inf")
        self._last: dict[str, Any] = self._counters()
        self._last_cameras: dict[str, tuple[int, int, int]] = {}  # camera -> (frames, detections, motion skipped)

    def start(self) -> StatsPublisher:
        self._thread = threading.Thread(target=self._run, name="edgewatch-mqtt-stats", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        self.collect()  # the first message's interval starts now
        while not self._stop.wait(self.interval_s):
            try:
                self.publish(self.topic, json.dumps(self.collect()))
            except Exception:  # noqa: BLE001 - a bad round must not end the stats
                now = time.monotonic()
                if now - self._logged >= LOG_EVERY_S:
                    self._logged = now
                    log.exception("MQTT stats: cannot collect or publish the figures; trying again in %g s",
                                  self.interval_s)

    # -- collecting ----------------------------------------------------------------------------
    def _counters(self) -> dict[str, Any]:
        """Cumulative figures, differenced between two messages."""
        times = os.times()
        out: dict[str, Any] = {"at": time.monotonic(), "cpu_s": times.user + times.system}
        m = self.metrics
        if m is not None:
            module = self.module_id
            out |= {
                "inferences": _sum(m.inference, "_count", lambda labels: labels.get("module") == module),
                "inference_s": _sum(m.inference, "_sum", lambda labels: labels.get("module") == module),
                "requests": _sum(m.requests, "_total"),
                "errors": _sum(m.requests, "_total", lambda labels: labels.get("status", "0") >= "400"),
                "server_errors": _sum(m.requests, "_total", lambda labels: labels.get("status", "0") >= "500"),
                "queue_full": _sum(m.queue_full, "_total"),
                "mqtt_jobs": _sum(m.mqtt_job_replies, "_total"),
            }
        return out

    def _camera_states(self) -> dict[str, dict[str, Any]]:
        """The running cameras' states, read on the event loop (which changes them)."""
        cameras = getattr(getattr(self.metrics, "services", None), "cameras", None)
        if cameras is None or self.loop is None or self.loop.is_closed():
            return {}

        async def read() -> dict[str, dict[str, Any]]:
            return cameras.states(invalid=False)

        try:
            return asyncio.run_coroutine_threadsafe(read(), self.loop).result(timeout=5)
        except Exception:  # noqa: BLE001 - a busy or stopping loop: this round has no cameras
            return {}

    def _cameras(self, seconds: float) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        seen: dict[str, tuple[int, int, int]] = {}
        for name, state in self._camera_states().items():
            if not state.get("running"):
                continue
            now = (int(state.get("frames_seen") or 0), int(state.get("detections") or 0),
                   int(state.get("motion_skipped") or 0))
            before = self._last_cameras.get(name, (0, 0, 0))
            if any(n < b for n, b in zip(now, before)):  # the camera restarted: its counts began again
                before = (0, 0, 0)
            frames, detections, still = (n - b for n, b in zip(now, before))
            seen[name] = now
            out[name] = {"connected": bool(state.get("connected")), "fps_in": state.get("fps_in"),
                         "fps_out": state.get("fps_out"),
                         "detections_per_s": round(detections / seconds, 2) if seconds > 0 else None,
                         "motion_gated_pct": round(100.0 * still / frames, 1) if frames > 0 else None}
        self._last_cameras = seen
        return out

    def collect(self) -> dict[str, Any]:
        """The figures since the previous call (the payload of one message)."""
        now, before = self._counters(), self._last
        self._last = now
        seconds = max(now["at"] - before["at"], 1e-9)

        def delta(key: str) -> int | None:
            return round(now[key] - before[key]) if key in now and key in before else None

        inferences = delta("inferences")
        inference_ms = None
        if inferences:
            inference_ms = round((now["inference_s"] - before["inference_s"]) * 1000.0 / inferences, 2)
        requests = delta("requests")
        rss, threads = proc_status()
        queue = self.queue
        stamp = time.time()
        return {
            "node_id": self.node_id,
            "interval_s": round(seconds, 1),
            "inference_ms": inference_ms,
            "inferences": inferences,
            "requests": requests,
            "requests_per_s": round(requests / seconds, 2) if requests is not None else None,
            "errors": delta("errors"),
            "server_errors": delta("server_errors"),
            "queue_full": delta("queue_full"),
            "mqtt_jobs": delta("mqtt_jobs"),
            "queue_depth": queue.pending,
            "queue_capacity": queue.queue_size,
            "workers_busy": queue.busy,
            "rss_mb": round(rss / 1e6, 1) if rss is not None else None,
            "cpu_percent": round(100.0 * (now["cpu_s"] - before["cpu_s"]) / seconds, 1),
            "open_fds": open_fds(),
            "threads": threads,
            "uptime_s": round(_uptime_s()),
            "cpu_temp_c": cpu_temperature(self.thermal_root),
            "cameras": self._cameras(seconds),
            "timestamp": round(stamp, 3),
            "time": datetime.fromtimestamp(stamp, timezone.utc).isoformat(timespec="seconds"),
        }
